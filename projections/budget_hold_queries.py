"""Queries on the holds of the budget_status read model: the commits spend includes and
the holds due to expire (held amounts per budget: `budget_queries.spend_and_held`)."""
from __future__ import annotations

from datetime import datetime
from typing import Collection

from sqlalchemy import Connection, select

from projections.budget_queries import BUDGETS
from projections.usage import naive_utc


def counted_commits(conn: Connection, tenant_id: str, hold_ids: Collection[str]) -> dict[str, int]:
    """Of these holds, the committed ones, with the position that committed them."""
    if not hold_ids:
        return {}
    h = BUDGETS.holds
    rows = conn.execute(
        select(h.c.hold_id, h.c.settled_position).where(
            h.c.tenant_id == tenant_id, h.c.hold_id.in_(list(hold_ids)), h.c.state == "committed"
        )
    )
    return {r.hold_id: int(r.settled_position) for r in rows}


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
