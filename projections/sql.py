"""Dialect-aware bulk statements shared by the projectors (SQLite and PostgreSQL).

On PostgreSQL, row-by-row `executemany` of an upsert costs a round trip per row, so bulk
writes go through COPY into a temporary table and one `INSERT … SELECT … ON CONFLICT`
(same connection, same transaction). SQLite's executemany is already in-process and fast.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

_COPY_THRESHOLD = 20  # below this many rows a plain executemany is cheaper than COPY


def _insert(conn: Connection, table: Table):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Iterable[str]) -> None:
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping]) -> None:
    """Plain inserts of rows known to be new (COPY straight into the table on PostgreSQL)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_THRESHOLD:
        columns = list(rows[0].keys())
        column_list = ", ".join(f'"{c}"' for c in columns)
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f'COPY "{table.name}" ({column_list}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        return
    conn.execute(table.insert(), list(rows))


def upsert_add(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str], measures: Sequence[str]) -> None:
    """Insert rows, or add their measures to the existing row with the same keys."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_THRESHOLD:
        updates = ", ".join(f'"{m}" = "{table.name}"."{m}" + EXCLUDED."{m}"' for m in measures)
        _pg_copy_upsert(conn, table, rows, keys, updates)
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={m: table.c[m] + stmt.excluded[m] for m in measures},
    )
    conn.execute(stmt, list(rows))


def upsert_replace(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str]) -> None:
    """Insert rows, or overwrite every non-key column of the existing row."""
    if not rows:
        return
    columns = [c.name for c in table.columns if c.name not in keys]
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_THRESHOLD:
        _pg_copy_upsert(conn, table, rows, keys, ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns))
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))


def _pg_copy_upsert(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str], updates: str) -> None:
    columns = list(rows[0].keys())
    column_list = ", ".join(f'"{c}"' for c in columns)
    staging = f"staging_{table.name}"
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
        with cursor.copy(f'COPY "{staging}" ({column_list}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        conflict = ", ".join(f'"{k}"' for k in keys)
        cursor.execute(
            f'INSERT INTO "{table.name}" ({column_list}) SELECT {column_list} FROM "{staging}" '
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        )
        cursor.execute(f'DELETE FROM "{staging}"')
    finally:
        cursor.close()
