"""Queries of the credit reports. Event-mode credits come from the usage daily
rollup, gauge credits from gauge_daily plus the still-open part of each series' latest
level (level × rate × time since its reading, up to the window's end or now)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable, Sequence

from sqlalchemy import Connection, func, select

from ledger.pricing.credits import CreditRateBook
from ledger.usage.resources import RESOURCE_TYPES
from projections.credits import CreditsProjection, day_of, load_rate_book
from projections.credits_gauges import open_gauge_credits
from projections.budget_queries import BUDGETS
from projections.usage import from_nanos
from projections.usage_queries import USAGE

CREDITS = CreditsProjection()
GAUGE_TYPES = tuple(r.slug for r in RESOURCE_TYPES if r.mode == "gauge")
COLUMNS = ("day", "resource_type", "app_id", "user_id", "agent_id")


def rate_book(conn: Connection) -> CreditRateBook:
    """Defaults plus every CreditRateSet the credits projection has seen."""
    return load_rate_book(conn, CREDITS.rates)


def credit_totals(
    conn: Connection,
    tenant_id: str,
    org_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    by: Sequence[str],
    book: CreditRateBook | None = None,
) -> list[dict]:
    """Credits (nanos) and events summed by the `by` columns (from COLUMNS) over the UTC
    days in [start, end); start and end are UTC midnights (naive)."""
    by = list(by)
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    u = USAGE.daily
    columns = [u.c.bucket.label("day") if c == "day" else u.c[c] for c in by]
    rows = conn.execute(
        select(*columns, func.sum(u.c.credits_nanos), func.sum(u.c.events))
        .where(
            u.c.tenant_id == tenant_id,
            u.c.org_id == org_id,
            u.c.bucket >= start,
            u.c.bucket < end,
            u.c.resource_type != "",
            u.c.resource_type.not_in(GAUGE_TYPES),  # gauges: levels, accrued below
        )
        .group_by(*columns)
    ).all()
    for *key, credits, events in rows:
        _add(totals, key, credits, events)
    g = CREDITS.daily
    columns = [g.c[c] for c in by]
    rows = conn.execute(
        select(*columns, func.sum(g.c.credits_nanos), func.sum(g.c.readings))
        .where(g.c.tenant_id == tenant_id, g.c.org_id == org_id, g.c.day >= start, g.c.day < end)
        .group_by(*columns)
    ).all()
    for *key, credits, events in rows:
        _add(totals, key, credits, events)
    for tail in open_gauge_credits(conn, tenant_id, org_id, start, min(end, now), book or rate_book(conn)):
        _add(totals, [tail[c] for c in by], tail["credits_nanos"], 0)
    return [dict(zip(by, key), credits_nanos=v[0], events=v[1]) for key, v in totals.items()]


def _add(totals, key: Iterable, credits, events) -> None:
    entry = totals[tuple(key)]
    entry[0] += int(credits or 0)
    entry[1] += int(events or 0)


def month_start(moment: datetime) -> datetime:
    return day_of(moment).replace(day=1)


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1)


def credits_used(conn: Connection, tenant_id: str, org_id: str, start: datetime, end: datetime, now: datetime) -> int:
    rows = credit_totals(conn, tenant_id, org_id, start, end, now, by=["resource_type"])
    return sum(r["credits_nanos"] for r in rows)


# entity credit budgets: the read side of the per-entity monthly credit budgets ---------------
@dataclass(frozen=True)
class EntityCreditBudget:
    """A monthly budget in credits for one app or user (cost-controls budgets with unit
    `credits`, period monthly, scope app or user)."""

    entity_type: str  # app | user
    entity_id: str
    monthly_budget: Decimal


def entity_credit_budgets(conn: Connection, tenant_id: str, org_id: str) -> list[EntityCreditBudget]:
    """The org's enabled monthly credit budgets of scope app or user, from the
    cost-controls budgets read model."""
    t = BUDGETS.budgets
    rows = conn.execute(
        select(t.c.scope, t.c.scope_id, t.c.limit_nanos).where(
            t.c.tenant_id == tenant_id,
            t.c.org_id == org_id,
            t.c.enabled.is_(True),
            t.c.unit == "credits",
            t.c.period == "monthly",
            t.c.scope.in_(("app", "user")),
        ).order_by(t.c.scope, t.c.scope_id)
    )
    return [EntityCreditBudget(scope, scope_id, from_nanos(limit)) for scope, scope_id, limit in rows]


def entity_usage(
    conn: Connection, tenant_id: str, org_id: str, start: datetime, end: datetime, now: datetime
) -> dict[tuple[str, str], int]:
    """Credits (nanos) per ("app", app_id) and ("user", user_id) in the window: what an app or
    user budget counts (an event of app A by user U counts for both)."""
    used: dict[tuple[str, str], int] = defaultdict(int)
    for row in credit_totals(conn, tenant_id, org_id, start, end, now, by=["app_id", "user_id"]):
        if row["app_id"]:
            used[("app", row["app_id"])] += row["credits_nanos"]
        if row["user_id"]:
            used[("user", row["user_id"])] += row["credits_nanos"]
    return used


def window_days(start_day, end_day) -> tuple[datetime, datetime]:
    """Inclusive dates → [start midnight, day after end midnight)."""
    start = datetime(start_day.year, start_day.month, start_day.day)
    return start, datetime(end_day.year, end_day.month, end_day.day) + timedelta(days=1)
