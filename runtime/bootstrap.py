"""One place that wires a process: `bootstrap(settings)` builds the ledger store, the
`Ledger` application (with the prices and credit rates the ledger holds) and the
read-model engine. The API, every worker job, the command line and the tests call it."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from ledger.application import Ledger
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.db import make_engine
from projections.pricing_queries import LedgerRates


@dataclass
class Services:
    settings: Settings
    store: LedgerStore
    ledger: Ledger
    engine: Engine
    # api/auth.py: agent clients as their streams last said, by client id, with that version
    credentials: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def reader(self) -> Engine:
        """The read-model engine for reads that are not streamed: on PostgreSQL each
        statement is its own transaction (autocommit), which saves a BEGIN and a ROLLBACK
        round trip per connection. Reads see the same either way (READ COMMITTED gives
        each statement its own snapshot). It shares the engine's pool; never write through
        it. On SQLite it is the engine itself (a deferred read transaction, one snapshot)."""
        if self.engine.dialect.name != "postgresql":
            return self.engine
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def bootstrap(
    settings: Settings | None = None,
    *,
    writer: bool = False,
    pool_size: int | None = None,
    engine_pool_size: int | None = None,
    pool_timeout: float | None = None,
) -> Services:
    """Everything a process needs, built from `settings` (the environment when None).
    `writer` engines take SQLite's write lock when a transaction begins (projectors, jobs).
    `engine_pool_size`: the read-model engine's pool, when it differs from the ledger's."""
    settings = settings or Settings.from_env()
    size = pool_size or settings.db_pool_size
    timeout = pool_timeout or settings.db_pool_timeout
    store = LedgerStore(settings.database_url, pool_size=size, pool_timeout=timeout)
    engine = make_engine(settings.database_url, writer=writer, pool_size=engine_pool_size or size, pool_timeout=timeout)
    rates = LedgerRates(store, engine)
    ledger = Ledger(store, settings, books=rates.current)
    return Services(settings, store, ledger, engine)
