"""Usage read models: raw usage_events and the hourly and daily rollups.

Fed by UsageRecorded, UsageVoided and UsageAmended. Money and credits are kept as integer
nano-units (exact on SQLite and PostgreSQL); quantities as milli-units. Absent dimensions
are '' in the rollup keys so that every key column can be part of the primary key.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from operator import add, attrgetter, neg
from typing import Any, Callable, NamedTuple, Sequence

import msgspec
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    delete,
)

from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
from projections.exact import ExactInt
from projections.framework import Projection
from projections.sql import insert_rows, upsert_add, upsert_replace

NANO = Decimal(10) ** 9
MILLI = Decimal(10) ** 3

DIMENSIONS = (
    "tenant_id",
    "org_id",
    "client_id",
    "event_type",
    "resource_type",
    "provider",
    "model",
    "operation",
    "user_id",
    "team_id",
    "agent_id",
    "workflow_id",
    "app_id",
)
TOKEN_DETAILS = ("cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens")  # parts of the token counts
MEASURES = (
    "events",
    "successes",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_nanos",
    "credits_nanos",
    "unpriced_events",
    "latency_sum",
    "latency_count",
    "policies_evaluated",
    "policy_violations",
    "quantity_milli",
    "reported_cost_nanos",
    *TOKEN_DETAILS,
)
COUNTS = ("events", "successes", "errors", "unpriced_events", "latency_count")
"""Measures that count events (one per event at most): 64 bits hold any sum of them. Every
other measure is a sum of values up to 10^18 and is kept exactly past 64 bits (ExactInt)."""


def measure_type(measure: str):
    return BigInteger if measure in COUNTS else ExactInt(wide=True)


def to_nanos(value: Decimal | None) -> int:
    return int(value * NANO) if value else 0  # None and zero skip the Decimal product


def from_nanos(value: int | None) -> Decimal:
    return Decimal(value or 0) / NANO


def naive_utc(moment: datetime) -> datetime:
    # the constructor, not replace(tzinfo=None): replace parses keywords, at more than
    # twice the cost, and projectors call this for every event
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    return datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond)


def _rollup_table(name: str, metadata: MetaData) -> Table:
    """One row per combination of dimensions per bucket. The primary key is a 128-bit
    digest of the dimensions plus the bucket: one narrow index instead of fourteen wide
    string columns (the dimensions are stored beside it for grouping and filtering)."""
    return Table(
        name,
        metadata,
        Column("dims_key", Uuid, primary_key=True),
        Column("bucket", DateTime, primary_key=True),
        *[Column(d, String(128), nullable=False) for d in DIMENSIONS],
        *[Column(m, measure_type(m), nullable=False, default=0) for m in MEASURES],
        Index(f"ix_{name}_org_bucket", "tenant_id", "org_id", "bucket"),
    )


@lru_cache(maxsize=65536)
def dims_key(dims: tuple) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.blake2b("\x1f".join(dims).encode(), digest_size=16).digest())


USAGE_EVENTS = (UsageRecorded, UsageVoided, UsageAmended)
USAGE_TOPICS = tuple(e.__name__ for e in USAGE_EVENTS)  # the stored topic is the class name


@dataclass(frozen=True)
class UsageColumn:
    """How a Usage field is kept in usage_events."""

    type: Any
    nullable: bool = True
    name: str = ""  # the column, when it is not named like the field
    store: Callable[[Any], Any] | None = None  # the value → its stored form (None stays None)


def _milli(value: Decimal) -> int:
    return int(value * MILLI)


def _json_text(value: dict) -> str:
    return msgspec.json.encode(value).decode()


# Every Usage field, keyed by name; usage_events holds them in Usage's order after the
# envelope columns (tenant_id, org_id, position, recorded_at). A field not listed is not kept.
USAGE_COLUMNS: dict[str, UsageColumn] = {
    "event_id": UsageColumn(String(128), nullable=False),
    "occurred_at": UsageColumn(DateTime, nullable=False, store=naive_utc),
    "event_type": UsageColumn(String(64), nullable=False),
    "client_id": UsageColumn(String(64), nullable=False),
    "operation": UsageColumn(String(32)),
    "resource_type": UsageColumn(String(32)),
    "quantity": UsageColumn(ExactInt(), name="quantity_milli", store=_milli),
    "instance_id": UsageColumn(String(128)),
    "instance_type": UsageColumn(String(256)),
    "user_id": UsageColumn(String(128)),
    "team_id": UsageColumn(String(128)),
    "agent_id": UsageColumn(String(128)),
    "workflow_id": UsageColumn(String(128)),
    "app_id": UsageColumn(String(128)),
    "knowledge_base_id": UsageColumn(String(128)),
    "http_method": UsageColumn(String(16)),
    "http_path": UsageColumn(Text),
    "http_status_code": UsageColumn(Integer),
    "llm_provider": UsageColumn(String(256)),
    "llm_model": UsageColumn(String(256)),
    "prompt_tokens": UsageColumn(ExactInt(), nullable=False),
    "completion_tokens": UsageColumn(ExactInt(), nullable=False),
    "total_tokens": UsageColumn(ExactInt(), nullable=False),
    "latency_ms": UsageColumn(ExactInt()),
    "cost_usd": UsageColumn(ExactInt(), nullable=False, name="cost_nanos", store=to_nanos),
    "unpriced": UsageColumn(Boolean, nullable=False),
    "credits": UsageColumn(ExactInt(), name="credits_nanos", store=to_nanos),
    "policies_evaluated": UsageColumn(ExactInt(), nullable=False),
    "policy_violations": UsageColumn(ExactInt(), nullable=False),
    "success": UsageColumn(Boolean, nullable=False),
    "metadata": UsageColumn(Text, name="metadata_json", store=_json_text),
    "reported_cost_usd": UsageColumn(ExactInt(), name="reported_cost_nanos", store=to_nanos),
    **{name: UsageColumn(ExactInt(), nullable=False) for name in TOKEN_DETAILS},
}
STORED_FIELDS = tuple(f.name for f in msgspec.structs.fields(Usage) if f.name in USAGE_COLUMNS)
"""The Usage fields usage_events keeps, in Usage's order."""
FIELD_COLUMNS = {f: USAGE_COLUMNS[f].name or f for f in STORED_FIELDS}
"""Usage field → its usage_events column."""
ENVELOPE_COLUMNS = ("tenant_id", "org_id", "position", "recorded_at")
EVENT_COLUMNS = (*ENVELOPE_COLUMNS, *FIELD_COLUMNS.values())
_stored_values = attrgetter(*STORED_FIELDS)
_conversions = tuple((i, USAGE_COLUMNS[f].store) for i, f in enumerate(STORED_FIELDS) if USAGE_COLUMNS[f].store)


