"""Docs access commands: the Cloudflare Access group is the source of truth for who may
read the protected documentation; each grant or revoke is also recorded in the ledger.

The group is shared by every tenant, so who let an e-mail in matters. Each e-mail has its
own stream (grants and revokes in order), and ownership is folded from it at the moment of
the command, never from a read model that may lag:

- the tenant whose grant added the e-mail owns it: another tenant's grant or revoke is a
  no-op (recorded as denied);
- an e-mail that was already in the group when a tenant first granted it (added outside
  this service) belongs to no tenant: no tenant can revoke it.

E-mails granted by earlier releases (their events were not in per-e-mail streams) are
looked up with `earlier_owner`, which the caller answers from the docs access read model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from uuid import UUID

from ledger.concept import ConceptCommands
from ledger.actor import Actor
from ledger.docs_access.cloudflare import CloudflareAccess
from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.identity.rules import normalize_email
from ledger.store import stream_id

NOT_OURS = "not granted by this tenant"
PREEXISTING = "in the Access group before any tenant granted it"


def docs_email_stream(email: str) -> UUID:
    return stream_id("docs-access", email)


@dataclass(frozen=True)
class DocsAccessResult:
    email: str
    changed: bool
    position: int
    refused: str = ""  # why the command was a no-op for this tenant (recorded as denied)


@dataclass(frozen=True)
class Ownership:
    owner: str | None  # the tenant whose grant holds the e-mail in the group
    preexisting: bool  # in the group before any tenant granted it
    version: int


class DocsAccessCommands(ConceptCommands):
    def users(self, cloudflare: CloudflareAccess) -> list[str]:
        return cloudflare.group().emails

    def ownership(self, email: str, earlier_owner: Callable[[str], str | None] = lambda _e: None) -> Ownership:
        owner: str | None = None
        preexisting = False
        version = 0
        for recorded in self.journal.stream(docs_email_stream(email)):
            event, version = recorded.event, recorded.version
            if isinstance(event, DocsAccessGranted):
                if owner is None and not preexisting:
                    if event.already_present:
                        preexisting = True
                    else:
                        owner = event.tenant_id
            elif isinstance(event, DocsAccessRevoked) and event.tenant_id == owner and not event.already_absent:
                owner = None
        if version == 0:
            owner = earlier_owner(email)
        return Ownership(owner, preexisting, version)

    def grant(
        self, actor: Actor, cloudflare: CloudflareAccess, email: str, reason: str = "",
        earlier_owner: Callable[[str], str | None] = lambda _e: None,
    ) -> DocsAccessResult:
        with self.audit.attempt(actor, "DOCS_ACCESS_GRANT", str(email), {"reason": reason} if reason else None):
            email = normalize_email(email)
            owned = self.ownership(email, earlier_owner)
            if owned.owner is not None and owned.owner != actor.tenant_id:
                return self._refused(actor, "DOCS_ACCESS_GRANT", email, NOT_OURS)
            group = cloudflare.group()
            present = group.has(email)
            if not present:
                cloudflare.update_group(group.with_email(email))
            event = DocsAccessGranted(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, reason=reason, already_present=present,
            )
            position = self.journal.extend_stream(docs_email_stream(email), event, owned.version)
        return DocsAccessResult(email, not present, position)

    def revoke(
        self, actor: Actor, cloudflare: CloudflareAccess, email: str,
        earlier_owner: Callable[[str], str | None] = lambda _e: None,
    ) -> DocsAccessResult:
        with self.audit.attempt(actor, "DOCS_ACCESS_REVOKE", str(email)):
            email = normalize_email(email)
            owned = self.ownership(email, earlier_owner)
            group = cloudflare.group()
            present = group.has(email)
            if owned.owner is not None and owned.owner != actor.tenant_id:
                return self._refused(actor, "DOCS_ACCESS_REVOKE", email, NOT_OURS)
            if owned.owner is None and present:
                return self._refused(actor, "DOCS_ACCESS_REVOKE", email, PREEXISTING)
            if present:
                cloudflare.update_group(group.without_email(email))
            event = DocsAccessRevoked(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, already_absent=not present,
            )
            position = self.journal.extend_stream(docs_email_stream(email), event, owned.version)
        return DocsAccessResult(email, present, position)

    def _refused(self, actor: Actor, action: str, email: str, why: str) -> DocsAccessResult:
        position = self.audit.record_access_attempt(actor.tenant_id, actor.org_id, actor.name, action, email, "denied", why)
        return DocsAccessResult(email, False, position, refused=why)
