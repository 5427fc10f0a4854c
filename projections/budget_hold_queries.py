"""Queries on the holds of the budget_status read model: the commits spend includes and
the holds due to expire (held amounts per budget: `budget_queries.spend_and_held`)."""
from __future__ import annotations

from datetime import datetime
from typing import Collection

from sqlalchemy import Connection, select

from projections.budget_queries import BUDGETS
from projections.sql import driver_rows
from projections.usage import naive_utc


def counted_commits(conn: Connection, tenant_id: str, hold_ids: Collection[str]) -> dict[str, int]:
    """Of these holds, the committed ones, with the position that committed them (driver
    SQL: every reserve that finds commits in its period streams asks this)."""
    if not hold_ids:
        return {}
    ids = list(hold_ids)
    if conn.dialect.name == "postgresql":
        sql, params = _COUNTED_PG, (tenant_id, ids)
    else:
        sql, params = _COUNTED_SQLITE.format(",".join("?" * len(ids))), (tenant_id, *ids)
    return {hold_id: int(position) for hold_id, position in driver_rows(conn, sql, params)}


_COUNTED = "SELECT hold_id, settled_position FROM {table} WHERE tenant_id = {p} AND hold_id {ids} AND state = 'committed'"
_COUNTED_PG = _COUNTED.format(table=BUDGETS.holds.name, p="%s", ids="= ANY(%s)")
_COUNTED_SQLITE = _COUNTED.format(table=BUDGETS.holds.name, p="?", ids="IN ({})")


def holds_due(conn: Connection, now: datetime, limit: int = 500) -> list[tuple[str, str]]:
    """(tenant, hold) of held holds past their expiry, oldest first (for the expiry job)."""
    h = BUDGETS.holds
    rows = conn.execute(
        select(h.c.tenant_id, h.c.hold_id)
        .where(h.c.state == "held", h.c.expires_at <= naive_utc(now))
        .order_by(h.c.expires_at)
        .limit(limit)
    )
    return [(r.tenant_id, r.hold_id) for r in rows]
