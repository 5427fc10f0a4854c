"""Queries on the node status read model."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, func, select

from projections.licenses_queries import LICENSES
from projections.nodes import NodeStatusProjection

NODES = NodeStatusProjection()


def _node(row) -> dict:
    return {**dict(row), "host_info": json.loads(row["host_info_json"]) if row["host_info_json"] else None}


def active_nodes(conn: Connection, tenant_id: str, org_id: str, since: datetime) -> list[dict]:
    """Nodes whose last heartbeat is at or after `since`, most recently seen first."""
    t = NODES.nodes
    rows = conn.execute(
        select(t)
        .where(t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.last_seen >= since)
        .order_by(t.c.last_seen.desc(), t.c.instance_id)
    ).mappings()
    return [_node(r) for r in rows]


def active_node_counts(conn: Connection, tenant_id: str, org_id: str, since: datetime) -> dict[str, int]:
    t = NODES.nodes
    rows = conn.execute(
        select(t.c.instance_type, func.count())
        .where(t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.last_seen >= since)
        .group_by(t.c.instance_type)
    ).all()
    return {"agent": 0, "orchestrator": 0, **{kind: int(n) for kind, n in rows}}


def node(conn: Connection, tenant_id: str, org_id: str, instance_id: str) -> dict | None:
    t = NODES.nodes
    row = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.instance_id == instance_id)
    ).mappings().first()
    return _node(row) if row else None


def tenants_with_org(conn: Connection, org_id: str) -> list[str]:
    """Tenants that have a licence or nodes for this org id (admin lookups by org_id)."""
    found = set(conn.execute(select(LICENSES.licenses.c.tenant_id).where(LICENSES.licenses.c.org_id == org_id)).scalars())
    found |= set(conn.execute(select(NODES.nodes.c.tenant_id).where(NODES.nodes.c.org_id == org_id).distinct()).scalars())
    return sorted(found)
