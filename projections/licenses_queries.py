"""Queries on the licences read model."""
from __future__ import annotations

from sqlalchemy import Connection, select

from projections.licenses import LicensesProjection

LICENSES = LicensesProjection()


def active_license(conn: Connection, tenant_id: str, org_id: str) -> dict | None:
    t = LICENSES.licenses
    row = conn.execute(
        select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.active.is_(True))
    ).mappings().first()
    return dict(row) if row else None
