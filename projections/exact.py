"""Exact integer sums on both backends: the type of every summed nano, milli or token column.

A read model keeps money as integer nano-units. One event's value fits 64 bits (the
validation limits guarantee it), but a sum of many does not: 10,000 events at the highest
cost are 10^19 nanos, above 2^63. So:

- `ExactInt(wide=True)`, for columns that hold sums (rollups, spend, gauge days): NUMERIC(38,0)
  on PostgreSQL; on SQLite a column without numeric affinity that holds an INTEGER while
  the value fits 64 bits and otherwise its decimal text, zero-padded to 40 digits so that
  text compares like the number (and every INTEGER sorts below every text, as every value
  that fits 64 bits is below every value that does not). SQLite's own `a + b` turns into a
  floating-point REAL on overflow: the upserts that add to these columns call `exact_add`
  instead when the plain sum would overflow (`add_expression`); SUM of them is exact too
  (`_sqlite_sum`), and sorts by the exact value.
- `ExactInt()` (narrow), for per-event columns whose sums are read: BIGINT on both, but
  `SUM` of it (and of a wide column) is exact on SQLite (native sums of 32-bit halves put
  together by `exact_total`, see `_sqlite_sum`), where SQLite's SUM raises on overflow;
  PostgreSQL's SUM of BIGINT or NUMERIC is NUMERIC already.

Values come back as Python ints in every case (`process_result_value`).
"""
from __future__ import annotations

import sqlite3

from sqlalchemy import BigInteger, Numeric
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import functions
from sqlalchemy.types import TypeDecorator, UserDefinedType

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DIGITS = 40  # NUMERIC(38,0) and a sign fit
WIDE_PRECISION = 38


class _SqliteNoAffinity(UserDefinedType):
    """Declared type 'EXACT_BLOB': BLOB affinity, so SQLite stores INTEGER and TEXT as given."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "EXACT_BLOB"


def to_sqlite(value):
    """An int as SQLite keeps it: itself within 64 bits, else its zero-padded decimal text."""
    if value is None or INT64_MIN <= value <= INT64_MAX:
        return value
    if value < 0:
        return "-" + str(-value).zfill(DIGITS - 1)
    return str(value).zfill(DIGITS)


def from_stored(value):
    if value is None or type(value) is int:
        return value
    if isinstance(value, float):  # never written; refuse rather than guess
        raise ValueError(f"an exact integer column holds a floating-point value: {value!r}")
    return int(value)  # Decimal (PostgreSQL), text (SQLite past 64 bits)


class ExactInt(TypeDecorator):
    impl = BigInteger
    cache_ok = True

    def __init__(self, wide: bool = False):
        super().__init__()
        self.wide = wide

    def load_dialect_impl(self, dialect):
        if not self.wide:
            return dialect.type_descriptor(BigInteger())
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(WIDE_PRECISION, 0, asdecimal=True))
        return dialect.type_descriptor(_SqliteNoAffinity())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = int(value)
        return to_sqlite(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return from_stored(value)

    def coerce_compared_value(self, op, value):
        return self


def is_exact(column_type) -> bool:
    return isinstance(column_type, ExactInt)


def is_wide(column_type) -> bool:
    return isinstance(column_type, ExactInt) and column_type.wide


# SQLite functions ---------------------------------------------------------------------------
def _exact_add(a, b):
    if a is None or b is None:
        return None
    return to_sqlite(from_stored(a) + from_stored(b))


def _exact_total(high, low, big):
    """The parts of an exact SUM (see _sqlite_sum) put together, once per group. A value
    past 64 bits entered the halves clamped to the nearest 64-bit bound (SQLite's
    conversion of text to an integer): its own value replaces that."""
    if high is None:
        return None
    total = (high << 32) + (low or 0)
    if big is not None:
        for text in big.split(","):
            value = int(text)
            total += value - (INT64_MAX if value > 0 else INT64_MIN)
    return to_sqlite(total)


def register_sqlite_functions(dbapi_connection: sqlite3.Connection) -> None:
    """exact_add(a, b) and exact_total(high, low, big) on a SQLite connection (make_engine
    does it)."""
    dbapi_connection.create_function("exact_add", 2, _exact_add, deterministic=True)
    dbapi_connection.create_function("exact_total", 3, _exact_total, deterministic=True)


_LOW = 2**32 - 1


@compiles(functions.sum, "sqlite")
def _sqlite_sum(element, compiler, **kw):
    """SUM of an exact column on SQLite, without a Python call per row: the values summed
    natively in two 32-bit halves (each half's sum stays within 64 bits for 2^31 rows; >>
    is arithmetic, so x = (x >> 32) * 2^32 + (x & (2^32 - 1)) for negatives too), and the
    rare values past 64 bits (decimal text) gathered as text as well; exact_total puts them
    together once per group. Every other SUM stays SQLite's."""
    clauses = list(element.clauses)
    if len(clauses) == 1 and is_exact(getattr(clauses[0], "type", None)):
        x = compiler.process(clauses[0], **kw)
        return (
            f"exact_total(sum({x} >> 32), sum({x} & {_LOW}), "
            f"group_concat(CASE WHEN {x} > {INT64_MAX} THEN {x} END))"  # only text compares above every integer
        )
    return compiler.visit_function(element, **kw)


def add_expression(dialect_name: str, target: str, delta: str) -> str:
    """SQL that adds `delta` to `target` exactly: plain + on PostgreSQL (NUMERIC), and on
    SQLite plain + while both are integers and the sum stays within 64 bits, else exact_add."""
    if dialect_name == "postgresql":
        return f"{target} + {delta}"
    fits = (
        f"typeof({target}) = 'integer' AND typeof({delta}) = 'integer' AND NOT "
        f"(({delta} > 0 AND {target} > {INT64_MAX} - {delta}) OR ({delta} < 0 AND {target} < ({INT64_MIN + 1} - 1) - {delta}))"
    )
    return f"CASE WHEN {fits} THEN {target} + {delta} ELSE exact_add({target}, {delta}) END"

