"""Queries on the budget_status read model: budgets, their spend in a period, alerts.

`org_budgets_with_spend` feeds the pre-flight check: the org's enabled budgets, each with
the one spend row of its current period (a primary-key lookup), never raw events.
"""
from __future__ import annotations

from datetime import datetime
from typing import Collection

from sqlalchemy import Connection, DateTime, and_, bindparam, case, func, literal, or_, select

from ledger.budgets.rules import PERIODS, period_bounds, period_starts
from projections.budgets import BudgetStatusProjection
from projections.credits_gauges import scope_gauge_credits
from projections.framework import projection_positions
from projections.sql import DriverQuery
from projections.usage import naive_utc

BUDGETS = BudgetStatusProjection()


def get_budget(conn: Connection, tenant_id: str, budget_id: str) -> dict | None:
    t = BUDGETS.budgets
    row = conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.budget_id == budget_id)).mappings().first()
    return dict(row) if row else None


def list_budgets(
    conn: Connection,
    tenant_id: str,
    org_id: str,
    *,
    scope: str | None = None,
    scope_id: str | None = None,
    enabled: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict], int]:
    t = BUDGETS.budgets
    where = [t.c.tenant_id == tenant_id, t.c.org_id == org_id]
    if scope is not None:
        where.append(t.c.scope == scope)
    if scope_id is not None:
        where.append(t.c.scope_id == ("" if scope == "organization" and scope_id == org_id else scope_id))
    if enabled is not None:
        where.append(t.c.enabled == enabled)
    total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
    rows = conn.execute(select(t).where(*where).order_by(t.c.budget_id).limit(limit).offset(offset)).mappings()
    return [dict(r) for r in rows], total


def current_period_starts(now: datetime) -> dict[str, datetime]:
    """Every period kind's current start, as the read model stores it (naive UTC)."""
    return {period: naive_utc(start) for period, start in period_starts(now).items()}


def org_budgets_with_spend(
    conn: Connection, tenant_id: str, org_id: str, now: datetime, pairs: Collection[tuple[str, str]] | None = None
) -> tuple[list[dict], int]:
    """The org's enabled budgets, each with the spend of its current period (`used_nanos`,
    in the budget's unit: one primary-key lookup per budget), its outstanding holds at `now`
    (`held_nanos`, the earliest of their expiries `next_expiry`), and the position of the
    budget_status read model they reflect. `pairs`: only the budgets of these (scope,
    scope_id) pairs (a reserve needs those of its request, not the whole org's)."""
    pairs = None if pairs is None else sorted(pairs)
    params = {f"start_{period}": start for period, start in current_period_starts(now).items()}
    for n, (scope, scope_id) in enumerate(pairs or ()):
        params[f"scope_{n}"], params[f"scope_id_{n}"] = scope, scope_id
    query = _budgets_with_spend(None if pairs is None else len(pairs))
    # one statement: the rows are exactly at `position`
    rows = query.mappings(conn, tenant_id=tenant_id, org_id=org_id, now=naive_utc(now), **params)
    reflected = int(rows[0]["position"] or 0) if rows else _position(conn)
    for row in rows:
        if row["unit"] == "credits":
            start, end = period_bounds(row["period"], now)
            row["used_nanos"] += scope_gauge_credits(
                conn, tenant_id, org_id, row["scope"], row["scope_id"], naive_utc(start), naive_utc(end), naive_utc(now)
            )
    return rows, reflected


_POSITION = select(projection_positions.c.position).where(projection_positions.c.name == BUDGETS.name).scalar_subquery()
_WITH_SPEND: dict[int | None, DriverQuery] = {}


def _position(conn: Connection) -> int:
    return int(conn.execute(select(_POSITION)).scalar() or 0)


def period_start_of(b):
    """The current start of budget `b`'s period, from the parameters start_{period}."""
    return case(*[(b.c.period == p, bindparam(f"start_{p}", type_=DateTime)) for p in PERIODS])


