"""Policy commands: an organization's governance policies (create, update, delete)."""
from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any
from uuid import UUID

from ledger.concept import ConceptCommands
from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.errors import Conflict, Invalid, NotFound
from ledger.identity.commands import IdentityCommands
from ledger.identity.rules import EXTERNAL_ID
from ledger.journal import Journal
from ledger.policies.events import PolicyCreated, PolicyDeleted, PolicyUpdated
from ledger.policies.rules import MAX_POLICY_ID_LENGTH, Policy, check_policy
from ledger.settings import Settings
from ledger.store import stream_id


def policy_stream(tenant_id: str, policy_id: str) -> UUID:
    return stream_id("policy", tenant_id, policy_id)


class PolicyCommands(ConceptCommands):
    def __init__(self, journal: Journal, settings: Settings, audit: AuditCommands, identity: IdentityCommands):
        super().__init__(journal, settings, audit)
        self.identity = identity

    def find_policy(self, tenant_id: str, policy_id: str) -> Policy | None:
        if not policy_id or len(policy_id) > MAX_POLICY_ID_LENGTH:
            return None
        policy: Policy | None = None
        for recorded in self.journal.stream(policy_stream(tenant_id, policy_id)):
            event = recorded.event
            if isinstance(event, (PolicyCreated, PolicyUpdated)):
                policy = Policy(
                    event.tenant_id, event.org_id, event.policy_id, event.name, event.description, event.category,
                    event.action, event.enabled, event.rules, False, recorded.version,
                )
            elif isinstance(event, PolicyDeleted) and policy is not None:
                policy = replace(policy, deleted=True, version=recorded.version)
        return policy

    def create_policy(self, tenant_id: str, org_id: str, definition: dict[str, Any], actor: str, policy_id: str = "") -> tuple[str, int]:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "POLICY_CREATE", policy_id or str(definition.get("name", "")), {"name": definition.get("name")}):
            self.identity.require_org(tenant_id, org_id)
            policy_id = policy_id or "pol_" + secrets.token_hex(8)
            if not EXTERNAL_ID.match(policy_id) or len(policy_id) > MAX_POLICY_ID_LENGTH:
                raise Invalid("VALIDATION_FAILED", "policy_id must be 1-64 characters of [A-Za-z0-9._:-]", field="policy_id")
            definition = check_policy(definition)
            current = self.find_policy(tenant_id, policy_id)
            if current is not None and not current.deleted:
                raise Conflict("POLICY_EXISTS", f"Policy {policy_id} already exists")
            event = PolicyCreated(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, policy_id=policy_id, **definition)
            position = self.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version if current else 0)
        return policy_id, position

    def update_policy(self, tenant_id: str, policy_id: str, changes: dict[str, Any], actor: str) -> int:
        who = Actor(tenant_id, "", actor)
        with self.audit.attempt(who, "POLICY_UPDATE", policy_id, {"changed": sorted(changes)}):
            current = self.find_policy(tenant_id, policy_id)
            if current is None or current.deleted:
                raise NotFound("POLICY_NOT_FOUND", f"Policy {policy_id} not found")
            definition = check_policy({**current.definition(), **changes})
            changed = sorted(k for k, v in definition.items() if current.definition()[k] != v)
            event = PolicyUpdated(
                tenant_id=tenant_id, org_id=current.org_id, recorded_at=self.now, actor=actor,
                policy_id=policy_id, changed=changed, **definition,
            )
            return self.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version)

    def delete_policy(self, tenant_id: str, policy_id: str, actor: str) -> int:
        who = Actor(tenant_id, "", actor)
        with self.audit.attempt(who, "POLICY_DELETE", policy_id):
            current = self.find_policy(tenant_id, policy_id)
            if current is None or current.deleted:
                raise NotFound("POLICY_NOT_FOUND", f"Policy {policy_id} not found")
            event = PolicyDeleted(
                tenant_id=tenant_id, org_id=current.org_id, recorded_at=self.now, actor=actor, policy_id=policy_id, name=current.name
            )
            return self.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version)
