"""Group commit: appends that arrive while another is being written go in together.

The ledger has one serial writer (a table lock on PostgreSQL, the one write lock on SQLite)
held through a durable commit, so one append per transaction tops out at one over the
commit's latency (about 100–200 per second on this kind of disk), however many requests
wait. Here the first caller becomes the leader and writes; callers that arrive meanwhile
queue; when the leader is done, the next in the queue leads and writes everything queued
so far in ONE transaction, so a busy server pays one commit for many appends.

Each caller still gets its own outcome. When a group's transaction fails (say one of its
appends reused a taken stream version), nothing of it was written, and each append of the
group is written again on its own: the conflicting one gets its StreamConflict, the others
their positions, exactly as if they had come one at a time.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, Sequence, TypeVar

A = TypeVar("A")

# A group's events at most; the rest waits for the next group (bounds one transaction).
MAX_GROUP_EVENTS = 5_000


class _Waiting(Generic[A]):
    __slots__ = ("append", "size", "positions", "error", "finished")

    def __init__(self, append: A, size: int):
        self.append, self.size = append, size
        self.positions: list[int] = []
        self.error: BaseException | None = None
        self.finished = False


class GroupCommit(Generic[A]):
    """`write(appends)` writes a group of appends in one transaction and returns each
    append's positions, or raises with nothing written."""

    def __init__(self, write: Callable[[Sequence[A]], list[list[int]]]):
        self._write = write
        self._turn = threading.Condition()
        self._queue: list[_Waiting[A]] = []
        self._writing = False

    def append(self, append: A, size: int) -> list[int]:
        """Write `append` (of `size` events), alone or with others; its positions."""
        me = _Waiting(append, size)
        with self._turn:
            self._queue.append(me)
            while not me.finished:
                if self._writing:
                    self._turn.wait()
                    continue
                # nobody is writing: lead, with everything queued so far (oldest first)
                self._writing = True
                group = self._take()
                self._turn.release()
                try:
                    self._write_group(group)
                finally:
                    self._turn.acquire()
                    self._writing = False
                    self._turn.notify_all()
        if me.error is not None:
            raise me.error
        return me.positions

    def _take(self) -> list[_Waiting[A]]:
        group, size = [], 0
        while self._queue and (not group or size + self._queue[0].size <= MAX_GROUP_EVENTS):
            size += self._queue[0].size
            group.append(self._queue.pop(0))
        return group

    def _write_group(self, group: list[_Waiting[A]]) -> None:
        try:
            if len(group) > 1:
                try:
                    positions = self._write([waiting.append for waiting in group])
                except Exception:
                    pass  # nothing of it was written: each on its own, below, for its own outcome
                else:
                    for waiting, own in zip(group, positions):
                        waiting.positions, waiting.finished = own, True
                    return
            for waiting in group:
                try:
                    waiting.positions = self._write([waiting.append])[0]
                except Exception as error:
                    waiting.error = error
                waiting.finished = True
        except BaseException as error:  # interrupted (errors were caught above): every one of the group hears it
            for waiting in group:
                if not waiting.finished:
                    waiting.error, waiting.finished = error, True
            raise