def outstanding_holds(b, current_start):
    """The holds outstanding at `now` (a parameter) on budget `b` in its current period:
    their sum and their earliest expiry. The tenant's (parameter `tenant_id`) outstanding
    holds are read once per statement, each with its amounts (a primary-key range), and
    summed per budget, period and incarnation held (`_held_now`); each budget then picks its
    own few sums. The holds table keeps every hold ever placed, so the read starts from the
    holds held now (an index range as short as they are). A read per budget of every
    outstanding hold grew with budgets times holds: 1.4 s for a page of 100 budgets, and a
    plain check's snapshot 2.4 s, with 3,000 holds outstanding; a read per budget of the
    amounts of every hold it had seen grew with history (430 ms for one budget's status
    after 3,000 settled holds, a plan made on stale statistics)."""
    held_now = _held_now()
    mine = (
        held_now.c.budget_id == b.c.budget_id,
        held_now.c.period_start == current_start,
        or_(held_now.c.budget_created_at.is_(None), held_now.c.budget_created_at == b.c.created_at),
    )
    held = select(func.sum(held_now.c.held_nanos)).where(*mine).scalar_subquery()
    next_expiry = select(func.min(held_now.c.next_expiry)).where(*mine).scalar_subquery()
    return held, next_expiry


def _held_now():
    """Outstanding holds at `now` of tenant `tenant_id` (parameters), summed per budget,
    period start and incarnation held, as a materialized common table expression: computed
    once per statement, however many budgets read it."""
    h, a = BUDGETS.holds, BUDGETS.hold_amounts
    return (
        select(
            a.c.budget_id, a.c.period_start, a.c.budget_created_at,
            func.sum(a.c.amount_nanos).label("held_nanos"), func.min(h.c.expires_at).label("next_expiry"),
        )
        .select_from(h.join(a, and_(a.c.tenant_id == h.c.tenant_id, a.c.hold_id == h.c.hold_id)))
        .where(
            h.c.tenant_id == bindparam("tenant_id"), h.c.state == "held", h.c.expires_at > bindparam("now", type_=DateTime)
        )
        .group_by(a.c.budget_id, a.c.period_start, a.c.budget_created_at)
        .cte("held_now")
        .prefix_with("MATERIALIZED")
    )


def spend_and_held(conn: Connection, tenant_id: str, budgets: Collection[dict], now: datetime) -> dict[str, tuple[int, int]]:
    """Of each of these budgets (budgets-table rows), in its current period: what it used
    (its spend row, plus for a budget in credits its scope's gauge credits up to now) and
    its holds outstanding at `now`. One statement, whatever the number of budgets."""
    if not budgets:
        return {}
    b = BUDGETS.budgets
    current_start = period_start_of(b)
    held, _ = outstanding_holds(b, current_start)
    params = {f"start_{period}": start for period, start in current_period_starts(now).items()}
    rows = conn.execute(
        select(b.c.budget_id, _used(b, current_start).label("used"), held.label("held"))
        .where(b.c.tenant_id == bindparam("tenant_id"), b.c.budget_id.in_([r["budget_id"] for r in budgets])),
        {**params, "tenant_id": tenant_id, "now": naive_utc(now)},
    )
    found = {r.budget_id: (int(r.used or 0), int(r.held or 0)) for r in rows}
    for budget in budgets:
        if budget["unit"] == "credits" and budget["budget_id"] in found:
            start, end = period_bounds(budget["period"], now)
            used, held = found[budget["budget_id"]]
            used += scope_gauge_credits(
                conn, tenant_id, budget["org_id"], budget["scope"], budget["scope_id"], naive_utc(start), naive_utc(end), naive_utc(now)
            )
            found[budget["budget_id"]] = (used, held)
    return found


def _used(b, current_start):
    """Budget `b`'s spend row in its current period, in its unit (a correlated subquery, so
    the plan does not depend on table statistics)."""
    s = BUDGETS.spend
    return (
        select(case((b.c.unit == "credits", s.c.credits_nanos), else_=s.c.cost_nanos))
        .where(
            s.c.tenant_id == b.c.tenant_id,
            s.c.org_id == b.c.org_id,
            s.c.scope == b.c.scope,
            s.c.scope_id == b.c.scope_id,
            s.c.period == b.c.period,
            s.c.period_start == current_start,
        )
        .scalar_subquery()
    )


