"""Session consistency marks: the highest ledger position each principal appended, and the
position of the latest configuration change of each tenant (and of the whole platform).

Every API process reads and writes the same small table, so a write through one process
and a read through another agree on what the read must wait for. A request that appended
raises its marks with one UPSERT that keeps the highest position; a read fetches the
marks that concern it with one primary-key lookup.

The table is not a read model: it is not derived from the ledger, `rebuild` leaves it
alone, and its positions stay valid when the read models are replayed. A mark every read
model has passed makes no read wait: the worker deletes those (`prune`), so the table holds
only the principals that wrote in the last moments.
"""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table, bindparam, text

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
    keys = sorted(set(keys))  # one lock order for every writer: no deadlocks between rows
    if conn.dialect.name == "postgresql":
        # like a projection's position, a mark lost in a crash only makes a read not wait
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
    rows = ", ".join(f"(:k{i}, :position)" for i in range(len(keys)))
    params = {f"k{i}": key for i, key in enumerate(keys)}
    conn.execute(text(_RAISE.format(rows=rows)), {**params, "position": position})


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
