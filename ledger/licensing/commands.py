"""Licensing commands: an organization's licence (issue, replace, revoke), node
heartbeats, and the outcomes of License Manager sync."""
from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from ledger.concept import ConceptCommands
from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.errors import Conflict, NotFound
from ledger.identity.commands import IdentityCommands
from ledger.journal import Journal
from ledger.licensing.events import (
    HeartbeatReceived,
    LicenseIssued,
    LicenseReplaced,
    LicenseRevoked,
    LicenseSynced,
    LicenseSyncFailed,
)
from ledger.licensing.rules import (
    LICENSE_SYNC_FAILURE_CODES,
    License,
    LicenseTerms,
    ReportedLicense,
    check_heartbeat,
    check_terms,
)
from ledger.settings import Settings
from ledger.store import stream_id

SYNC_ACTOR = "system:license-sync"


def license_stream(tenant_id: str, org_id: str) -> UUID:
    return stream_id("license", tenant_id, org_id)


class LicensingCommands(ConceptCommands):
    def __init__(self, journal: Journal, settings: Settings, audit: AuditCommands, identity: IdentityCommands):
        super().__init__(journal, settings, audit)
        self.identity = identity

    # licences ----------------------------------------------------------------------------
    def find_license(self, tenant_id: str, org_id: str) -> License | None:
        found: License | None = None
        for recorded in self.journal.stream(license_stream(tenant_id, org_id)):
            event = recorded.event
            if isinstance(event, (LicenseIssued, LicenseReplaced)):
                found = License(
                    event.tenant_id, event.org_id, event.tier, event.nodes_total, event.expires_at,
                    event.credits_included, event.license_key, True, recorded.version,
                )
            elif isinstance(event, LicenseRevoked) and found is not None:
                found = replace(found, active=False, version=recorded.version)
            elif found is not None:  # events other engineers add to the licence stream
                found = replace(found, version=recorded.version)
        return found

    def issue_license(self, tenant_id: str, org_id: str, terms: LicenseTerms, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "LICENSE_ISSUE", f"{tenant_id}/{org_id}", {"tier": terms.tier}):
            self.identity.require_org(tenant_id, org_id)
            check_terms(terms)
            current = self.find_license(tenant_id, org_id)
            if current is not None and current.active:
                raise Conflict("LICENSE_EXISTS", f"Organization {org_id} already has a licence; replace it with PUT")
            event = LicenseIssued(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, **terms.fields())
            return self.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version if current else 0)

    def replace_license(self, tenant_id: str, org_id: str, terms: LicenseTerms, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "LICENSE_REPLACE", f"{tenant_id}/{org_id}", {"tier": terms.tier}):
            check_terms(terms)
            current = self.find_license(tenant_id, org_id)
            if current is None or not current.active:
                raise NotFound("LICENSE_NOT_FOUND", f"Organization {org_id} has no licence")
            event = LicenseReplaced(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, **terms.fields())
            return self.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version)

    def revoke_license(self, tenant_id: str, org_id: str, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "LICENSE_REVOKE", f"{tenant_id}/{org_id}"):
            current = self.find_license(tenant_id, org_id)
            if current is None or not current.active:
                raise NotFound("LICENSE_NOT_FOUND", f"Organization {org_id} has no licence")
            event = LicenseRevoked(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, tier=current.tier)
            return self.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version)

    # heartbeats --------------------------------------------------------------------------
    def record_heartbeat(
        self,
        actor: Actor,
        instance_id: str,
        instance_type: str,
        hostname: str | None = None,
        port: int | None = None,
        host_info: dict[str, Any] | None = None,
    ) -> int:
        """One event per heartbeat: each is a fact (the node was alive at that moment), and
        the node_status read model keeps only the latest per node."""
        check_heartbeat(instance_id, instance_type, host_info)
        event = HeartbeatReceived(
            tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
            instance_id=instance_id, instance_type=instance_type, hostname=hostname, port=port, host_info=host_info,
        )
        return self.journal.record_fact(event)

    # License Manager sync ----------------------------------------------------------------
    def record_synced(self, tenant_id: str, org_id: str, license_key: str, reported: ReportedLicense) -> int:
        event = LicenseSynced(
            tenant_id=tenant_id,
            org_id=org_id,
            recorded_at=self.now,
            actor=SYNC_ACTOR,
            license_key=license_key,
            tier=reported.tier,
            nodes_total=reported.nodes_total,
            credits_included=reported.credits_included,
            expires_at=reported.expires_at,
            status=reported.status,
        )
        return self.journal.record_fact(event)

    def record_sync_failed(
        self, tenant_id: str, org_id: str, license_key: str, code: str, message: str, http_status: int | None
    ) -> int:
        assert code in LICENSE_SYNC_FAILURE_CODES, code
        event = LicenseSyncFailed(
            tenant_id=tenant_id,
            org_id=org_id,
            recorded_at=self.now,
            actor=SYNC_ACTOR,
            license_key=license_key,
            code=code,
            message=message[:500],
            http_status=http_status,
        )
        return self.journal.record_fact(event)
