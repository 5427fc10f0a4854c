"""Queries on the policies read model."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select

from projections.policies import PoliciesProjection

POLICIES = PoliciesProjection()


def org_policies(conn: Connection, tenant_id: str, org_id: str) -> list[dict]:
    t = POLICIES.policies
    rows = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id).order_by(t.c.name, t.c.policy_id)
    ).mappings()
    return [{**dict(r), "rules": json.loads(r["rules_json"])} for r in rows]