def event_row(event, position: int, u: Usage) -> tuple:
    """One usage_events row, in the order of EVENT_COLUMNS."""
    values = list(_stored_values(u))
    for i, store in _conversions:
        if values[i] is not None:
            values[i] = store(values[i])
    return (event.tenant_id, event.org_id, position, naive_utc(event.recorded_at), *values)


def usage_events_table(metadata: MetaData, prefix: str = "") -> Table:
    return Table(
        f"{prefix}usage_events",
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("org_id", String(64), nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("recorded_at", DateTime, nullable=False),
        *[
            Column(FIELD_COLUMNS[f], USAGE_COLUMNS[f].type, nullable=USAGE_COLUMNS[f].nullable, primary_key=f == "event_id")
            for f in STORED_FIELDS
        ],
        Index(f"ix_{prefix}usage_events_org_time", "tenant_id", "org_id", "occurred_at", "position"),
        Index(f"ix_{prefix}usage_events_client_time", "tenant_id", "org_id", "client_id", "occurred_at"),
    )


class UsageEventsProjection(Projection):
    """usage_events: one row per usage event that is not voided, as amended."""

    name = "usage_events"
    version = 2
    topics = USAGE_TOPICS

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.events = usage_events_table(metadata, prefix)

    def changes(self, batch: Sequence[Recorded]) -> "EventChanges":
        rows: dict[tuple[str, str], tuple | None] = {}  # None: voided
        new: set[tuple[str, str]] = set()  # recorded in this batch: plain inserts
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                key = (event.tenant_id, event.usage.event_id)
                new.add(key)
                rows[key] = event_row(event, recorded.position, event.usage)
            elif isinstance(event, UsageAmended):
                rows[(event.tenant_id, event.event_id)] = event_row(event, recorded.position, event.current)
            elif isinstance(event, UsageVoided):
                rows[(event.tenant_id, event.event_id)] = None
        return EventChanges(
            voided=[key for key, row in rows.items() if row is None],
            inserted=[row for key, row in rows.items() if row is not None and key in new],
            replaced=[row for key, row in rows.items() if row is not None and key not in new],
        )

    def write(self, conn: Connection, changes: "EventChanges") -> None:
        for tenant_id, event_id in changes.voided:
            conn.execute(delete(self.events).where(self.events.c.tenant_id == tenant_id, self.events.c.event_id == event_id))
        insert_rows(conn, self.events, changes.inserted, EVENT_COLUMNS)
        upsert_replace(conn, self.events, changes.replaced, ["tenant_id", "event_id"], EVENT_COLUMNS)


class EventChanges(NamedTuple):
    """A batch's changes to usage_events: keys (tenant_id, event_id) to delete, rows of events
    recorded in the batch (new), rows of events amended (replacing the stored row)."""

    voided: list[tuple[str, str]]
    inserted: list[tuple]
    replaced: list[tuple]


ORG_DIMENSIONS = ("tenant_id", "org_id", "event_type")


class UsageRollupsProjection(Projection):
    """usage_hourly and usage_daily: measures summed per combination of dimensions;
    usage_daily_org: the same per organization and event type only, the few rows a
    summary of an organization reads."""

    name = "usage_rollups"
    version = 4  # 4: sums kept exactly past 64 bits (NUMERIC(38,0) / SQLite integer or decimal text)
    topics = USAGE_TOPICS

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.hourly = _rollup_table(f"{prefix}usage_hourly", metadata)
        self.daily = _rollup_table(f"{prefix}usage_daily", metadata)
        self.daily_org = Table(
            f"{prefix}usage_daily_org",
            metadata,
            *[Column(d, String(128), primary_key=True) for d in ORG_DIMENSIONS],
            Column("bucket", DateTime, primary_key=True),
            *[Column(m, measure_type(m), nullable=False, default=0) for m in MEASURES],
        )

    def changes(self, batch: Sequence[Recorded]) -> "RollupChanges":
        hourly: dict[tuple, tuple[int, ...]] = {}  # (dimensions, hour) -> measures
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                _count(hourly, event.tenant_id, event.org_id, event.usage)
            elif isinstance(event, UsageVoided):
                _count(hourly, event.tenant_id, event.org_id, event.voided, subtract=True)
            elif isinstance(event, UsageAmended):
                _count(hourly, event.tenant_id, event.org_id, event.previous, subtract=True)
                _count(hourly, event.tenant_id, event.org_id, event.current)
        daily = _fold(hourly, lambda dims, hour: (dims, _bucket(hour.year, hour.month, hour.day)))
        org_daily = _fold(daily, lambda dims, day: (dims[0], dims[1], dims[3], day))  # tenant, org, event type
        return RollupChanges(
            *([(dims_key(dims), bucket, *dims, *totals) for (dims, bucket), totals in rollup.items()] for rollup in (hourly, daily)),
            [(*key, *totals) for key, totals in org_daily.items()],
        )

    def write(self, conn: Connection, changes: "RollupChanges") -> None:
        columns = ("dims_key", "bucket", *DIMENSIONS, *MEASURES)
        for table, rows in ((self.hourly, changes.hourly), (self.daily, changes.daily)):
            upsert_add(conn, table, rows, ["dims_key", "bucket"], MEASURES, columns=columns)
        org_keys = (*ORG_DIMENSIONS, "bucket")
        upsert_add(conn, self.daily_org, changes.daily_org, org_keys, MEASURES, columns=(*org_keys, *MEASURES))


class RollupChanges(NamedTuple):
    """A batch's measures to add, as rows of usage_hourly, usage_daily and usage_daily_org."""

    hourly: list[tuple]
    daily: list[tuple]
    daily_org: list[tuple]


def _count(hourly: dict[tuple, tuple[int, ...]], tenant_id: str, org_id: str, usage: Usage, subtract: bool = False) -> None:
    """Add (or take away) one usage event's measures in its hour's rollup."""
    measures = _measures(usage)
    if subtract:
        measures = tuple(map(neg, measures))
    key = (_dimensions(tenant_id, org_id, usage), _hour(usage.occurred_at))
    totals = hourly.get(key)
    hourly[key] = measures if totals is None else tuple(map(add, totals, measures))


def _hour(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return _bucket(moment.year, moment.month, moment.day, moment.hour)


@lru_cache(maxsize=65536)
def _bucket(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """An hour's or a day's bucket (naive UTC): a batch's events fall in few of them."""
    return datetime(year, month, day, hour)


def _fold(rollup: dict[tuple, tuple[int, ...]], coarser: Callable[[tuple, datetime], tuple]) -> dict[tuple, tuple[int, ...]]:
    """Sum a rollup's measures into coarser keys."""
    folded: dict[tuple, tuple[int, ...]] = {}
    for (dims, bucket), totals in rollup.items():
        key = coarser(dims, bucket)
        into = folded.get(key)
        folded[key] = totals if into is None else tuple(map(add, into, totals))
    return folded


class UsageTables:
    """The usage read models' tables, for queries."""

    def __init__(self, prefix: str = ""):
        self.events = UsageEventsProjection(prefix).events
        rollups = UsageRollupsProjection(prefix)
        self.hourly, self.daily, self.daily_org = rollups.hourly, rollups.daily, rollups.daily_org


USAGE_PROJECTIONS = (UsageEventsProjection.name, UsageRollupsProjection.name)


def _dimensions(tenant_id: str, org_id: str, u: Usage) -> tuple:
    return (
        tenant_id,
        org_id,
        u.client_id or "",
        u.event_type,
        u.resource_type or "",
        u.llm_provider or "",
        u.llm_model or "",
        u.operation or "",
        u.user_id or "",
        u.team_id or "",
        u.agent_id or "",
        u.workflow_id or "",
        u.app_id or "",
    )


def _measures(u: Usage) -> tuple[int, ...]:
    """One usage event's contribution, in the order of MEASURES."""
    return (
        1,
        1 if u.success else 0,
        0 if u.success else 1,
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        to_nanos(u.cost_usd),
        to_nanos(u.credits),
        1 if u.unpriced else 0,
        u.latency_ms or 0,
        0 if u.latency_ms is None else 1,
        u.policies_evaluated,
        u.policy_violations,
        int(u.quantity * MILLI) if u.quantity else 0,
        to_nanos(u.reported_cost_usd),
        u.cached_prompt_tokens,
        u.cache_creation_tokens,
        u.reasoning_tokens,
    )
