"""Queries on the admin audit log: filtered, newest first, keyset-paginated by position."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from projections.admin_audit import AdminAuditProjection

AUDIT = AdminAuditProjection()


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: str | None = None  # None: every tenant (admin key only)
    action: str | None = None
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _entry(row) -> dict:
    return {**dict(row), "details": json.loads(row["details_json"])}


def entries(conn: Connection, where: AuditFilter, limit: int, before: int | None = None) -> list[dict]:
    t = AUDIT.log
    query = select(t)
    if where.tenant_id is not None:
        query = query.where(t.c.tenant_id == where.tenant_id)
    if where.action:
        query = query.where(t.c.action == where.action)
    if where.actor:
        query = query.where(t.c.actor == where.actor)
    if where.outcome:
        query = query.where(t.c.outcome == where.outcome)
    if where.since is not None:
        query = query.where(t.c.recorded_at >= where.since)
    if where.until is not None:
        query = query.where(t.c.recorded_at < where.until)
    if before is not None:
        query = query.where(t.c.position < before)
    rows = conn.execute(query.order_by(t.c.position.desc()).limit(limit)).mappings()
    return [_entry(r) for r in rows]


def entry(conn: Connection, position: int, tenant_id: str | None) -> dict | None:
    t = AUDIT.log
    query = select(t).where(t.c.position == position)
    if tenant_id is not None:
        query = query.where(t.c.tenant_id == tenant_id)
    row = conn.execute(query).mappings().first()
    return _entry(row) if row else None
