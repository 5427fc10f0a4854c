"""Dialect-aware bulk statements shared by the projectors (SQLite and PostgreSQL).

Projectors write thousands of rows per batch, so these go to the driver directly (same
connection, same transaction as the SQLAlchemy `Connection`) instead of through
SQLAlchemy's per-row parameter processing:
- PostgreSQL: COPY into a temporary staging table, then one `INSERT … SELECT … ON CONFLICT`
  (row-by-row `executemany` of an upsert costs a round trip per row);
- SQLite: the driver's in-process `executemany` with a prepared `INSERT … ON CONFLICT`.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Boolean, Connection, DateTime, Table, Uuid

_COPY_THRESHOLD = 20  # below this many rows a plain executemany is cheaper than COPY


def _quote(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _sqlite_datetime(value: datetime | None) -> str | None:
    # the exact text SQLAlchemy's SQLite DateTime type stores, so comparisons stay consistent
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


@lru_cache(maxsize=None)
def _sqlite_converters(table: Table, columns: tuple[str, ...]) -> tuple[Callable[[Any], Any] | None, ...]:
    def converter(column: str):
        kind = table.c[column].type
        if isinstance(kind, DateTime):
            return _sqlite_datetime
        if isinstance(kind, Uuid):
            return _sqlite_uuid
        if isinstance(kind, Boolean):
            return _sqlite_bool
        return None

    return tuple(converter(c) for c in columns)


def _execute_many(conn: Connection, table: Table, sql: str, columns: Sequence[str], rows: Sequence[Mapping]) -> None:
    if conn.dialect.name == "postgresql":
        values = [tuple(row[c] for c in columns) for row in rows]
    else:
        converters = _sqlite_converters(table, tuple(columns))
        values = [tuple(f(row[c]) if f else row[c] for c, f in zip(columns, converters)) for row in rows]
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, values)
    finally:
        cursor.close()


def _marks(conn: Connection, count: int) -> str:
    return ", ".join(["%s" if conn.dialect.name == "postgresql" else "?"] * count)


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Iterable[str]) -> None:
    if not rows:
        return
    columns = list(rows[0].keys())
    sql = (
        f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))}) '
        f"ON CONFLICT ({_quote(keys)}) DO NOTHING"
    )
    _execute_many(conn, table, sql, columns, rows)


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping]) -> None:
    """Plain inserts of rows known to be new (COPY straight into the table on PostgreSQL)."""
    if not rows:
        return
    columns = list(rows[0].keys())
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_THRESHOLD:
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f'COPY "{table.name}" ({_quote(columns)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        return
    _execute_many(conn, table, f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))})', columns, rows)


def upsert_add(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str], measures: Sequence[str]) -> None:
    """Insert rows, or add their measures to the existing row with the same keys."""
    _upsert(conn, table, rows, keys, ", ".join(f'"{m}" = "{table.name}"."{m}" + excluded."{m}"' for m in measures))


def upsert_replace(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str]) -> None:
    """Insert rows, or overwrite every non-key column of the existing row."""
    if rows:
        columns = [c for c in rows[0].keys() if c not in keys]
        _upsert(conn, table, rows, keys, ", ".join(f'"{c}" = excluded."{c}"' for c in columns))


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str], updates: str) -> None:
    if not rows:
        return
    columns = list(rows[0].keys())
    conflict = f"ON CONFLICT ({_quote(keys)}) DO UPDATE SET {updates}"
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_THRESHOLD:
        _pg_staged_upsert(conn, table, rows, columns, conflict)
        return
    sql = f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))}) {conflict}'
    _execute_many(conn, table, sql, columns, rows)


def _pg_staged_upsert(conn: Connection, table: Table, rows: Sequence[Mapping], columns: list[str], conflict: str) -> None:
    staging = f"staging_{table.name}"
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
        with cursor.copy(f'COPY "{staging}" ({_quote(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        cursor.execute(f'INSERT INTO "{table.name}" ({_quote(columns)}) SELECT {_quote(columns)} FROM "{staging}" {conflict}')
        cursor.execute(f'DELETE FROM "{staging}"')
