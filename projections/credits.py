"""Credit read models: credit rates in force and gauge levels with their accrued
credits.

Event-mode credits (ai, agent_run, compute) are computed at ingest and summed by the usage
rollups (projections/usage.py, `credits_nanos`). Gauges (storage types, index count) are
point-in-time levels, not sums, so they live here:

- `gauge_readings`: every reported level, per series (tenant, org, resource type, app,
  user, agent), in time order;
- `gauge_daily`: per series and UTC day, the latest level of that day (`level_milli`,
  `level_at`), how many readings the day had, and the credits accrued in the day.

The gauge rule: a level is held from its reading until the next reading of the same
series and accrues level × rate × days held, split at UTC midnights, each day segment at
the rate in force at its start. The latest level of a series keeps accruing; the part
from its reading up to "now" is added at read time (projections/credits_queries.py).
A late (backdated) reading splits the interval it lands in; a voided one merges its
neighbours again, so the result does not depend on arrival order.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
)

from ledger.pricing.credits import CreditRate, CreditRateBook, gauge_credits, is_gauge
from ledger.pricing.events import CreditRateSet
from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
from projections.exact import ExactInt
from projections.framework import Projection, topics_of
from projections.sql import insert_ignore, upsert_replace
from projections.usage import MILLI, NANO, naive_utc

_UTC = timezone.utc
SERIES = ("tenant_id", "org_id", "resource_type", "app_id", "user_id", "agent_id")


def day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def split_days(start: datetime, end: datetime):
    """[start, end) cut at UTC midnights: (day, segment start, seconds)."""
    cursor = start
    while cursor < end:
        day = day_of(cursor)
        stop = min(end, day + timedelta(days=1))
        yield day, cursor, Decimal((stop - cursor).total_seconds())
        cursor = stop


def held_pieces(book: CreditRateBook, resource_type: str, level_milli: int, start: datetime, end: datetime):
    """The gauge rule's pieces of a level (milli-units) held over [start, end): one per UTC
    day, (day, nanos), each at the rate in force at its start and rounded to nanos on its
    own. The read model, each reading's credits, the breakdown and the open tail all sum
    these pieces, so every output ties out to the nano."""
    level = Decimal(level_milli) / MILLI
    for day, segment_start, seconds in split_days(start, end):
        rate = book.rate_for(resource_type, segment_start.replace(tzinfo=_UTC))
        yield day, to_nanos_exact(gauge_credits(level, rate, seconds))


class CreditsProjection(Projection):
    name = "credits"
    version = 3  # 2: gauge credits kept exactly past 64 bits; 3: rounded per reading and day
    topics = topics_of(UsageRecorded, UsageVoided, UsageAmended, CreditRateSet)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.rates = Table(
            f"{prefix}credit_rates",
            metadata,
            Column("resource_type", String(32), primary_key=True),
            Column("position", BigInteger, primary_key=True),
            Column("effective_from", DateTime, nullable=False),
            Column("credits_per_unit", String(40), nullable=False),  # exact Decimal text
            Column("recorded_at", DateTime, nullable=False),
            Column("actor", String(128), nullable=False),
        )
        series = [Column(c, String(128), primary_key=True) for c in SERIES]
        self.readings = Table(
            f"{prefix}gauge_readings",
            metadata,
            *series,
            Column("occurred_at", DateTime, primary_key=True),
            Column("event_id", String(128), primary_key=True),
            Column("level_milli", BigInteger, nullable=False),
        )
        self.daily = Table(
            f"{prefix}gauge_daily",
            metadata,
            *[Column(c, String(128), primary_key=True) for c in SERIES],
            Column("day", DateTime, primary_key=True),
            Column("level_milli", BigInteger, nullable=False, default=0),
            Column("level_at", DateTime),
            Column("readings", BigInteger, nullable=False, default=0),
            Column("credits_nanos", ExactInt(wide=True), nullable=False, default=0),
        )

    # rates --------------------------------------------------------------------------
    def rate_book(self, conn: Connection) -> CreditRateBook:
        return load_rate_book(conn, self.rates)

    # the projector ------------------------------------------------------------------
    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        book = self.rate_book(conn)
        credits: dict[tuple, int] = defaultdict(int)
        touched: set[tuple] = set()
        for recorded in batch:
            event = recorded.event
            if isinstance(event, CreditRateSet):
                insert_ignore(
                    conn,
                    self.rates,
                    [
                        {
                            "resource_type": event.resource_type,
                            "position": recorded.position,
                            "effective_from": naive_utc(event.effective_from),
                            "credits_per_unit": str(event.credits_per_unit),
                            "recorded_at": naive_utc(event.recorded_at),
                            "actor": event.actor,
                        }
                    ],
                    ["resource_type", "position"],
                )
                book = self.rate_book(conn)
            elif isinstance(event, UsageRecorded):
                self._insert(conn, book, credits, touched, event.tenant_id, event.org_id, event.usage)
            elif isinstance(event, UsageVoided):
                self._remove(conn, book, credits, touched, event.tenant_id, event.org_id, event.voided)
            elif isinstance(event, UsageAmended):
                self._remove(conn, book, credits, touched, event.tenant_id, event.org_id, event.previous)
                self._insert(conn, book, credits, touched, event.tenant_id, event.org_id, event.current)
        self._write_days(conn, credits, touched)

    def _insert(self, conn, book, credits, touched, tenant_id: str, org_id: str, usage: Usage) -> None:
        if not is_gauge(usage.resource_type):
            return
        series, moment, level = _reading(tenant_id, org_id, usage)
        prev, nxt = self._neighbours(conn, series, moment, usage.event_id)
        self._split(book, credits, series, prev, (moment, level), nxt, +1)
        conn.execute(
            self.readings.insert().values(
                **dict(zip(SERIES, series)), occurred_at=moment, event_id=usage.event_id, level_milli=level
            )
        )
        touched.add(series + (day_of(moment),))

    def _remove(self, conn, book, credits, touched, tenant_id: str, org_id: str, usage: Usage) -> None:
        if not is_gauge(usage.resource_type):
            return
        series, moment, level = _reading(tenant_id, org_id, usage)
        t = self.readings
        removed = conn.execute(
            delete(t).where(*_series_match(t, series), t.c.occurred_at == moment, t.c.event_id == usage.event_id)
        ).rowcount
        if not removed:
            return
        prev, nxt = self._neighbours(conn, series, moment, usage.event_id)
        self._split(book, credits, series, prev, (moment, level), nxt, -1)
        touched.add(series + (day_of(moment),))

    def _neighbours(self, conn, series: tuple, moment: datetime, event_id: str):
        t = self.readings
        before = or_(t.c.occurred_at < moment, and_(t.c.occurred_at == moment, t.c.event_id < event_id))
        after = or_(t.c.occurred_at > moment, and_(t.c.occurred_at == moment, t.c.event_id > event_id))
        prev = conn.execute(
            select(t.c.occurred_at, t.c.level_milli)
            .where(*_series_match(t, series), before)
            .order_by(t.c.occurred_at.desc(), t.c.event_id.desc())
            .limit(1)
        ).first()
        nxt = conn.execute(
            select(t.c.occurred_at, t.c.level_milli)
            .where(*_series_match(t, series), after)
            .order_by(t.c.occurred_at, t.c.event_id)
            .limit(1)
        ).first()
        return (tuple(prev) if prev else None), (tuple(nxt) if nxt else None)

    @classmethod
    def _split(cls, book: CreditRateBook, credits, series: tuple, prev, reading: tuple, nxt, sign: int) -> None:
        """A reading (moment, level) inserted (sign +1) or removed (-1) between its series'
        neighbours (occurred_at, level), each None at an end: the closed intervals it changes.
        Each reading's interval is booked as that reading's own pieces per UTC day, each
        rounded to nanos, exactly as `reading_credits` gives a reading's credits, so the days
        sum to the readings' figures in any arrival order (the latest level's open interval
        is added at read time)."""
        moment, level = reading
        if nxt is not None:
            cls._accrue(book, credits, series, sign * level, moment, nxt[0])
        if prev is not None:
            cls._accrue(book, credits, series, sign * prev[1], prev[0], moment)
            if nxt is not None:  # the interval the reading splits (or that its removal merges again)
                cls._accrue(book, credits, series, -sign * prev[1], prev[0], nxt[0])

    @staticmethod
    def _accrue(book: CreditRateBook, credits, series: tuple, level_milli: int, start: datetime, end: datetime) -> None:
        """Book a level held over [start, end): one rounded piece per UTC day (negative: unbook)."""
        if not level_milli:
            return
        sign = 1 if level_milli > 0 else -1
        for day, nanos in held_pieces(book, series[2], abs(level_milli), start, end):
            credits[series + (day,)] += sign * nanos

    def _write_days(self, conn: Connection, credits: dict[tuple, int], touched: set[tuple]) -> None:
        keys = set(credits) | touched
        if not keys:
            return
        t, r = self.daily, self.readings
        rows = []
        for key in sorted(keys):
            series, day = key[:-1], key[-1]
            current = conn.execute(select(t).where(*_series_match(t, series), t.c.day == day)).mappings().first()
            row = dict(current) if current else {
                **dict(zip(SERIES, series)), "day": day, "level_milli": 0, "level_at": None, "readings": 0, "credits_nanos": 0
            }
            row["credits_nanos"] += credits.get(key, 0)
            if key in touched:
                in_day = and_(*_series_match(r, series), r.c.occurred_at >= day, r.c.occurred_at < day + timedelta(days=1))
                latest = conn.execute(
                    select(r.c.occurred_at, r.c.level_milli)
                    .where(in_day)
                    .order_by(r.c.occurred_at.desc(), r.c.event_id.desc())
                    .limit(1)
                ).first()
                row["readings"] = conn.execute(select(func.count()).select_from(r).where(in_day)).scalar_one()
                row["level_at"], row["level_milli"] = (latest[0], latest[1]) if latest else (None, 0)
            rows.append(row)
        upsert_replace(conn, t, rows, [*SERIES, "day"])


def _series_match(table: Table, series: tuple) -> list:
    return [table.c[name] == value for name, value in zip(SERIES, series)]


def _reading(tenant_id: str, org_id: str, usage: Usage) -> tuple[tuple, datetime, int]:
    series = (
        tenant_id,
        org_id,
        usage.resource_type or "",
        usage.app_id or "",
        usage.user_id or "",
        usage.agent_id or "",
    )
    return series, naive_utc(usage.occurred_at), int((usage.quantity or 0) * MILLI)


def to_nanos_exact(value: Decimal) -> int:
    return int((value * NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def load_rate_book(conn: Connection, rates: Table) -> CreditRateBook:
    rows = conn.execute(select(rates).order_by(rates.c.position)).mappings()
    return CreditRateBook(
        CreditRate(r["resource_type"], Decimal(r["credits_per_unit"]), r["effective_from"].replace(tzinfo=_UTC), "override")
        for r in rows
    )

