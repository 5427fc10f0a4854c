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
from sqlalchemy.dialects import postgresql

from projections.exact import INT64_MAX, INT64_MIN, ExactInt, add_expression, to_sqlite

_COPY_THRESHOLD = 20  # below this many rows a plain executemany is cheaper than COPY


def _quote(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _sqlite_datetime(value: datetime | None) -> str | None:
    # the exact text SQLAlchemy's SQLite DateTime type stores (always six fractional digits,
    # no offset), so comparisons stay consistent; isoformat is several times faster than strftime
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _sqlite_uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


@lru_cache(maxsize=None)
def _sqlite_converters(table: Table, columns: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(index, converter) of the columns whose values SQLite needs in another form."""

    def converter(column: str):
        kind = table.c[column].type
        if isinstance(kind, DateTime):
            return _sqlite_datetime
        if isinstance(kind, Uuid):
            return _sqlite_uuid
        if isinstance(kind, Boolean):
            return _sqlite_bool
        if isinstance(kind, ExactInt) and kind.wide:
            return to_sqlite  # past 64 bits: decimal text, never REAL
        return None

    return tuple((i, f) for i, f in enumerate(converter(c) for c in columns) if f is not None)


def _fits_64_bits(column: Sequence) -> bool:
    """Whether every int of a wide column fits 64 bits (to_sqlite would keep them all as
    they are): two passes in C instead of a Python call per value."""
    try:
        return INT64_MIN <= min(column) and max(column) <= INT64_MAX
    except TypeError:  # None among the values
        present = [v for v in column if v is not None]
        return not present or (INT64_MIN <= min(present) and max(present) <= INT64_MAX)
    except ValueError:  # no rows
        return True


def _sqlite_values(table: Table, columns: Sequence[str], values: Sequence[Sequence]) -> Iterable[Sequence]:
    """The rows as SQLite takes them, converted a column at a time: a batch has thousands
    of rows of tens of columns, of which only a few need converting, and those often repeat
    a few values (a batch's recording time, an hour bucket, a flag): each distinct value is
    converted once."""
    converters = _sqlite_converters(table, tuple(columns))
    if not converters or not values:
        return values
    by_column = list(zip(*values))
    for i, convert in converters:
        column = by_column[i]
        if convert is to_sqlite and _fits_64_bits(column):
            continue
        converted = {value: convert(value) for value in set(column)}
        by_column[i] = tuple(map(converted.__getitem__, column))
    return zip(*by_column)


def _execute_many(conn: Connection, table: Table, sql: str, columns: Sequence[str], values: Sequence[Sequence]) -> None:
    if conn.dialect.name != "postgresql":
        values = _sqlite_values(table, columns, values)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, values)
    finally:
        cursor.close()


def _marks(conn: Connection, count: int) -> str:
    return ", ".join(["%s" if conn.dialect.name == "postgresql" else "?"] * count)


def _columns_and_values(rows: Sequence[Mapping] | Sequence[Sequence], columns: Sequence[str] | None):
    """Rows are mappings, or value tuples in the order of `columns` (cheaper for hot paths)."""
    if columns is not None:
        return list(columns), rows
    names = list(rows[0].keys())
    return names, [tuple(row[c] for c in names) for row in rows]


def insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping], keys: Iterable[str]) -> None:
    if not rows:
        return
    columns, values = _columns_and_values(rows, None)
    sql = (
        f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))}) '
        f"ON CONFLICT ({_quote(keys)}) DO NOTHING"
    )
    _execute_many(conn, table, sql, columns, values)


def insert_rows(conn: Connection, table: Table, rows: Sequence, columns: Sequence[str] | None = None) -> None:
    """Plain inserts of rows known to be new (COPY straight into the table on PostgreSQL)."""
    if not rows:
        return
    columns, values = _columns_and_values(rows, columns)
    if conn.dialect.name == "postgresql" and len(values) >= _COPY_THRESHOLD:
        with conn.connection.driver_connection.cursor() as cursor:
            _copy(cursor, table, table.name, columns, values)
        return
    _execute_many(conn, table, f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))})', columns, values)


def upsert_add(
    conn: Connection, table: Table, rows: Sequence, keys: Sequence[str], measures: Sequence[str], columns: Sequence[str] | None = None
) -> None:
    """Insert rows, or add their measures to the existing row with the same keys (exactly,
    past 64 bits, for ExactInt columns)."""
    dialect = conn.dialect.name
    updates = ", ".join(
        f'"{m}" = ' + (
            add_expression(dialect, f'"{table.name}"."{m}"', f'excluded."{m}"')
            if isinstance(table.c[m].type, ExactInt)
            else f'"{table.name}"."{m}" + excluded."{m}"'
        )
        for m in measures
    )
    _upsert(conn, table, rows, columns, keys, updates)


def upsert_replace(conn: Connection, table: Table, rows: Sequence, keys: Sequence[str], columns: Sequence[str] | None = None) -> None:
    """Insert rows, or overwrite every non-key column of the existing row."""
    if rows:
        names = columns if columns is not None else list(rows[0].keys())
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in names if c not in keys)
        _upsert(conn, table, rows, columns, keys, updates)


def _upsert(conn: Connection, table: Table, rows: Sequence, columns: Sequence[str] | None, keys: Sequence[str], updates: str) -> None:
    if not rows:
        return
    columns, values = _columns_and_values(rows, columns)
    conflict = f"ON CONFLICT ({_quote(keys)}) DO UPDATE SET {updates}"
    if conn.dialect.name == "postgresql" and len(values) >= _COPY_THRESHOLD:
        _pg_staged_upsert(conn, table, values, columns, conflict)
        return
    sql = f'INSERT INTO "{table.name}" ({_quote(columns)}) VALUES ({_marks(conn, len(columns))}) {conflict}'
    _execute_many(conn, table, sql, columns, values)


@lru_cache(maxsize=None)
def _pg_types(table: Table, columns: tuple[str, ...]) -> list[str]:
    """PostgreSQL type names of the columns, for binary COPY ('varchar(64)' -> 'varchar')."""
    return [table.c[c].type.compile(dialect=postgresql.dialect()).lower().split("(")[0] for c in columns]


def _copy(cursor, table: Table, into: str, columns: Sequence[str], values: Sequence[Sequence]) -> None:
    """Binary COPY: values go over the wire as they are, not formatted as text."""
    with cursor.copy(f'COPY "{into}" ({_quote(columns)}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types(_pg_types(table, tuple(columns)))
        for row in values:
            copy.write_row(row)


def _pg_staged_upsert(conn: Connection, table: Table, values: Sequence[Sequence], columns: list[str], conflict: str) -> None:
    staging = f"staging_{table.name}"
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
        _copy(cursor, table, staging, columns, values)
        cursor.execute(f'INSERT INTO "{table.name}" ({_quote(columns)}) SELECT {_quote(columns)} FROM "{staging}" {conflict}')
        cursor.execute(f'DELETE FROM "{staging}"')


class _Compiled:
    """A statement compiled for one dialect: its SQL, its parameters (by name and, for
    SQLite, in order, with the statement's own constants) and its columns' result processing."""

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positions = tuple(compiled.positiontup) if compiled.positional else None
        self.constants = dict(compiled.params)  # every bindparam: the statement's constants, None for the rest
        self.dialect, self.columns = dialect, list(statement.selected_columns)
        self.names = [c.key for c in self.columns]
        self.processors: list | None = None  # from the first answer's column types (PostgreSQL's numerics need them)

    def processors_for(self, description) -> list:
        if self.processors is None:
            self.processors = [
                c.type.dialect_impl(self.dialect).result_processor(self.dialect, d[1]) for c, d in zip(self.columns, description)
            ]
        return self.processors

    def params(self, given: dict):
        params = {**self.constants, **given}
        if self.positions is None:
            return params
        return tuple(_sqlite_param(params[n]) for n in self.positions)  # SQLite: datetimes as stored


class DriverQuery:
    """A hot read built and compiled once per dialect, then run as driver SQL: each call
    skips SQLAlchemy's statement building and cache key (most of a usage summary's cost).
    Parameters are the statement's bindparams by name (its constants are filled in);
    datetimes go to SQLite as SQLAlchemy stores them. `rows` gives the rows as the driver
    gives them (read summed columns with `projections.exact.from_stored`); `mappings` gives
    them as SQLAlchemy's `.mappings()` would, each column through its type's result
    processing."""

    def __init__(self, statement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _Compiled(self.statement, dialect)
        return found

    def rows(self, conn: Connection, **params) -> list:
        compiled = self._for(conn.dialect)
        return driver_rows(conn, compiled.sql, compiled.params(params))

    def mappings(self, conn: Connection, **params) -> list[dict]:
        compiled = self._for(conn.dialect)
        result = conn.exec_driver_sql(compiled.sql, compiled.params(params))
        names, processors = compiled.names, compiled.processors_for(result.cursor.description)
        return [
            {name: (value if process is None or value is None else process(value)) for name, process, value in zip(names, processors, row)}
            for row in result
        ]


def driver_rows(conn: Connection, sql: str, params) -> list[tuple]:
    """The rows of one statement written in the driver's SQL (its placeholders), in the
    connection's transaction: for hot reads of a few rows. It goes through SQLAlchemy's
    `exec_driver_sql`, so a lost connection is a DBAPIError (503 at the edge) and
    invalidates the pool, as with any other statement."""
    return list(conn.exec_driver_sql(sql, params if isinstance(params, dict) else tuple(params)))


def driver_statement(conn: Connection, sql: str, params: Sequence) -> int:
    """Run one statement written with %s placeholders in the connection's transaction and
    return its row count: for statements a hot loop runs every time, without SQLAlchemy's
    statement building. On SQLite the placeholders become ? and datetimes are written as
    SQLAlchemy writes them."""
    if conn.dialect.name != "postgresql":
        sql = sql.replace("%s", "?")
        params = [_sqlite_param(v) for v in params]
    return conn.exec_driver_sql(sql, tuple(params)).rowcount


def _sqlite_param(value: Any) -> Any:
    """A parameter of a driver statement as SQLite takes it (datetimes as SQLAlchemy stores them)."""
    return _sqlite_datetime(value) if isinstance(value, datetime) else value
