"""The docs access read model: who was granted or revoked access to the protected
documentation, by whom and why."""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Connection, DateTime, MetaData, String, Table, Text

from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.store import Recorded
from projections.dispatch import DispatchingProjection
from projections.sql import upsert_replace
from projections.usage import naive_utc


class DocsAccessProjection(DispatchingProjection):
    """Who was granted or revoked docs access, by whom and why (Cloudflare stays the
    source of truth for membership; this is the history the portal keeps)."""

    name = "docs_access"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.grants = Table(
            f"{prefix}docs_access",
            metadata,
            Column("email", String(254), primary_key=True),
            Column("granted", Boolean, nullable=False),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("reason", Text, nullable=False),
            Column("changed_by", String(300), nullable=False),
            Column("changed_at", DateTime, nullable=False),
        )

    def handlers(self):
        return {DocsAccessGranted: self._changed, DocsAccessRevoked: self._changed}

    def _changed(self, conn: Connection, recorded: Recorded) -> None:
        e = recorded.event
        granted = isinstance(e, DocsAccessGranted)
        upsert_replace(
            conn,
            self.grants,
            [{"email": e.email, "granted": granted, "tenant_id": e.tenant_id, "org_id": e.org_id,
              "reason": getattr(e, "reason", ""), "changed_by": e.actor, "changed_at": naive_utc(e.recorded_at)}],
            ["email"],
        )
