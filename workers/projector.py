"""The projector runner: one thread per read model, each running the batch loop.

On PostgreSQL a session advisory lock per projection makes exactly one worker process
active for it; the others stand by and take over when the active one dies (its
connection closes and the lock goes with it). The position row is also locked inside each
batch transaction, so even a split brain could not apply an event twice. On SQLite the
write lock taken at the start of each batch serializes workers the same way.
"""
from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from typing import Sequence

import psycopg

from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.db import make_engine
from projections.framework import Projection, run_batch
from projections.registry import all_projections

log = logging.getLogger("usage_ledger.worker")
STANDBY_SECONDS = 1.0
LEADERSHIP_CHECK_SECONDS = 1.0


def advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"usage-ledger:{name}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    """Holds the projection's advisory lock on a dedicated connection (PostgreSQL only)."""

    def __init__(self, settings: Settings, name: str):
        self.dsn = settings.database_url if settings.is_postgres else None
        self.key = advisory_key(name)
        self.conn: psycopg.Connection | None = None
        self.checked_at = 0.0

    def acquire(self) -> bool:
        if self.dsn is None:
            return True
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if not row[0]:
                    self.release()
                    return False
                return True
            if time.monotonic() - self.checked_at > LEADERSHIP_CHECK_SECONDS:
                self.conn.execute("SELECT 1")  # still connected, so still holding the lock
                self.checked_at = time.monotonic()
            return True
        except psycopg.Error:
            self.release()
            return False

    @property
    def held(self) -> bool:
        return self.dsn is None or (self.conn is not None and not self.conn.closed)

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None


class LedgerHead:
    """The ledger's last position, polled once for every projection thread of this
    process, so that idle projections cost one query per poll in all, not one each."""

    def __init__(self, settings: Settings, stop: threading.Event):
        self.settings, self.stop = settings, stop
        self.position = 0
        self.changed = threading.Condition()

    def run(self) -> None:
        store = LedgerStore(self.settings.database_url, pool_size=1, pool_timeout=self.settings.db_pool_timeout)
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
            store.close()

    def wait_beyond(self, seen: int, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.position > seen or self.stop.is_set(), timeout)


def run_projection(settings: Settings, projection: Projection, stop: threading.Event, head: LedgerHead | None = None) -> None:
    store = LedgerStore(settings.database_url, pool_size=1, pool_timeout=settings.db_pool_timeout)
    engine = make_engine(settings.database_url, writer=True, pool_size=1)
    leadership = Leadership(settings, projection.name)
    active = False
    try:
        while not stop.is_set():
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
                moved = run_batch(engine, store, projection, settings.projector_batch_size)
            except Exception:
                log.exception("batch failed; retrying", extra={"fields": {"projection": projection.name}})
                leadership.release()
                active = False
                stop.wait(STANDBY_SECONDS)
                continue
            if not moved:
                if head is None:
                    stop.wait(settings.projector_poll_seconds)
                else:
                    head.wait_beyond(seen, timeout=LEADERSHIP_CHECK_SECONDS)
    finally:
        leadership.release()
        store.close()
        engine.dispose()


def run_workers(settings: Settings, projections: Sequence[Projection] | None = None, stop: threading.Event | None = None) -> None:
    """Run every projection until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    head = LedgerHead(settings, stop)
    threads = [threading.Thread(target=head.run, name="ledger-head", daemon=True)] + [
        threading.Thread(target=run_projection, args=(settings, p, stop, head), name=f"projector-{p.name}", daemon=True)
        for p in (projections or all_projections())
    ]
    for thread in threads:
        thread.start()
    from workers.jobs import all_jobs, start_scheduler

    jobs = all_jobs(settings)
    scheduler = start_scheduler(settings, jobs) if jobs else None
    log.info("worker started", extra={"fields": {"projections": [t.name for t in threads], "jobs": [j.name for j in jobs]}})
    while not stop.is_set():
        stop.wait(0.5)
    if scheduler is not None:
        scheduler.shutdown(wait=True)
    for thread in threads:
        thread.join(timeout=30)
    log.info("worker stopped")
