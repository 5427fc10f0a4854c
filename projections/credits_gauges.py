"""Gauge credits (levels held over time): what each series' latest level has accrued since
its reading, and a scope's gauge credits over a window (closed days from gauge_daily plus
that open tail). Budgets in credits count these beside the event credits they keep."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable, Iterator

from sqlalchemy import Connection, and_, func, or_, select

from ledger.pricing.credits import CreditRateBook, is_gauge
from projections.credits import SERIES, CreditsProjection, held_pieces, load_rate_book

CREDITS = CreditsProjection()
# the gauge series column a budget scope is matched on (gauge series carry no team)
SCOPE_COLUMNS = {"app": "app_id", "user": "user_id", "agent": "agent_id"}


def open_gauge_credits(
    conn: Connection, tenant_id: str, org_id: str, start: datetime, end: datetime, book: CreditRateBook
) -> list[dict]:
    """Per series and day, what its latest level has accrued since its reading, within [start, end)."""
    g = CREDITS.daily
    latest = (
        select(g.c.resource_type, g.c.app_id, g.c.user_id, g.c.agent_id, func.max(g.c.day).label("day"))
        .where(g.c.tenant_id == tenant_id, g.c.org_id == org_id, g.c.readings > 0)
        .group_by(g.c.resource_type, g.c.app_id, g.c.user_id, g.c.agent_id)
        .subquery()
    )
    rows = conn.execute(
        select(g.c.resource_type, g.c.app_id, g.c.user_id, g.c.agent_id, g.c.level_milli, g.c.level_at).join_from(
            g,
            latest,
            and_(
                g.c.tenant_id == tenant_id,
                g.c.org_id == org_id,
                g.c.resource_type == latest.c.resource_type,
                g.c.app_id == latest.c.app_id,
                g.c.user_id == latest.c.user_id,
                g.c.agent_id == latest.c.agent_id,
                g.c.day == latest.c.day,
            ),
        )
    ).mappings()
    out = []
    for row in rows:
        if not row["level_milli"] or row["level_at"] is None:
            continue
        for day, nanos in held_pieces(book, row["resource_type"], row["level_milli"], max(start, row["level_at"]), end):
            out.append(
                {
                    "day": day,
                    "resource_type": row["resource_type"],
                    "app_id": row["app_id"],
                    "user_id": row["user_id"],
                    "agent_id": row["agent_id"],
                    "credits_nanos": nanos,
                }
            )
    return out




def scope_gauge_credits(
    conn: Connection,
    tenant_id: str,
    org_id: str,
    scope: str,
    scope_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> int:
    """Gauge credits (nanos) of one budget scope in [start, min(end, now)) (naive UTC):
    the same figure the credit reports give for it."""
    column = SCOPE_COLUMNS.get(scope)
    if scope != "organization" and column is None:
        return 0
    g = CREDITS.daily
    where = [g.c.tenant_id == tenant_id, g.c.org_id == org_id, g.c.day >= start, g.c.day < end]
    if column is not None:
        where.append(g.c[column] == scope_id)
    total = int(conn.execute(select(func.coalesce(func.sum(g.c.credits_nanos), 0)).where(*where)).scalar() or 0)
    book = load_rate_book(conn, CREDITS.rates)
    for tail in open_gauge_credits(conn, tenant_id, org_id, start, min(end, now), book):
        if column is None or tail[column] == scope_id:
            total += tail["credits_nanos"]
    return total


def window_gauge_credits(
    conn: Connection, tenant_id: str, org_id: str | None, start: datetime, end: datetime, now: datetime
) -> list[dict]:
    """Per series and UTC day, the gauge credits accrued within [start, end) (naive UTC):
    each reading's level from its time until the series' next reading, or until now for the
    latest one (the gauge rule of projections/credits.py, which the credit reports and each
    reading's own credits follow: a level ends at the next reading even when that reading is
    dated a few minutes ahead of now), clipped to the window and summed per (reading, day)
    like `reading_credits`, so a window of whole days gives the credit reports' figure and
    any other window the part accrued inside it."""
    if start >= end:
        return []
    r = CREDITS.readings
    where = [r.c.tenant_id == tenant_id, *([r.c.org_id == org_id] if org_id is not None else [])]
    series = [r.c[name] for name in SERIES]
    in_force = (  # each series' last reading before the window: its level holds at `start`
        select(*series, func.max(r.c.occurred_at).label("at")).where(*where, r.c.occurred_at < start).group_by(*series).subquery()
    )
    before = select(r).join_from(r, in_force, and_(*[r.c[n] == in_force.c[n] for n in SERIES], r.c.occurred_at == in_force.c.at))
    inside = select(r).where(*where, r.c.occurred_at >= start, r.c.occurred_at < end)
    readings: dict[tuple, list[dict]] = defaultdict(list)
    for query in (before, inside):
        for row in conn.execute(query).mappings():
            readings[tuple(row[n] for n in SERIES)].append(dict(row))
    if not readings:
        return []
    # a window reaching past now: the series with a reading after the window (dated ahead of
    # now) hold their last level in the window up to its end, the others only up to now
    ended = set()
    if now < end:
        later = select(*series).where(*where, r.c.occurred_at >= end).distinct()
        ended = {tuple(row) for row in conn.execute(later)}
    book = load_rate_book(conn, CREDITS.rates)
    accrued: dict[tuple, int] = defaultdict(int)
    for key, rows in readings.items():
        rows.sort(key=lambda x: (x["occurred_at"], x["event_id"]))
        for i, row in enumerate(rows):
            until = rows[i + 1]["occurred_at"] if i + 1 < len(rows) else (end if key in ended else now)
            held = (max(row["occurred_at"], start), min(until, end))
            for day, nanos in held_pieces(book, row["resource_type"], row["level_milli"], *held):
                accrued[(*key, day)] += nanos
    return [{**dict(zip(SERIES, key[:-1])), "day": key[-1], "credits_nanos": n} for key, n in accrued.items() if n]


def reading_credits(conn: Connection, row: dict, now: datetime, book: CreditRateBook) -> int:
    """What one gauge reading (a usage_events row) accrues: its level × rate × time held,
    from its time until the series' next reading, or until now for the latest one, summed
    per UTC day like the credit reports. The readings of a series sum to the series' credits."""
    r = CREDITS.readings
    series = (
        row["tenant_id"], row["org_id"], row["resource_type"] or "",
        row["app_id"] or "", row["user_id"] or "", row["agent_id"] or "",
    )
    moment, event_id = row["occurred_at"], row["event_id"]
    after = or_(r.c.occurred_at > moment, and_(r.c.occurred_at == moment, r.c.event_id > event_id))
    nxt = conn.execute(
        select(r.c.occurred_at)
        .where(*[r.c[name] == value for name, value in zip(SERIES, series)], after)
        .order_by(r.c.occurred_at, r.c.event_id)
        .limit(1)
    ).scalar()
    end = nxt if nxt is not None else now
    return sum(nanos for _day, nanos in held_pieces(book, row["resource_type"], row["quantity_milli"] or 0, moment, end))


def with_gauge_credits(conn: Connection, rows: Iterable[dict], now: datetime) -> Iterator[dict]:
    """usage_events rows with each gauge reading's credits filled in (reading_credits):
    gauge rows carry their credits in every output, never an empty value."""
    book = None
    now = now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now
    for row in rows:
        if row.get("credits_nanos") is None and is_gauge(row.get("resource_type")):
            book = book or load_rate_book(conn, CREDITS.rates)
            row = dict(row, credits_nanos=reading_credits(conn, row, now, book))
        yield row