def _budgets_with_spend(pairs: int | None) -> DriverQuery:
    """The statement of `org_budgets_with_spend` for the whole org (None) or for this many
    (scope, scope_id) pairs, built once (it costs more to build than to run); its
    parameters: tenant_id, org_id, now, start_{period} and scope_{n}/scope_id_{n}."""
    found = _WITH_SPEND.get(pairs)
    if found is not None:
        return found
    b = BUDGETS.budgets
    current_start = period_start_of(b)
    used = _used(b, current_start)
    held, next_expiry = outstanding_holds(b, current_start)
    if pairs is not None:
        # a reserve: block budgets are held on their period streams (ledger/budgets/
        # hold_commands.py), so the read model's holds of those are not read at all
        held = case((b.c.on_exceed == "block", literal(0)), else_=held)
        next_expiry = literal(None, DateTime)
    query = (
        select(
            b.c.budget_id, b.c.name, b.c.scope, b.c.scope_id, b.c.unit, b.c.limit_nanos, b.c.period, b.c.on_exceed,
            b.c.downgrade_model, b.c.created_at, func.coalesce(used, 0).label("used_nanos"),
            func.coalesce(held, 0).label("held_nanos"), next_expiry.label("next_expiry"), _POSITION.label("position"),
        )
        .where(b.c.tenant_id == bindparam("tenant_id"), b.c.org_id == bindparam("org_id"), b.c.enabled.is_(True))
        .order_by(b.c.budget_id)
    )
    if pairs is not None:
        query = query.where(or_(
            *[and_(b.c.scope == bindparam(f"scope_{n}"), b.c.scope_id == bindparam(f"scope_id_{n}")) for n in range(pairs)]
        ))
    found = _WITH_SPEND[pairs] = DriverQuery(query)
    return found


def thresholds_crossed(conn: Connection, tenant_id: str, budget_id: str, period_start: datetime) -> list[int]:
    a = BUDGETS.alerts
    rows = conn.execute(
        select(a.c.threshold_bp)
        .where(a.c.tenant_id == tenant_id, a.c.budget_id == budget_id, a.c.period_start == period_start)
        .order_by(a.c.threshold_bp)
    )
    return [r.threshold_bp for r in rows]


def alerts(conn: Connection, tenant_id: str, budget_id: str, limit: int, offset: int) -> tuple[list[dict], int]:
    a = BUDGETS.alerts
    where = [a.c.tenant_id == tenant_id, a.c.budget_id == budget_id]
    total = conn.execute(select(func.count()).select_from(a).where(*where)).scalar_one()
    rows = conn.execute(
        select(a).where(*where).order_by(a.c.period_start.desc(), a.c.threshold_bp).limit(limit).offset(offset)
    ).mappings()
    return [dict(r) for r in rows], total


# for the budget-alerts job ------------------------------------------------------------
def alerts_to_raise(conn: Connection, limit: int = 500) -> list[dict]:
    a = BUDGETS.alerts
    rows = conn.execute(select(a).where(a.c.raised.is_(False)).order_by(a.c.position, a.c.threshold_bp).limit(limit))
    return [dict(r) for r in rows.mappings()]


def alerts_to_deliver(conn: Connection, now: datetime, limit: int = 100) -> list[dict]:
    """Raised alerts with a webhook whose next attempt is due."""
    a = BUDGETS.alerts
    due = or_(a.c.next_attempt_at.is_(None), a.c.next_attempt_at <= naive_utc(now))
    rows = conn.execute(
        select(a)
        .where(a.c.delivery_status.in_(("pending", "retrying")), a.c.raised.is_(True), due)
        .order_by(a.c.raised_position)
        .limit(limit)
    )
    return [dict(r) for r in rows.mappings()]
