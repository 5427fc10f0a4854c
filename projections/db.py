"""SQLAlchemy engines for the read models (same database as the ledger)."""
from __future__ import annotations

import time

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.pool import NullPool

from projections.exact import register_sqlite_functions

# A pooled connection idle longer than this is pinged before use (a database restart or a
# cut connection shows there); one in steady use is not, which saves a round trip per
# checkout. A connection that broke within the last second fails its statement: SQLAlchemy
# then invalidates the whole pool, and the request answers 503 DATABASE_UNAVAILABLE.
IDLE_PING_SECONDS = 1.0


def sqlalchemy_url(database_url: str) -> str:
    if database_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return database_url


def make_engine(database_url: str, *, writer: bool = False, pool_size: int = 5, pool_timeout: float = 5.0) -> Engine:
    """A writer engine on SQLite takes the write lock when a transaction begins (BEGIN
    IMMEDIATE), so two projectors never interleave; readers begin deferred."""
    url = sqlalchemy_url(database_url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection, _record):  # pragma: no cover - wiring
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            register_sqlite_functions(dbapi_connection)  # exact sums past 64 bits

        @event.listens_for(engine, "begin")
        def _begin(connection):  # pragma: no cover - wiring
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        connect_args={"connect_timeout": 5},
    )

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record):  # pragma: no cover - wiring
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):  # pragma: no cover - wiring
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as error:
            raise exc.DisconnectionError() from error  # the pool tries a fresh connection

    return engine


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
