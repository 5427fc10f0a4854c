"""One read of the ledger for every projection of a worker process.

Each projection used to read and decode its own windows of the notification log; with
sixteen read models in one process that is sixteen reads and up to sixteen decodes of every
event, all under one GIL. A `Feed` reads each window once, with every topic, decodes the
events once, and hands each projection's reader the part of the window it follows.

Windows end on multiples of the batch size (or at the ledger head), so projections that
start from the same position (a rebuild, a restore, a new worker) share every window, and
one that starts elsewhere joins them at the next boundary. A window is kept while an active
reader still needs it; a reader far ahead of the slowest one waits a little for it, so the
windows in memory stay few (catch-up peak memory stays bounded) and are decoded once.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, Sequence

from ledger.store import LedgerStore, Stored, decode_notification

KEEP_WINDOWS = 2  # windows kept in memory beyond those being read (about 13 MiB per 5,000 usage events)
IDLE_SECONDS = 2.0  # a reader that has not asked for this long no longer holds windows back
LEAD_WAIT_SECONDS = 0.5  # the longest a reader far ahead waits for the slowest one


class Undecodable(NamedTuple):
    notification: Stored
    error: Exception


class Entry(NamedTuple):
    """One notification: as stored, and decoded (a Recorded, or Undecodable)."""

    stored: Stored
    decoded: object


class _Window(NamedTuple):
    start: int
    end: int
    entries: Future  # of list[Entry]


class Reader:
    """Reads the ledger for one projection. Alone, it reads windows of at most batch_size
    positions of the projection's topics (the database then scans only that window, however
    far behind the projection is) and, while behind, reads and decodes the next window on a
    helper thread as the current batch is applied. With a `Feed`, the process's projections
    share one read and one decode of every window."""

    def __init__(self, store: LedgerStore, projection, batch_size: int, feed: "Feed | None" = None, head=None):
        self.store, self.projection, self.batch_size, self.feed = store, projection, batch_size, feed
        self.position = 0
        # the ledger head as the worker's poller last read it (workers/projector.py), so a
        # batch needs no query of its own for it; else read from the ledger for each batch
        self._head = head
        self._helper = None if feed else ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"read-{projection.name}")
        self._ahead: tuple[int, int, Future] | None = None

    def head(self) -> int:
        return self._head() if self._head is not None else self.store.max_position()

    def pace(self) -> None:
        """Called before a batch's transaction: with a feed, a reader far ahead of the
        others waits briefly for them (never while holding a lock)."""
        if self.feed is not None and self.position:  # known once it has read a window
            self.feed.pace(self, self.position)

    def window(self, start: int, head: int) -> tuple[int, list]:
        """(end, items) for the positions after `start`, up to `head` (with a feed, possibly
        beyond: a window another projection read later, every position of it committed).
        Items are decoded events (or raw notifications, for wants_raw), or Undecodable."""
        if self.feed is not None:
            end, entries = self.feed.window(start, head)
            self.position = end
            return end, only(entries, self.projection.topics, self.projection.wants_raw)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == start:
            end, items = ahead[1], ahead[2].result()
        else:  # first read, or another worker moved the position meanwhile
            end = min(head, start + self.batch_size)
            items = self._load(start, end)
        if end < head:
            following = min(head, end + self.batch_size)
            self._ahead = (end, following, self._helper.submit(self._load, end, following))
        self.position = end
        return end, items

    def _load(self, start: int, end: int) -> list:
        notifications = self.store.read_window(start, end, self.projection.topics)
        if self.projection.wants_raw:
            return list(notifications)
        return [_decode(n) for n in notifications]

    def close(self) -> None:
        if self.feed is not None:
            self.feed.forget(self)
        else:
            self._helper.shutdown(wait=False, cancel_futures=True)


def _decode(n: Stored):
    try:
        return decode_notification(n)
    except Exception as error:  # undecodable: parked by run_batch
        return Undecodable(n, error)


class Feed:
    """The windows of the ledger read and decoded for the projections of one process."""

    def __init__(self, store: LedgerStore, batch_size: int):
        self.store, self.batch_size = store, batch_size
        self._windows: list[_Window] = []
        self._readers: dict[int, tuple[int, float]] = {}  # reader id -> (position, last asked)
        self._changed = threading.Condition()
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-feed")

    def window(self, start: int, head: int) -> tuple[int, list[Entry]]:
        """(end, entries) for positions after `start`: a cached window that covers `start`,
        else a new one read now. `head` is the ledger head the caller saw."""
        with self._changed:
            found = self._find(start)
            if found is None:
                found = self._load_locked(start, self._boundary(start, head))
        entries = found.entries.result()
        if found.end < head:
            self.prefetch(found.end, head)
        if found.start == start:
            return found.end, entries
        return found.end, [e for e in entries if e.stored.id > start]

    def prefetch(self, start: int, head: int) -> None:
        with self._changed:
            if self._find(start) is None:
                self._load_locked(start, self._boundary(start, head), ahead=True)

    def forget(self, reader: object) -> None:
        with self._changed:
            self._readers.pop(id(reader), None)
            self._changed.notify_all()

    def close(self) -> None:
        self._helper.shutdown(wait=False, cancel_futures=True)

    # internals --------------------------------------------------------------------------
    def _boundary(self, start: int, head: int) -> int:
        return min(head, (start // self.batch_size + 1) * self.batch_size)

    def _find(self, start: int) -> _Window | None:
        for w in self._windows:
            if w.start <= start < w.end:
                return w
        return None

    def _load_locked(self, start: int, end: int, ahead: bool = False) -> _Window:
        future: Future = self._helper.submit(self._load, start, end) if ahead else Future()
        window = _Window(start, end, future)
        self._windows.append(window)
        self._evict_locked()
        if not ahead:  # read on the caller's thread, outside the lock
            self._changed.release()
            try:
                try:
                    future.set_result(self._load(start, end))
                except BaseException as error:
                    future.set_exception(error)
                    with self._changed:
                        self._windows.remove(window)
                    raise
            finally:
                self._changed.acquire()
        return window

    def _load(self, start: int, end: int) -> list[Entry]:
        return [Entry(n, _decode(n)) for n in self.store.read_window(start, end)]

    def _active_positions(self) -> list[int]:
        now = time.monotonic()
        return [p for p, seen in self._readers.values() if now - seen < IDLE_SECONDS]

    def _evict_locked(self) -> None:
        active = self._active_positions()
        slowest = min(active, default=0)
        self._windows = [w for w in self._windows if w.end > slowest or not w.entries.done()]
        while len(self._windows) > KEEP_WINDOWS + 2:
            done = [w for w in self._windows if w.entries.done()]
            if not done:
                break
            self._windows.remove(min(done, key=lambda w: w.start))

    def pace(self, reader: object, start: int) -> None:
        """A reader more than KEEP_WINDOWS windows ahead of the slowest active reader waits
        (briefly) for it, so that the windows the slowest still needs are not evicted."""
        key = id(reader)
        deadline = time.monotonic() + LEAD_WAIT_SECONDS
        with self._changed:
            self._readers[key] = (start, time.monotonic())
            self._changed.notify_all()
            while True:
                slowest = min(self._active_positions(), default=start)
                remaining = deadline - time.monotonic()
                if start - slowest <= KEEP_WINDOWS * self.batch_size or remaining <= 0:
                    return
                self._changed.wait(remaining)
                self._readers[key] = (start, time.monotonic())


def only(entries: Sequence[Entry], topics: Sequence[str], raw: bool) -> list:
    """The part of a window one projection follows: raw notifications or decoded events."""
    wanted = frozenset(topics)
    if raw:
        return [e.stored for e in entries if not wanted or e.stored.topic in wanted]
    return [e.decoded for e in entries if not wanted or e.stored.topic in wanted]
