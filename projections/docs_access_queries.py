"""Queries on the docs access read model."""
from __future__ import annotations

from sqlalchemy import Connection, select

from projections.docs_access import DocsAccessProjection

DOCS = DocsAccessProjection()


def docs_readers_of_other_tenants(conn: Connection, tenant_id: str) -> set[str]:
    """E-mails that another tenant granted docs access to (and has not revoked): the Access
    group is shared by the deployment, but who a tenant let in is that tenant's own."""
    t = DOCS.grants
    rows = conn.execute(select(t.c.email).where(t.c.granted.is_(True), t.c.tenant_id != tenant_id))
    return {r.email for r in rows}


def docs_reader_owner(conn: Connection, email: str) -> str | None:
    """The tenant whose grant of this e-mail stands (None: not granted, or revoked)."""
    t = DOCS.grants
    row = conn.execute(select(t.c.tenant_id).where(t.c.email == email.strip().lower(), t.c.granted.is_(True))).first()
    return row.tenant_id if row else None
