"""Breakdowns (from the hourly/daily rollups) and filtered record pages (from usage_events)
for the cost controls surface (SPEC.md §5.2)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select

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


def _day_aligned(moment: datetime) -> bool:
    return not (moment.hour or moment.minute or moment.second or moment.microsecond)


def breakdown(conn: Connection, scope: Scope, start: datetime, end: datetime, group_by: str) -> list[dict]:
    """Totals per group over [start, end); days come from the daily rollup, and the hourly
    rollup is used when the window does not fall on day boundaries."""
    table = USAGE.daily if group_by == "day" or (_day_aligned(start) and _day_aligned(end)) else USAGE.hourly
    keys = [table.c[k] for k in GROUPS[group_by]]
    sums = [func.sum(table.c[m]).label(m) for m in BREAKDOWN_MEASURES]
    query = select(*keys, *sums).where(in_scope(table, scope, start, end, "bucket")).group_by(*keys)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        for m in BREAKDOWN_MEASURES:
            row[m] = int(row[m] or 0)
    if group_by == "day":
        rows.sort(key=lambda r: r["bucket"])
    else:
        rows.sort(key=lambda r: (-r["cost_nanos"], -r["events"], tuple(r[k] for k in GROUPS[group_by])))
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
