"""Usage read models: raw usage_events and the hourly and daily rollups.

Fed by UsageRecorded, UsageVoided and UsageAmended. Money and credits are kept as integer
nano-units (exact on SQLite and PostgreSQL); quantities as milli-units. Absent dimensions
are '' in the rollup keys so that every key column can be part of the primary key.
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Sequence

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

from ledger.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
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
)


def to_nanos(value: Decimal | None) -> int:
    return int((value or 0) * NANO)


def from_nanos(value: int | None) -> Decimal:
    return Decimal(value or 0) / NANO


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


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
        *[Column(m, BigInteger, nullable=False, default=0) for m in MEASURES],
        Index(f"ix_{name}_org_bucket", "tenant_id", "org_id", "bucket"),
    )


def dims_key(dims: tuple) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.blake2b("\x1f".join(dims).encode(), digest_size=16).digest())


USAGE_TOPICS = ("UsageRecorded", "UsageVoided", "UsageAmended")


def usage_events_table(metadata: MetaData, prefix: str = "") -> Table:
    return Table(
        f"{prefix}usage_events",
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("event_id", String(128), primary_key=True),
        Column("org_id", String(64), nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("occurred_at", DateTime, nullable=False),
        Column("recorded_at", DateTime, nullable=False),
        Column("client_id", String(64), nullable=False),
        Column("event_type", String(64), nullable=False),
        Column("operation", String(32)),
        Column("resource_type", String(32)),
        Column("quantity_milli", BigInteger),
        Column("instance_id", String(128)),
        Column("instance_type", String(256)),
        Column("user_id", String(128)),
        Column("team_id", String(128)),
        Column("agent_id", String(128)),
        Column("workflow_id", String(128)),
        Column("app_id", String(128)),
        Column("knowledge_base_id", String(128)),
        Column("http_method", String(16)),
        Column("http_path", Text),
        Column("http_status_code", Integer),
        Column("llm_provider", String(256)),
        Column("llm_model", String(256)),
        Column("prompt_tokens", BigInteger, nullable=False),
        Column("completion_tokens", BigInteger, nullable=False),
        Column("total_tokens", BigInteger, nullable=False),
        Column("latency_ms", BigInteger),
        Column("cost_nanos", BigInteger, nullable=False),
        Column("unpriced", Boolean, nullable=False),
        Column("credits_nanos", BigInteger),
        Column("policies_evaluated", BigInteger, nullable=False),
        Column("policy_violations", BigInteger, nullable=False),
        Column("success", Boolean, nullable=False),
        Column("metadata_json", Text),
        Index(f"ix_{prefix}usage_events_org_time", "tenant_id", "org_id", "occurred_at", "position"),
        Index(f"ix_{prefix}usage_events_client_time", "tenant_id", "org_id", "client_id", "occurred_at"),
    )


class UsageEventsProjection(Projection):
    """usage_events: one row per usage event that is not voided, as amended."""

    name = "usage_events"
    version = 1
    topics = USAGE_TOPICS

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.events = usage_events_table(metadata, prefix)

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        rows: dict[tuple[str, str], dict | None] = {}  # None: voided
        new: set[tuple[str, str]] = set()  # recorded in this batch: plain inserts
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                key = (event.tenant_id, event.usage.event_id)
                new.add(key)
                rows[key] = _event_row(event, recorded.position, event.usage)
            elif isinstance(event, UsageAmended):
                rows[(event.tenant_id, event.event_id)] = _event_row(event, recorded.position, event.current)
            elif isinstance(event, UsageVoided):
                rows[(event.tenant_id, event.event_id)] = None
        for tenant_id, event_id in (key for key, row in rows.items() if row is None):
            conn.execute(delete(self.events).where(self.events.c.tenant_id == tenant_id, self.events.c.event_id == event_id))
        insert_rows(conn, self.events, [row for key, row in rows.items() if row is not None and key in new])
        changed = [row for key, row in rows.items() if row is not None and key not in new]
        upsert_replace(conn, self.events, changed, ["tenant_id", "event_id"])


ORG_DIMENSIONS = ("tenant_id", "org_id", "event_type")


class UsageRollupsProjection(Projection):
    """usage_hourly and usage_daily: measures summed per combination of dimensions;
    usage_daily_org: the same per organization and event type only, the few rows a
    summary of an organization reads."""

    name = "usage_rollups"
    version = 2
    topics = USAGE_TOPICS

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.hourly = _rollup_table(f"{prefix}usage_hourly", metadata)
        self.daily = _rollup_table(f"{prefix}usage_daily", metadata)
        self.daily_org = Table(
            f"{prefix}usage_daily_org",
            metadata,
            *[Column(d, String(128), primary_key=True) for d in ORG_DIMENSIONS],
            Column("bucket", DateTime, primary_key=True),
            *[Column(m, BigInteger, nullable=False, default=0) for m in MEASURES],
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        hourly: dict[tuple, list[int]] = {}
        daily: dict[tuple, list[int]] = {}
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                changes = ((event.usage, 1),)
            elif isinstance(event, UsageVoided):
                changes = ((event.voided, -1),)
            elif isinstance(event, UsageAmended):
                changes = ((event.previous, -1), (event.current, 1))
            else:
                continue
            for usage, sign in changes:
                dims = _dimensions(event.tenant_id, event.org_id, usage)
                measures = _measures(usage)
                moment = naive_utc(usage.occurred_at)
                for rollup, bucket in (
                    (hourly, moment.replace(minute=0, second=0, microsecond=0)),
                    (daily, moment.replace(hour=0, minute=0, second=0, microsecond=0)),
                ):
                    totals = rollup.get((dims, bucket))
                    if totals is None:
                        rollup[(dims, bucket)] = [sign * m for m in measures]
                    else:
                        for i, m in enumerate(measures):
                            totals[i] += sign * m
        for table, rollup in ((self.hourly, hourly), (self.daily, daily)):
            rows = [
                {"dims_key": dims_key(dims), "bucket": bucket, **dict(zip(DIMENSIONS, dims)), **dict(zip(MEASURES, totals))}
                for (dims, bucket), totals in rollup.items()
            ]
            upsert_add(conn, table, rows, ["dims_key", "bucket"], MEASURES)
        org_daily: dict[tuple, list[int]] = {}
        for (dims, bucket), totals in daily.items():
            key = (dims[0], dims[1], dims[3], bucket)  # tenant, org, event type, day
            into = org_daily.setdefault(key, [0] * len(MEASURES))
            for i, m in enumerate(totals):
                into[i] += m
        rows = [dict(zip((*ORG_DIMENSIONS, "bucket"), key), **dict(zip(MEASURES, totals))) for key, totals in org_daily.items()]
        upsert_add(conn, self.daily_org, rows, [*ORG_DIMENSIONS, "bucket"], MEASURES)


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
        int((u.quantity or 0) * MILLI),
    )


def _event_row(event, position: int, u: Usage) -> dict:
    return {
        "tenant_id": event.tenant_id,
        "event_id": u.event_id,
        "org_id": event.org_id,
        "position": position,
        "occurred_at": naive_utc(u.occurred_at),
        "recorded_at": naive_utc(event.recorded_at),
        "client_id": u.client_id,
        "event_type": u.event_type,
        "operation": u.operation,
        "resource_type": u.resource_type,
        "quantity_milli": None if u.quantity is None else int(u.quantity * MILLI),
        "instance_id": u.instance_id,
        "instance_type": u.instance_type,
        "user_id": u.user_id,
        "team_id": u.team_id,
        "agent_id": u.agent_id,
        "workflow_id": u.workflow_id,
        "app_id": u.app_id,
        "knowledge_base_id": u.knowledge_base_id,
        "http_method": u.http_method,
        "http_path": u.http_path,
        "http_status_code": u.http_status_code,
        "llm_provider": u.llm_provider,
        "llm_model": u.llm_model,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "latency_ms": u.latency_ms,
        "cost_nanos": to_nanos(u.cost_usd),
        "unpriced": u.unpriced,
        "credits_nanos": None if u.credits is None else to_nanos(u.credits),
        "policies_evaluated": u.policies_evaluated,
        "policy_violations": u.policy_violations,
        "success": u.success,
        "metadata_json": None if u.metadata is None else msgspec.json.encode(u.metadata).decode(),
    }
