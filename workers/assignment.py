"""Which worker process runs which projection, so that several workers share the work.

On PostgreSQL every worker process keeps one connection named `usage-ledger worker`; the
live workers are those connections, ranked by when they started. Every process computes
the same balanced split of the projections over that many workers (heaviest first, each
to the least loaded worker) and runs its own share; when a worker starts or stops, the
split changes and a process hands over (releases the advisory lock of) a projection that
is no longer its own after the batch it is running. A projection whose worker is not
holding it (that worker is starting, or stuck) is still run: any process may take it for
a batch now and then, so no read model stops while a worker is away.

On SQLite there is one writer at a time anyway: every worker is assigned everything.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

import psycopg

log = logging.getLogger("usage_ledger.worker")

WORKER_APPLICATION_NAME = "usage-ledger worker"
MEMBERSHIP_SECONDS = 1.0  # how often the live workers are counted
ORPHAN_SECONDS = 5.0  # how long a projection assigned elsewhere is left before this process helps out

# Relative cost per event of each projection (profiled on usage-heavy ledgers, bench/);
# any other projection costs DEFAULT_COST.
COSTS = {
    "usage_rollups": 4.0,
    "usage_events": 4.0,
    "budget_status": 3.0,
    "credits": 1.7,
    "ledger_chain": 1.1,
    "axon_audit": 1.0,
}
DEFAULT_COST = 0.2


def split(names: Iterable[str], workers: int) -> list[set[str]]:
    """A balanced split of the projections over `workers` (the same in every process)."""
    shares: list[set[str]] = [set() for _ in range(max(workers, 1))]
    loads = [0.0] * len(shares)
    for name in sorted(names, key=lambda n: (-COSTS.get(n, DEFAULT_COST), n)):
        lightest = min(range(len(shares)), key=lambda i: (loads[i], i))
        shares[lightest].add(name)
        loads[lightest] += COSTS.get(name, DEFAULT_COST)
    return shares


class Assignment:
    """This process's share of the projections, kept current by `run` (a thread)."""

    def __init__(self, names: Iterable[str], dsn: str | None):
        self.names = list(names)
        self.dsn = dsn
        self.rank, self.workers = 0, 1
        self.mine: set[str] = set(self.names)
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def is_mine(self, name: str) -> bool:
        with self._lock:
            return name in self.mine

    def refresh(self) -> None:
        if self.dsn is None:
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=5, application_name=WORKER_APPLICATION_NAME
                )
            pids = [
                row[0]
                for row in self._conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
                    " ORDER BY backend_start, pid",
                    (WORKER_APPLICATION_NAME,),
                )
            ]
            own = self._conn.info.backend_pid
        except psycopg.Error:
            self.close()
            return  # keep the last split; the advisory locks still keep each projection single
        if own not in pids:
            return
        rank, workers = pids.index(own), len(pids)
        if (rank, workers) != (self.rank, self.workers):
            mine = split(self.names, workers)[rank]
            with self._lock:
                self.rank, self.workers, self.mine = rank, workers, mine
            log.info("share of the projections", extra={"fields": {"worker": rank + 1, "of": workers, "projections": sorted(mine)}})

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.refresh()
            stop.wait(MEMBERSHIP_SECONDS)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


class Helping:
    """When this process may take a batch of a projection assigned to another worker."""

    def __init__(self) -> None:
        self.next_try = time.monotonic() + ORPHAN_SECONDS

    def due(self) -> bool:
        if time.monotonic() < self.next_try:
            return False
        self.next_try = time.monotonic() + ORPHAN_SECONDS
        return True
