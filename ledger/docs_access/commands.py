"""Docs access commands: the Cloudflare Access group is the source of truth for who may
read the protected documentation; each grant or revoke is also recorded in the ledger."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.docs_access.cloudflare import CloudflareAccess
from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.identity.rules import normalize_email
from ledger.journal import Journal
from ledger.settings import Settings


@dataclass(frozen=True)
class DocsAccessResult:
    email: str
    changed: bool
    position: int


class DocsAccessCommands:
    def __init__(self, journal: Journal, settings: Settings, audit: AuditCommands):
        self.journal = journal
        self.settings = settings
        self.audit = audit

    @property
    def now(self) -> datetime:
        return self.journal.now

    def users(self, cloudflare: CloudflareAccess) -> list[str]:
        return cloudflare.group().emails

    def grant(self, actor: Actor, cloudflare: CloudflareAccess, email: str, reason: str = "") -> DocsAccessResult:
        with self.audit.attempt(actor, "DOCS_ACCESS_GRANT", str(email), {"reason": reason} if reason else None):
            email = normalize_email(email)
            group = cloudflare.group()
            present = group.has(email)
            if not present:
                cloudflare.update_group(group.with_email(email))
            event = DocsAccessGranted(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, reason=reason, already_present=present,
            )
            position = self.journal.record_fact(event)
        return DocsAccessResult(email, not present, position)

    def revoke(self, actor: Actor, cloudflare: CloudflareAccess, email: str) -> DocsAccessResult:
        with self.audit.attempt(actor, "DOCS_ACCESS_REVOKE", str(email)):
            email = normalize_email(email)
            group = cloudflare.group()
            present = group.has(email)
            if present:
                cloudflare.update_group(group.without_email(email))
            event = DocsAccessRevoked(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, already_absent=not present,
            )
            position = self.journal.record_fact(event)
        return DocsAccessResult(email, present, position)
