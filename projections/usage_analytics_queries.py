"""Breakdowns (exact for any window: daily and hourly rollups for whole buckets, raw
usage_events for the edges) and filtered record pages (from usage_events)
for the cost controls surface."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, select

from projections.credits_gauges import window_gauge_credits
from projections.usage import TOKEN_DETAILS
from projections.usage_queries import USAGE, Scope, in_scope

GROUPS = {
    "provider": ("provider",),
    "model": ("provider", "model"),
    "agent": ("agent_id",),
    "team": ("team_id",),
    "user": ("user_id",),
    "workflow": ("workflow_id",),
    "app": ("app_id",),
    "day": ("bucket",),
}
BREAKDOWN_MEASURES = (
    "events", "prompt_tokens", "completion_tokens", "total_tokens", "cost_nanos", "credits_nanos", "unpriced_events",
    "reported_cost_nanos", *TOKEN_DETAILS,
)
RECORD_FILTERS = {
    "event_type": "event_type",
    "provider": "llm_provider",
    "model": "llm_model",
    "operation": "operation",
    "client_id": "client_id",
    "agent_id": "agent_id",
    "team_id": "team_id",
    "user_id": "user_id",
    "workflow_id": "workflow_id",
    "app_id": "app_id",
    "success": "success",
}


RAW_GROUP_COLUMNS = {"provider": "llm_provider", "model": "llm_model"}  # rollup key → usage_events column


def _floor(moment: datetime, unit: timedelta) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + (moment - day) // unit * unit if unit < timedelta(days=1) else day


def _ceil(moment: datetime, unit: timedelta) -> datetime:
    floor = _floor(moment, unit)
    return floor if floor == moment else floor + unit


def window_parts(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """[start, end) cut into (source, from, to): whole days from the daily rollup, whole
    hours from the hourly rollup, and the edges within an hour from the raw events."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    if _ceil(start, hour) >= _floor(end, hour):  # no whole hour inside
        return [("raw", start, end)] if start < end else []
    first_hour, last_hour = _ceil(start, hour), _floor(end, hour)
    first_day, last_day = _ceil(first_hour, day), _floor(last_hour, day)
    parts = [("raw", start, first_hour)]
    if first_day < last_day:
        parts += [("hourly", first_hour, first_day), ("daily", first_day, last_day), ("hourly", last_day, last_hour)]
    else:
        parts.append(("hourly", first_hour, last_hour))
    parts.append(("raw", last_hour, end))
    return [(source, a, b) for source, a, b in parts if a < b]


def breakdown(conn: Connection, scope: Scope, start: datetime, end: datetime, group_by: str, now: datetime) -> list[dict]:
    """Exact totals per group over [start, end), for any window: whole days from the daily
    rollup, whole hours from the hourly rollup, the edges from the raw events; plus the
    credits gauges (levels held over time) accrued inside the window, in the group of their
    series (gauges carry an app, user and agent; in other groupings they count under none)."""
    totals: dict[tuple, dict] = {}

    def entry_of(key: tuple) -> dict:
        return totals.setdefault(key, {**dict(zip(GROUPS[group_by], key)), **{m: 0 for m in BREAKDOWN_MEASURES}})

    for source, a, b in window_parts(start, end):
        for row in _part(conn, scope, source, a, b, group_by):
            entry = entry_of(tuple(row[k] for k in GROUPS[group_by]))
            for m in BREAKDOWN_MEASURES:
                entry[m] += int(row[m] or 0)
    if scope.client_id is None:  # gauge series are kept per org, not per client
        for accrued in window_gauge_credits(conn, scope.tenant_id, scope.org_id, start, end, now):
            key = tuple(accrued["day"] if k == "bucket" else accrued.get(k, "") for k in GROUPS[group_by])
            entry_of(key)["credits_nanos"] += accrued["credits_nanos"]
    rows = list(totals.values())
    if group_by == "day":
        rows.sort(key=lambda r: r["bucket"])
    else:
        rows.sort(key=lambda r: (-r["cost_nanos"], -r["events"], tuple(r[k] for k in GROUPS[group_by])))
    return rows


def _part(conn: Connection, scope: Scope, source: str, start: datetime, end: datetime, group_by: str) -> list[dict]:
    if source != "raw":
        table = USAGE.daily if source == "daily" else USAGE.hourly
        keys = grouping = [table.c[k] for k in GROUPS[group_by]]  # hours are floored to their day below
        sums = [func.sum(table.c[m]).label(m) for m in BREAKDOWN_MEASURES]
        query = select(*keys, *sums).where(in_scope(table, scope, start, end, "bucket")).group_by(*grouping)
        rows = [dict(r) for r in conn.execute(query).mappings() if r["events"]]
        if group_by == "day":
            for row in rows:
                row["bucket"] = _floor(row["bucket"], timedelta(days=1))
        return rows
    t = USAGE.events  # an edge: less than an hour, so within one day
    if group_by == "day":
        keys, grouping = [], []
    else:
        grouping = [t.c[RAW_GROUP_COLUMNS.get(k, k)] for k in GROUPS[group_by]]
        keys = [func.coalesce(c, "").label(k) for c, k in zip(grouping, GROUPS[group_by])]
    sums = [
        func.count().label("events"),
        *[func.sum(t.c[m]).label(m) for m in BREAKDOWN_MEASURES if m not in ("events", "unpriced_events")],
        func.sum(case((t.c.unpriced, 1), else_=0)).label("unpriced_events"),
    ]
    query = select(*keys, *sums).where(in_scope(t, scope, start, end, "occurred_at"))
    if grouping:
        query = query.group_by(*grouping)
    rows = [dict(r) for r in conn.execute(query).mappings() if r["events"]]
    if group_by == "day":
        for row in rows:
            row["bucket"] = _floor(start, timedelta(days=1))
    return rows


def records(
    conn: Connection, scope: Scope, start: datetime, end: datetime, filters: dict, limit: int, offset: int
) -> list[dict]:
    """Newest first; `limit` rows from `offset`."""
    t = USAGE.events
    query = select(t).where(in_scope(t, scope, start, end, "occurred_at"))
    for name, value in filters.items():
        query = query.where(t.c[RECORD_FILTERS[name]] == value)
    query = query.order_by(t.c.occurred_at.desc(), t.c.position.desc()).limit(limit).offset(offset)
    return [dict(r) for r in conn.execute(query).mappings()]
