"""Queries on the API keys read model."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select

from projections.keys import ApiKeysProjection

KEYS = ApiKeysProjection()


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
