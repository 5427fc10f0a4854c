"""Queries on the portal read models (keys, licences, nodes, policies, users)."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, func, select

from projections.portal import (
    ApiKeysProjection,
    DocsAccessProjection,
    LicensesProjection,
    NodeStatusProjection,
    PoliciesProjection,
    UsersProjection,
)

DOCS = DocsAccessProjection()
KEYS = ApiKeysProjection()
LICENSES = LicensesProjection()
NODES = NodeStatusProjection()
POLICIES = PoliciesProjection()
USERS = UsersProjection()


# API keys ---------------------------------------------------------------------------------
def _key(row) -> dict:
    return {**dict(row), "scopes": json.loads(row["scopes_json"])}


def org_keys(conn: Connection, tenant_id: str, org_id: str) -> list[dict]:
    t = KEYS.keys
    rows = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id).order_by(t.c.created_at.desc(), t.c.position.desc())
    ).mappings()
    return [_key(r) for r in rows]


def org_key(conn: Connection, tenant_id: str, org_id: str, key_id: str) -> dict | None:
    """The key, when it belongs to this tenant's org (another tenant's key is not found)."""
    t = KEYS.keys
    row = conn.execute(
        select(t).where(t.c.key_id == key_id, t.c.tenant_id == tenant_id, t.c.org_id == org_id)
    ).mappings().first()
    return _key(row) if row else None


# licences ---------------------------------------------------------------------------------
def active_license(conn: Connection, tenant_id: str, org_id: str) -> dict | None:
    t = LICENSES.licenses
    row = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.active.is_(True))
    ).mappings().first()
    return dict(row) if row else None


def tenants_with_org(conn: Connection, org_id: str) -> list[str]:
    """Tenants that have a licence or nodes for this org id (admin lookups by org_id)."""
    found = set(conn.execute(select(LICENSES.licenses.c.tenant_id).where(LICENSES.licenses.c.org_id == org_id)).scalars())
    found |= set(conn.execute(select(NODES.nodes.c.tenant_id).where(NODES.nodes.c.org_id == org_id).distinct()).scalars())
    return sorted(found)


# nodes ------------------------------------------------------------------------------------
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


# policies ---------------------------------------------------------------------------------
def org_policies(conn: Connection, tenant_id: str, org_id: str) -> list[dict]:
    t = POLICIES.policies
    rows = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id).order_by(t.c.name, t.c.policy_id)
    ).mappings()
    return [{**dict(r), "rules": json.loads(r["rules_json"])} for r in rows]


# users ------------------------------------------------------------------------------------
def tenant_users(conn: Connection, tenant_id: str) -> list[dict]:
    t = USERS.users
    rows = conn.execute(select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.email)).mappings()
    return [{**dict(r), "permissions": json.loads(r["permissions_json"])} for r in rows]


# docs access ------------------------------------------------------------------------------
def docs_readers_of_other_tenants(conn: Connection, tenant_id: str) -> set[str]:
    """E-mails that another tenant granted docs access to (and has not revoked): the Access
    group is shared by the deployment, but who a tenant let in is that tenant's own."""
    t = DOCS.grants
    rows = conn.execute(select(t.c.email).where(t.c.granted.is_(True), t.c.tenant_id != tenant_id))
    return {r.email for r in rows}
