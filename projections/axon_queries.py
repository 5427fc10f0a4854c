"""Queries of the axon surface: usage from the daily rollups, the audit list
from the axon_audit read model, and the SIEM forwarder's reads."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from projections.axon import AxonAuditProjection
from projections.usage_queries import USAGE
from projections.wire import event_time

AXON = AxonAuditProjection()
MAX_AUDIT_OFFSET = 10_000  # deepest page: page × per_page may not pass this (narrow with created_before)


def usage_by_model_and_operation(
    conn: Connection, tenant_id: str, org_id: str, since: datetime, until: datetime | None = None
) -> list[dict]:
    """Requests, tokens and cost per (model, operation) in [since, until) (UTC midnights),
    from the daily rollup."""
    t = USAGE.daily
    rows = conn.execute(
        select(
            t.c.model,
            t.c.operation,
            func.sum(t.c.events).label("requests"),
            func.sum(t.c.prompt_tokens).label("prompt_tokens"),
            func.sum(t.c.completion_tokens).label("completion_tokens"),
            func.sum(t.c.total_tokens).label("total_tokens"),
            func.sum(t.c.cost_nanos).label("cost_nanos"),
        )
        .where(
            t.c.tenant_id == tenant_id,
            t.c.org_id == org_id,
            t.c.bucket >= since,
            *([t.c.bucket < until] if until is not None else []),
            t.c.operation != "",
        )
        .group_by(t.c.model, t.c.operation)
        .order_by(t.c.model, t.c.operation)
    ).mappings()
    return [
        {k: (int(v) if k not in ("model", "operation") else v) for k, v in row.items()}
        for row in rows
    ]


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: str
    org_id: str
    operation: str | None = None
    model: str | None = None
    knowledge_base_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def _conditions(f: AuditFilter) -> list:
    t = AXON.audit
    conditions = [t.c.tenant_id == f.tenant_id, t.c.org_id == f.org_id]
    if f.operation is not None:
        conditions.append(t.c.operation == f.operation)
    if f.model is not None:
        conditions.append(t.c.model == f.model)
    if f.knowledge_base_id is not None:
        conditions.append(t.c.knowledge_base_id == f.knowledge_base_id)
    if f.created_after is not None:
        conditions.append(t.c.created_at >= f.created_after)
    if f.created_before is not None:
        conditions.append(t.c.created_at < f.created_before)
    return conditions


def audit_page(conn: Connection, f: AuditFilter, offset: int, limit: int) -> tuple[list[dict], int]:
    """Newest first (created_at, then ledger position); the page and the filtered total."""
    t = AXON.audit
    conditions = _conditions(f)
    rows = conn.execute(
        select(t).where(*conditions).order_by(t.c.created_at.desc(), t.c.position.desc()).offset(offset).limit(limit)
    ).mappings()
    page = [dict(r) for r in rows]
    total = conn.execute(select(func.count()).select_from(t).where(*conditions)).scalar_one()
    return page, int(total)


def audit_after(conn: Connection, position: int, limit: int) -> list[dict]:
    """Audit rows written after a ledger position, in position order (SIEM forwarding)."""
    t = AXON.audit
    rows = conn.execute(select(t).where(t.c.position > position).order_by(t.c.position).limit(limit)).mappings()
    return [dict(r) for r in rows]


def audit_record(row: dict) -> dict:
    """One audit record in the audit log's documented shape (the API and the SIEM forwarder send this)."""
    created = row["created_at"]
    return {
        "id": row["event_id"],
        "tenant_id": row["tenant_id"],
        "user_id": row["user_id"],
        "model": row["model"],
        "operation": row["operation"],
        "prompt_tokens": int(row["prompt_tokens"]),
        "completion_tokens": int(row["completion_tokens"]),
        "knowledge_base_id": row["knowledge_base_id"],
        "created_at": event_time(created),  # a record time: always 6 fractional digits
    }
