"""Usage read models: raw usage_events and the hourly and daily rollups.

Fed by UsageRecorded, UsageVoided and UsageAmended. Money and credits are kept as integer
nano-units (exact on SQLite and PostgreSQL); quantities as milli-units. Absent dimensions
are '' in the rollup keys so that every key column can be part of the primary key.
"""
from __future__ import annotations

from collections import defaultdict
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
    delete,
    update,
)

from ledger.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
from projections.framework import Projection
from projections.sql import upsert_add, upsert_replace

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
    return Table(
        name,
        metadata,
        *[Column(d, String(128), primary_key=True) for d in DIMENSIONS],
        Column("bucket", DateTime, primary_key=True),
        *[Column(m, BigInteger, nullable=False, default=0) for m in MEASURES],
        Index(f"ix_{name}_org_bucket", "tenant_id", "org_id", "bucket"),
    )


class UsageProjection(Projection):
    name = "usage"
    version = 1
    topics = ("UsageRecorded", "UsageVoided", "UsageAmended")

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.events = Table(
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
        self.hourly = _rollup_table(f"{prefix}usage_hourly", metadata)
        self.daily = _rollup_table(f"{prefix}usage_daily", metadata)

    # pure part: events → row changes ----------------------------------------------------
    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        upserts: dict[tuple, dict] = {}
        deletes: list[tuple[str, str]] = []
        hourly: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
        daily: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))

        def count(org_id: str, tenant_id: str, usage: Usage, sign: int) -> None:
            dims = _dimensions(tenant_id, org_id, usage)
            measures = _measures(usage)
            moment = naive_utc(usage.occurred_at)
            for rollup, bucket in (
                (hourly, moment.replace(minute=0, second=0, microsecond=0)),
                (daily, moment.replace(hour=0, minute=0, second=0, microsecond=0)),
            ):
                row = rollup[dims + (bucket,)]
                for name, value in measures.items():
                    row[name] += sign * value

        for recorded in batch:
            event = recorded.event
            key = (event.tenant_id, _event_id(event))
            if isinstance(event, UsageRecorded):
                count(event.org_id, event.tenant_id, event.usage, +1)
                upserts[key] = _event_row(event.tenant_id, event.org_id, recorded.position, event.recorded_at, event.usage)
            elif isinstance(event, UsageVoided):
                count(event.org_id, event.tenant_id, event.voided, -1)
                upserts.pop(key, None)
                deletes.append(key)
            elif isinstance(event, UsageAmended):
                count(event.org_id, event.tenant_id, event.previous, -1)
                count(event.org_id, event.tenant_id, event.current, +1)
                upserts[key] = _event_row(event.tenant_id, event.org_id, recorded.position, event.recorded_at, event.current)

        for tenant_id, event_id in deletes:
            if (tenant_id, event_id) not in upserts:
                conn.execute(
                    delete(self.events).where(self.events.c.tenant_id == tenant_id, self.events.c.event_id == event_id)
                )
        upsert_replace(conn, self.events, list(upserts.values()), ["tenant_id", "event_id"])
        keys = list(DIMENSIONS) + ["bucket"]
        for table, rollup in ((self.hourly, hourly), (self.daily, daily)):
            rows = [dict(zip(keys, key), **measures) for key, measures in rollup.items()]
            upsert_add(conn, table, rows, keys, MEASURES)


def _event_id(event) -> str:
    return event.usage.event_id if isinstance(event, UsageRecorded) else event.event_id


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


def _measures(u: Usage) -> dict[str, int]:
    return {
        "events": 1,
        "successes": 1 if u.success else 0,
        "errors": 0 if u.success else 1,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cost_nanos": to_nanos(u.cost_usd),
        "credits_nanos": to_nanos(u.credits),
        "unpriced_events": 1 if u.unpriced else 0,
        "latency_sum": u.latency_ms or 0,
        "latency_count": 0 if u.latency_ms is None else 1,
        "policies_evaluated": u.policies_evaluated,
        "policy_violations": u.policy_violations,
        "quantity_milli": int((u.quantity or 0) * MILLI),
    }


def _event_row(tenant_id: str, org_id: str, position: int, recorded_at: datetime, u: Usage) -> dict:
    return {
        "tenant_id": tenant_id,
        "event_id": u.event_id,
        "org_id": org_id,
        "position": position,
        "occurred_at": naive_utc(u.occurred_at),
        "recorded_at": naive_utc(recorded_at),
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
