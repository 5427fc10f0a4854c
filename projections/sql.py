"""Dialect-aware statements shared by the projectors (SQLite and PostgreSQL)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: Connection, table: Table):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Iterable[str]) -> None:
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))


def upsert_add(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Sequence[str], measures: Sequence[str]) -> None:
    """Insert rows, or add their measures to the existing row with the same keys."""
    if not rows:
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
    stmt = _insert(conn, table)
    columns = [c.name for c in table.columns if c.name not in keys]
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))
