"""Queries on the holds of the budget_status read model: held amounts per budget, the
commits spend includes, and the holds due to expire."""
from __future__ import annotations

from datetime import datetime
from typing import Collection

from sqlalchemy import Connection, func, select

from ledger.budgets.rules import period_bounds
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


def held_in_period(conn: Connection, tenant_id: str, budgets: list[dict], now: datetime) -> dict[str, int]:
    """Outstanding holds at `now` of each budget (budgets-table rows) in its current period."""
    if not budgets:
        return {}
    h, a = BUDGETS.holds, BUDGETS.hold_amounts
    starts = {b["budget_id"]: naive_utc(period_bounds(b["period"], now)[0]) for b in budgets}
    created = {b["budget_id"]: b["created_at"] for b in budgets}
    rows = conn.execute(
        select(a.c.budget_id, a.c.period_start, a.c.budget_created_at, func.sum(a.c.amount_nanos).label("held"))
        .where(
            a.c.tenant_id == tenant_id, a.c.budget_id.in_(list(starts)), a.c.period_start.in_(set(starts.values())),
            h.c.tenant_id == a.c.tenant_id, h.c.hold_id == a.c.hold_id, h.c.state == "held",
            h.c.expires_at > naive_utc(now),
        )
        .group_by(a.c.budget_id, a.c.period_start, a.c.budget_created_at)
    )
    held: dict[str, int] = {}
    for r in rows:  # holds of this incarnation of the budget, in its current period
        if starts[r.budget_id] == r.period_start and r.budget_created_at in (None, created[r.budget_id]):
            held[r.budget_id] = held.get(r.budget_id, 0) + int(r.held)
    return held


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
