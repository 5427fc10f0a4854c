"""Queries on the usage read models. Totals come from the rollups, never from raw events."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from sqlalchemy import Connection, and_, bindparam, func, literal_column, or_, select

from projections.exact import from_stored
from projections.sql import DriverQuery
from projections.usage import MEASURES, TOKEN_DETAILS, UsageTables, from_nanos

USAGE = UsageTables()
_EVENTS = MEASURES.index("events")


@dataclass(frozen=True)
class Scope:
    """Whose usage: one tenant, one org (or every org of the tenant when org_id is None)."""

    tenant_id: str
    org_id: str | None
    client_id: str | None = None


def in_scope(table, scope: Scope, start: datetime, end: datetime, time_column: str):
    """Rows of the scope whose `time_column` falls in [start, end)."""
    conditions = [table.c.tenant_id == scope.tenant_id, table.c[time_column] >= start, table.c[time_column] < end]
    if scope.org_id is not None:
        conditions.append(table.c.org_id == scope.org_id)
    if scope.client_id:
        conditions.append(table.c.client_id == scope.client_id)
    return and_(*conditions)


def _rollup(granularity: str):
    return USAGE.hourly if granularity == "hourly" else USAGE.daily


_SUMMARIES: dict[tuple, DriverQuery] = {}


def _summary_query(table, by_org: bool, by_client: bool) -> DriverQuery:
    """The summary's query of one rollup table for one shape of scope, built once (its 36
    SQL functions cost more to build than the lookup costs to run)."""
    key = (table.name, by_org, by_client)
    found = _SUMMARIES.get(key)
    if found is None:
        c = table.c
        conditions = [c.tenant_id == bindparam("tenant_id"), c.bucket >= bindparam("start"), c.bucket < bindparam("end")]
        if by_org:
            conditions.append(c.org_id == bindparam("org_id"))
        if by_client:
            conditions.append(c.client_id == bindparam("client_id"))
        sums = [func.coalesce(func.sum(c[m]), literal_column("0")).label(m) for m in MEASURES]
        found = _SUMMARIES[key] = DriverQuery(select(c.event_type, *sums).where(and_(*conditions)).group_by(c.event_type))
    return found


def summary(conn: Connection, scope: Scope, start: datetime, end: datetime) -> dict:
    day_aligned = not (start.hour or end.hour or start.minute or end.minute)
    if day_aligned and not scope.client_id:
        table = USAGE.daily_org  # a row per org, event type and day
    else:
        table = _rollup("daily" if day_aligned else "hourly")
    query = _summary_query(table, scope.org_id is not None, bool(scope.client_id))
    rows = query.rows(conn, tenant_id=scope.tenant_id, org_id=scope.org_id, client_id=scope.client_id, start=start, end=end)
    totals = dict.fromkeys(MEASURES, 0)
    event_types: dict[str, int] = {}
    for event_type, *sums in rows:
        event_types[event_type] = from_stored(sums[_EVENTS])
        for m, value in zip(MEASURES, sums):
            totals[m] += from_stored(value)
    events = totals["events"]
    return {
        "total_api_calls": event_types.get("api_call", 0),
        "total_llm_requests": event_types.get("llm_request", 0),
        "total_events": events,
        "total_tokens": totals["total_tokens"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "estimated_cost_usd": from_nanos(totals["cost_nanos"]),
        "unpriced_events": totals["unpriced_events"],
        "average_latency_ms": _ratio(totals["latency_sum"], totals["latency_count"]),
        "success_rate": _ratio(totals["successes"] * 100, events),
        "policy_violations": totals["policy_violations"],
        "event_types": dict(sorted(event_types.items())),
        **{name: totals[name] for name in TOKEN_DETAILS},
    }


def aggregates(conn: Connection, scope: Scope, start: datetime, end: datetime, granularity: str) -> list[dict]:
    table = _rollup(granularity)
    sums = [func.sum(table.c[m]).label(m) for m in MEASURES]
    rows = conn.execute(
        select(table.c.event_type, table.c.bucket, *sums)
        .where(in_scope(table, scope, start, end, "bucket"))
        .group_by(table.c.event_type, table.c.bucket)
        .order_by(table.c.bucket, table.c.event_type)
    ).mappings()
    return [
        {
            "event_type": r["event_type"],
            "time_bucket": r["bucket"],
            "event_count": int(r["events"]),
            "prompt_tokens": int(r["prompt_tokens"]),
            "completion_tokens": int(r["completion_tokens"]),
            "total_tokens": int(r["total_tokens"]),
            "estimated_cost_usd": from_nanos(r["cost_nanos"]),
            "unpriced_events": int(r["unpriced_events"]),
            "average_latency_ms": _ratio(int(r["latency_sum"]), int(r["latency_count"])),
            "policies_evaluated": int(r["policies_evaluated"]),
            "policy_violations": int(r["policy_violations"]),
            "success_count": int(r["successes"]),
            "error_count": int(r["errors"]),
            **{name: int(r[name]) for name in TOKEN_DETAILS},
        }
        for r in rows
    ]


def raw_page(
    conn: Connection, scope: Scope, start: datetime, end: datetime, limit: int, after: tuple[datetime, int] | None
) -> list[dict]:
    """Newest first, keyset-paginated by (occurred_at, position)."""
    t = USAGE.events
    query = select(t).where(in_scope(t, scope, start, end, "occurred_at"))
    if after is not None:
        moment, position = after
        query = query.where(or_(t.c.occurred_at < moment, and_(t.c.occurred_at == moment, t.c.position < position)))
    rows = conn.execute(query.order_by(t.c.occurred_at.desc(), t.c.position.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def stream_events(conn: Connection, scope: Scope, start: datetime, end: datetime, limit: int) -> Iterator[dict]:
    """Newest first, streamed from the database in chunks (bounded memory)."""
    t = USAGE.events
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(
        select(t)
        .where(in_scope(t, scope, start, end, "occurred_at"))
        .order_by(t.c.occurred_at.desc(), t.c.position.desc())
        .limit(limit)
    )
    for row in result.mappings():
        yield dict(row)


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 2) if denominator else 0.0
