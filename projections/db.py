"""SQLAlchemy engines for the read models (same database as the ledger)."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from projections.exact import register_sqlite_functions


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
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
