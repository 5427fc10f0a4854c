"""The projector runner: one thread per read model, each running the batch loop, all
fed by one read and one decode of the ledger per process (projections/feed.py).

Several worker processes split the read models between them (workers/assignment.py). On
PostgreSQL a session advisory lock per projection (workers/leadership.py) makes exactly
one worker process active for it; the others stand by and take over when the active one
dies (its connection closes and the lock goes with it). The position row is also locked
inside each batch transaction, so even a split brain could not apply an event twice. On
SQLite the write lock taken at the start of each batch serializes workers the same way.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Sequence

from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.framework import Feed, Projection, Reader, run_batch, tune_gc
from projections.registry import all_projections
from workers.assignment import Assignment, Helping
from workers.jobs import all_jobs, start_scheduler
from workers.leadership import LEADERSHIP_CHECK_SECONDS, Leadership
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.worker")
STANDBY_SECONDS = 1.0
MICRO_BATCH_EVENTS = 50  # fewer new events than this: wait MICRO_BATCH_SECONDS for more
MICRO_BATCH_SECONDS = 0.02
WORKER_POOL_SIZE = 3  # the ledger pool (doubled by overflow): the shared feed and the jobs read it
WORKER_POOL_TIMEOUT = 30.0


class LedgerHead:
    """The ledger's last position, polled once for every projection thread of this
    process, so that idle projections cost one query per poll in all, not one each."""

    def __init__(self, settings: Settings, stop: threading.Event):
        self.settings, self.stop = settings, stop
        self.position = 0
        self.changed = threading.Condition()

    def run(self, store: LedgerStore) -> None:
        try:
            while not self.stop.is_set():
                try:
                    position = store.max_position()
                except Exception:
                    log.warning("cannot read the ledger head; retrying")
                    self.stop.wait(STANDBY_SECONDS)
                    continue
                if position != self.position:
                    with self.changed:
                        self.position = position
                        self.changed.notify_all()
                self.stop.wait(self.settings.projector_poll_seconds)
        finally:
            with self.changed:
                self.changed.notify_all()

    def wait_beyond(self, seen: int, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.position > seen or self.stop.is_set(), timeout)


def run_projection(
    settings: Settings,
    projection: Projection,
    stop: threading.Event,
    store: LedgerStore,
    engine,
    head: LedgerHead | None = None,
    feed: Feed | None = None,
    assignment: Assignment | None = None,
) -> None:
    leadership = Leadership(settings, projection.name)
    reader = Reader(store, projection, settings.projector_batch_size, feed, head=(lambda: head.position) if head else None)
    helping = Helping()
    active = False
    try:
        while not stop.is_set():
            if assignment is not None and not assignment.is_mine(projection.name):
                if active:  # another worker's share now: hand it over between batches
                    log.info("handing over", extra={"fields": {"projection": projection.name}})
                    leadership.release()
                    active = False
                if helping.due() and leadership.acquire():  # its worker is not running it: one batch
                    try:
                        run_batch(engine, reader)
                    except Exception:
                        log.exception("batch failed", extra={"fields": {"projection": projection.name}})
                    finally:
                        leadership.release()
                stop.wait(STANDBY_SECONDS)
                continue
            if not leadership.acquire():
                if active:
                    log.info("standing by", extra={"fields": {"projection": projection.name}})
                active = False
                stop.wait(STANDBY_SECONDS)
                continue
            if not active:
                log.info("active", extra={"fields": {"projection": projection.name}})
                active = True
            seen = head.position if head else 0
            try:
                moved = run_batch(engine, reader)
            except Exception:
                log.exception("batch failed; retrying", extra={"fields": {"projection": projection.name}})
                leadership.release()
                active = False
                stop.wait(STANDBY_SECONDS)
                continue
            if head is None:
                if not moved:
                    stop.wait(settings.projector_poll_seconds)
            elif not moved or reader.position >= seen:
                # caught up with the head the poller last read: one batch per poll at most,
                # and a few milliseconds more when only a few events came (micro-batching)
                head.wait_beyond(max(seen, reader.position), timeout=LEADERSHIP_CHECK_SECONDS)
                micro_batch(head, max(seen, reader.position), stop)
    finally:
        reader.close()
        leadership.release()


def micro_batch(head: "LedgerHead", seen: int, stop: threading.Event) -> None:
    """Only a few new events: wait a few milliseconds for more, so that a burst of single
    events costs one transaction per projection, not one each (well within the lag budget)."""
    if 0 < head.position - seen < MICRO_BATCH_EVENTS:
        stop.wait(MICRO_BATCH_SECONDS)


def run_workers(settings: Settings, projections: Sequence[Projection] | None = None, stop: threading.Event | None = None) -> None:
    """Run every projection until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    projections = list(projections or all_projections(settings=settings))
    tune_gc()
    # one ledger pool and one read-model engine for the whole process. A new ledger position
    # wakes every projection thread at once, and each holds a read-model connection for its
    # batch: the engine keeps one per projection (opened when first needed), so those bursts
    # reuse connections instead of opening and closing overflow ones each time
    services = bootstrap(
        settings, writer=True, pool_size=WORKER_POOL_SIZE, engine_pool_size=len(projections), pool_timeout=WORKER_POOL_TIMEOUT
    )
    store, engine = services.store, services.engine
    head = LedgerHead(settings, stop)
    feed = Feed(store, settings.projector_batch_size)  # every window read and decoded once
    # several worker processes split the projections between them (PostgreSQL)
    assignment = Assignment([p.name for p in projections], settings.database_url if settings.is_postgres else None)
    assignment.refresh()
    threads = [
        threading.Thread(target=head.run, args=(store,), name="ledger-head", daemon=True),
        threading.Thread(target=assignment.run, args=(stop,), name="assignment", daemon=True),
    ] + [
        threading.Thread(
            target=run_projection,
            args=(settings, p, stop, store, engine, head, feed, assignment),
            name=f"projector-{p.name}",
            daemon=True,
        )
        for p in projections
    ]
    for thread in threads:
        thread.start()
    jobs = all_jobs(settings)
    scheduler = start_scheduler(settings, jobs) if jobs else None
    log.info("worker started", extra={"fields": {"projections": [t.name for t in threads], "jobs": [j.name for j in jobs]}})
    while not stop.is_set():
        stop.wait(0.5)
    if scheduler is not None:
        scheduler.shutdown(wait=True)
    for thread in threads:
        thread.join(timeout=30)
    feed.close()
    services.close()
    log.info("worker stopped")
