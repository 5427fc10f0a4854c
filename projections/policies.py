"""The policies read model: each organization's current policy definitions."""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Connection, DateTime, Index, Integer, MetaData, String, Table, Text, delete, update

from ledger.policies.events import PolicyCreated, PolicyDeleted, PolicyUpdated
from ledger.store import Recorded
from projections.dispatch import DispatchingProjection, json_text
from projections.sql import upsert_replace
from projections.usage import naive_utc


class PoliciesProjection(DispatchingProjection):
    name = "policies"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.policies = Table(
            f"{prefix}policies",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("policy_id", String(64), primary_key=True),
            Column("org_id", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("description", Text, nullable=False),
            Column("category", String(64), nullable=False),
            Column("action", String(16), nullable=False),
            Column("enabled", Boolean, nullable=False),
            Column("rules_json", Text, nullable=False),
            Column("revision", Integer, nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("updated_at", DateTime, nullable=False),
            Index(f"ix_{prefix}policies_org", "tenant_id", "org_id"),
        )

    def handlers(self):
        return {PolicyCreated: self._created, PolicyUpdated: self._updated, PolicyDeleted: self._deleted}

    @staticmethod
    def _definition(e) -> dict:
        return {
            "name": e.name, "description": e.description, "category": e.category, "action": e.action,
            "enabled": e.enabled, "rules_json": json_text(e.rules),
        }

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyCreated = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        upsert_replace(
            conn,
            self.policies,
            [{"tenant_id": e.tenant_id, "policy_id": e.policy_id, "org_id": e.org_id, **self._definition(e),
              "revision": 1, "created_at": at, "updated_at": at}],
            ["tenant_id", "policy_id"],
        )

    def _updated(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyUpdated = recorded.event  # type: ignore[assignment]
        t = self.policies
        conn.execute(
            update(t)
            .where(t.c.tenant_id == e.tenant_id, t.c.policy_id == e.policy_id)
            .values(**self._definition(e), revision=t.c.revision + 1, updated_at=naive_utc(e.recorded_at))
        )

    def _deleted(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyDeleted = recorded.event  # type: ignore[assignment]
        t = self.policies
        conn.execute(delete(t).where(t.c.tenant_id == e.tenant_id, t.c.policy_id == e.policy_id))
