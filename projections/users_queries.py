"""Queries on the portal users read model."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select

from projections.users import UsersProjection

USERS = UsersProjection()


def tenant_users(conn: Connection, tenant_id: str) -> list[dict]:
    t = USERS.users
    rows = conn.execute(select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.email)).mappings()
    return [{**dict(r), "permissions": json.loads(r["permissions_json"])} for r in rows]
