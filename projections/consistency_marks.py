"""Session consistency marks: the highest ledger position each principal appended, and the
position of the latest configuration change of each tenant (and of the whole platform).

Every API process reads and writes the same small table, so a write through one process
and a read through another agree on what the read must wait for. A request that appends
raises its marks with one UPSERT that keeps the highest position, run in the append's own
transaction (no second commit, and on SQLite no second take of the file's write lock); a
read fetches the marks that concern it with one primary-key lookup.

The table is not a read model: it is not derived from the ledger, `rebuild` leaves it
alone, and its positions stay valid when the read models are replayed. A mark every read
model has passed makes no read wait: the worker deletes those (`prune`), so the table holds
only the principals that wrote in the last moments.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence
from uuid import UUID

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table, bindparam, text

from projections.sql import driver_rows

metadata = MetaData()

consistency_marks = Table(
    "consistency_marks",
    metadata,
    Column("mark_key", String(200), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

PLATFORM_CONFIGURATION = "config:*"  # prices, credit rates, docs access, admin-key changes


def tenant_configuration(tenant_id: str) -> str:
    return f"config:{tenant_id}"


def create_table(engine: Engine) -> None:
    metadata.create_all(engine)


# The WHERE keeps the highest position when concurrent requests of one principal commit
# out of order, and skips rewriting a row that is already higher.
_RAISE = (
    "INSERT INTO consistency_marks (mark_key, position) VALUES {rows} "
    "ON CONFLICT (mark_key) DO UPDATE SET position = excluded.position "
    "WHERE consistency_marks.position < excluded.position"
)
_MARKS = text("SELECT mark_key, position FROM consistency_marks WHERE mark_key IN :keys").bindparams(
    bindparam("keys", expanding=True)
)


def raise_marks(conn: Connection, keys: Sequence[str], position: int) -> None:
    """Make every mark in `keys` at least `position` (one statement)."""
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # like a projection's position, a mark lost in a crash only makes a read not wait
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
    sql, params = raise_marks_statement(keys, position, "%s" if postgres else "?")
    conn.exec_driver_sql(sql, tuple(params))


def raise_marks_statement(keys: Sequence[str], position: int, placeholder: str) -> tuple[str, list]:
    """`raise_marks` as one driver-level statement (placeholder "?" or "%s"), for the ledger
    to run in the transaction of the append that reached `position` (ledger/store.py
    `also_in_appends`): the marks commit with the events, or neither does."""
    keys = sorted(set(keys))  # one lock order for every writer: no deadlocks between rows
    rows = ", ".join([f"({placeholder}, {placeholder})"] * len(keys))
    return _RAISE.format(rows=rows), [value for key in keys for value in (key, position)]


def marks_of(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    """The positions of those of these marks that are set (one primary-key lookup)."""
    return dict(conn.execute(_MARKS, {"keys": list(keys)}).all())


def prune(conn: Connection) -> int:
    """Delete the marks every read model has passed (they make no read wait); a mark raised
    meanwhile is above that position and stays. Returns how many were deleted."""
    lowest = conn.execute(text("SELECT min(position) FROM projection_positions")).scalar()
    if lowest is None:
        return 0
    return conn.execute(text("DELETE FROM consistency_marks WHERE position <= :lowest"), {"lowest": lowest}).rowcount


def request_state(
    conn: Connection, keys: Sequence[str], stream: UUID | None = None
) -> tuple[dict[str, int], dict[str, int], int | None]:
    """What an authenticated request needs, in one round trip: the positions of these marks,
    every read model's position, and the version of one ledger stream (the caller's
    credential, for the per-process credential cache; None when the stream does not exist).
    Three index lookups on small tables or one primary-key range."""
    postgres = conn.dialect.name == "postgresql"
    params: list = list(keys)
    if stream is not None:
        params.append(stream if postgres else stream.hex)
    found: dict[str, dict] = {"m": {}, "p": {}, "s": {}}
    for kind, name, position in driver_rows(conn, _request_state_sql(postgres, len(keys), stream is not None), tuple(params)):
        found[kind][name] = position
    return found["m"], found["p"], found["s"].get("")


@lru_cache(maxsize=64)
def _request_state_sql(postgres: bool, keys: int, with_stream: bool) -> str:
    """`request_state`'s statement, for the driver (built once per shape)."""
    from ledger.store import EVENTS_TABLE  # the events table the ledger writes

    placeholder = "%s" if postgres else "?"
    marks = ", ".join([placeholder] * keys) or "NULL"
    sql = (
        f"SELECT 'm', mark_key, position FROM consistency_marks WHERE mark_key IN ({marks}) "
        "UNION ALL SELECT 'p', name, position FROM projection_positions"
    )
    if with_stream:
        sql += f" UNION ALL SELECT 's', '', MAX(originator_version) FROM {EVENTS_TABLE} WHERE originator_id = {placeholder}"
    return sql
