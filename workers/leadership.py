"""Which worker process is the active one for a projection or a periodic job.

On PostgreSQL each process holds session advisory locks on one connection: the process
holding a name's lock is active for it, the others stand by and take over when its
connection dies (the locks go with it). On SQLite every process is active; the write lock
taken by each batch serializes them instead.
"""
from __future__ import annotations

import hashlib
import threading
import time

import psycopg

from ledger.settings import Settings

LEADERSHIP_CHECK_SECONDS = 1.0


def advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"usage-ledger:{name}".encode()).digest()[:8], "big", signed=True)


class _AdvisoryLocks:
    """One connection per worker process holding the session advisory locks of every
    projection and job this process is active for (PostgreSQL). If the connection dies, all
    its locks go with it and every thread must win its lock again."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None
        self.held: set[int] = set()
        self.checked_at = 0.0
        self.lock = threading.Lock()

    def hold(self, key: int) -> bool:
        with self.lock:
            try:
                if self.conn is None or self.conn.closed:
                    self.held.clear()
                    self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                if key in self.held:
                    if time.monotonic() - self.checked_at > LEADERSHIP_CHECK_SECONDS:
                        self.conn.execute("SELECT 1")  # still connected, so still holding the locks
                        self.checked_at = time.monotonic()
                    return True
                if self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                    self.held.add(key)
                    return True
                return False
            except psycopg.Error:
                self._reset()
                return False

    def drop(self, key: int) -> None:
        with self.lock:
            if key in self.held and self.conn is not None and not self.conn.closed:
                try:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:
                    self._reset()
            self.held.discard(key)

    def _reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None
        self.held.clear()


_process_locks: dict[str, _AdvisoryLocks] = {}
_process_locks_guard = threading.Lock()


class Leadership:
    """Whether this process is the active one for a projection or job: an advisory lock on
    PostgreSQL (held on the process's one lock connection); always on SQLite, where the write
    lock taken by each batch serializes workers instead."""

    def __init__(self, settings: Settings, name: str):
        self.key = advisory_key(name)
        self.locks: _AdvisoryLocks | None = None
        if settings.is_postgres:
            with _process_locks_guard:
                self.locks = _process_locks.setdefault(settings.database_url, _AdvisoryLocks(settings.database_url))

    def acquire(self) -> bool:
        return self.locks is None or self.locks.hold(self.key)

    def release(self) -> None:
        if self.locks is not None:
            self.locks.drop(self.key)
