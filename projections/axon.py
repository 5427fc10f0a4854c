"""The axon audit read model: one row per AI request (a usage event with an
`operation`: completion, embedding or rag_query), indexed for the audit list's filters.

Kept apart from usage_events because retention prunes it (AUDIT_RETENTION_DAYS) while
usage totals stay whole. The projector skips events already older than the retention
window, so a rebuild ends up with the same rows as the live table after pruning. A row's
`position` is the ledger position of the latest event that wrote it (recorded or amended);
the SIEM forwarder (workers/siem.py) sends rows in that order.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, MetaData, String, Table, delete

from ledger.clock import SystemClock
from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
from projections.exact import ExactInt
from projections.framework import Projection, topics_of
from projections.sql import upsert_replace
from projections.usage import naive_utc

DEFAULT_RETENTION_DAYS = 365


def is_axon_record(usage: Usage) -> bool:
    return usage.operation is not None


class AxonAuditProjection(Projection):
    name = "axon_audit"
    version = 1
    topics = topics_of(UsageRecorded, UsageVoided, UsageAmended)

    def __init__(self, prefix: str = "", retention_days: int | None = None, clock: Any = None):
        super().__init__(prefix)
        self.retention_days = DEFAULT_RETENTION_DAYS if retention_days is None else retention_days
        self.clock = clock or SystemClock()

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.audit = Table(
            f"{prefix}axon_audit",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("event_id", String(128), primary_key=True),
            Column("org_id", String(64), nullable=False),
            Column("position", BigInteger, nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("user_id", String(128)),
            Column("model", String(256)),
            Column("operation", String(32), nullable=False),
            Column("knowledge_base_id", String(128)),
            Column("prompt_tokens", ExactInt(), nullable=False),
            Column("completion_tokens", ExactInt(), nullable=False),
            Index(f"ix_{prefix}axon_audit_org_time", "tenant_id", "org_id", "created_at", "position"),
            Index(f"ix_{prefix}axon_audit_org_operation", "tenant_id", "org_id", "operation", "created_at", "position"),
            Index(f"ix_{prefix}axon_audit_org_model", "tenant_id", "org_id", "model", "created_at", "position"),
            Index(f"ix_{prefix}axon_audit_org_kb", "tenant_id", "org_id", "knowledge_base_id", "created_at", "position"),
            Index(f"ix_{prefix}axon_audit_position", "position"),
            Index(f"ix_{prefix}axon_audit_created", "created_at"),
        )

    def cutoff(self) -> datetime:
        """Rows created before this are past retention (naive UTC, like the stored times)."""
        return naive_utc(self.clock.now()) - timedelta(days=self.retention_days)

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        cutoff = self.cutoff()
        rows: dict[tuple[str, str], dict | None] = {}
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                usage = event.usage
            elif isinstance(event, UsageAmended):
                usage = event.current
            elif isinstance(event, UsageVoided):
                rows[(event.tenant_id, event.event_id)] = None
                continue
            else:
                continue
            key = (event.tenant_id, usage.event_id)
            if is_axon_record(usage) and naive_utc(usage.occurred_at) >= cutoff:
                rows[key] = _row(event.tenant_id, event.org_id, recorded.position, usage)
            elif isinstance(event, UsageAmended) or key in rows:
                rows[key] = None  # it may have had a row: remove it
            # a new non-axon event never had a row: nothing to do
        gone: dict[str, list[str]] = {}
        for (tenant_id, event_id), row in rows.items():
            if row is None:
                gone.setdefault(tenant_id, []).append(event_id)
        for tenant_id, event_ids in gone.items():
            conn.execute(delete(self.audit).where(self.audit.c.tenant_id == tenant_id, self.audit.c.event_id.in_(event_ids)))
        upsert_replace(conn, self.audit, [row for row in rows.values() if row is not None], ["tenant_id", "event_id"])

    def prune(self, conn: Connection) -> int:
        """Delete rows past retention; returns how many went."""
        return conn.execute(delete(self.audit).where(self.audit.c.created_at < self.cutoff())).rowcount or 0


def _row(tenant_id: str, org_id: str, position: int, usage: Usage) -> dict:
    return {
        "tenant_id": tenant_id,
        "event_id": usage.event_id,
        "org_id": org_id,
        "position": position,
        "created_at": naive_utc(usage.occurred_at),
        "user_id": usage.user_id,
        "model": usage.llm_model,
        "operation": usage.operation,
        "knowledge_base_id": usage.knowledge_base_id,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }
