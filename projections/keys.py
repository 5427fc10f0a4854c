"""The API keys read model: every key of an organization, its scopes, expiry, last use and
revocation. No key material is projected beyond its public prefix."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, MetaData, String, Table, Text, or_, update

from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed
from ledger.store import Recorded
from projections.dispatch import DispatchingProjection, json_text
from projections.sql import upsert_replace
from projections.usage import naive_utc


class ApiKeysProjection(DispatchingProjection):
    name = "api_keys"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.keys = Table(
            f"{prefix}api_keys",
            metadata,
            Column("key_id", String(64), primary_key=True),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("key_prefix", String(16), nullable=False),
            Column("scopes_json", Text, nullable=False),
            Column("created_by", String(300), nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("expires_at", DateTime),
            Column("last_used_at", DateTime),
            Column("revoked_at", DateTime),
            Column("position", BigInteger, nullable=False),
            Index(f"ix_{prefix}api_keys_org", "tenant_id", "org_id", "created_at"),
        )

    def handlers(self):
        return {ApiKeyCreated: self._created, ApiKeyRevoked: self._revoked, ApiKeyUsed: self._used}

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyCreated = recorded.event  # type: ignore[assignment]
        upsert_replace(
            conn,
            self.keys,
            [{
                "key_id": e.key_id, "tenant_id": e.tenant_id, "org_id": e.org_id, "name": e.name,
                "key_prefix": e.key_prefix, "scopes_json": json_text(e.scopes), "created_by": e.actor,
                "created_at": naive_utc(e.recorded_at),
                "expires_at": naive_utc(e.expires_at) if e.expires_at else None,
                "last_used_at": None, "revoked_at": None, "position": recorded.position,
            }],
            ["key_id"],
        )

    def _revoked(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyRevoked = recorded.event  # type: ignore[assignment]
        conn.execute(update(self.keys).where(self.keys.c.key_id == e.key_id).values(revoked_at=naive_utc(e.recorded_at)))

    def _used(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyUsed = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        conn.execute(
            update(self.keys)
            .where(self.keys.c.key_id == e.key_id, or_(self.keys.c.last_used_at.is_(None), self.keys.c.last_used_at < at))
            .values(last_used_at=at)
        )
