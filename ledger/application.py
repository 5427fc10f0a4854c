"""The ledger application: commands that check their rules and append events.

Handlers call these; nothing else appends. Each command returns the ledger position it
reached so that callers can read their own writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from dataclasses import replace
from uuid import UUID

from ledger.errors import NotFound
from ledger.audit.events import AccessAttempted
from ledger.events import LedgerEvent
from ledger.identity.events import (
    ClientDisabled,
    ClientRegistered,
    ClientSecretRotated,
    OrganizationCreated,
    TenantCreated,
)
from ledger.identity.rules import (
    Client,
    check_id,
    hash_secret,
    new_client_id,
    new_client_secret,
)
from ledger.pricing.credits import CreditRateBook
from ledger.usage.commands import UsageCommands, usage_stream  # noqa: F401 (usage_stream is re-exported)
from ledger.pricing.prices import PriceBook
from ledger.settings import Settings
from ledger.journal import Journal
from ledger.store import LedgerStore, stream_id


def tenant_stream(tenant_id: str) -> UUID:
    return stream_id("tenant", tenant_id)


def org_stream(tenant_id: str, org_id: str) -> UUID:
    return stream_id("org", tenant_id, org_id)


def client_stream(client_id: str) -> UUID:
    return stream_id("client", client_id)


@dataclass(frozen=True)
class Actor:
    """Who is acting, within which tenant and organization."""

    tenant_id: str
    org_id: str
    name: str  # e.g. "client:cli_123", "admin", "user:a@b.c"
    client_id: str = ""


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    tenant_id: str
    org_id: str
    name: str
    position: int


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        settings: Settings,
        price_book: Callable[[], PriceBook] = PriceBook,
        credit_rates: Callable[[], CreditRateBook] = CreditRateBook,
    ):
        self.store = store
        self.settings = settings
        self.journal = Journal(store, settings.clock)
        self.price_book = price_book
        self.credit_rates = credit_rates
        self.usage = UsageCommands(self.journal, settings, price_book, credit_rates)

    @property
    def now(self) -> datetime:
        return self.settings.clock.now()

    # identity -----------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, name: str, actor: str) -> int:
        check_id("tenant_id", tenant_id)
        event = TenantCreated(tenant_id=tenant_id, recorded_at=self.now, actor=actor, name=name)
        return self.journal.start_stream(tenant_stream(tenant_id), event, "TENANT_EXISTS", f"Tenant {tenant_id} already exists")

    def create_org(self, tenant_id: str, org_id: str, name: str, actor: str) -> int:
        check_id("org_id", org_id)
        self.require_tenant(tenant_id)
        event = OrganizationCreated(
            tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, name=name
        )
        return self.journal.start_stream(
            org_stream(tenant_id, org_id), event, "ORG_EXISTS", f"Organization {org_id} already exists"
        )

    def register_client(
        self, tenant_id: str, org_id: str, name: str, actor: str, client_id: str = "", secret: str = ""
    ) -> NewClient:
        """Register an agent client. Ids and secrets are generated unless given (demo, CLI)."""
        self.require_org(tenant_id, org_id)
        client_id = check_id("client_id", client_id) if client_id else new_client_id()
        secret = secret or new_client_secret()
        event = ClientRegistered(
            tenant_id=tenant_id,
            org_id=org_id,
            recorded_at=self.now,
            actor=actor,
            client_id=client_id,
            name=name,
            secret_hash=hash_secret(secret, self.settings.secret_pepper),
        )
        position = self.journal.start_stream(client_stream(client_id), event, "CLIENT_EXISTS", f"Client {client_id} already exists")
        return NewClient(client_id, secret, tenant_id, org_id, name, position)

    def rotate_client_secret(self, client_id: str, actor: str) -> NewClient:
        client = self.require_client(client_id)
        secret = new_client_secret()
        event = ClientSecretRotated(
            tenant_id=client.tenant_id,
            org_id=client.org_id,
            recorded_at=self.now,
            actor=actor,
            client_id=client_id,
            secret_hash=hash_secret(secret, self.settings.secret_pepper),
        )
        position = self.journal.extend_stream(client_stream(client_id), event, client.version)
        return NewClient(client_id, secret, client.tenant_id, client.org_id, client.name, position)

    def disable_client(self, client_id: str, actor: str) -> int:
        client = self.require_client(client_id)
        event = ClientDisabled(
            tenant_id=client.tenant_id, org_id=client.org_id, recorded_at=self.now, actor=actor, client_id=client_id
        )
        return self.journal.extend_stream(client_stream(client_id), event, client.version)

    def require_tenant(self, tenant_id: str) -> None:
        if not self.store.stream(tenant_stream(tenant_id)):
            raise NotFound("TENANT_NOT_FOUND", f"Tenant {tenant_id} not found")

    def org_exists(self, tenant_id: str, org_id: str) -> bool:
        return bool(self.store.stream(org_stream(tenant_id, org_id)))

    def require_org(self, tenant_id: str, org_id: str) -> None:
        self.require_tenant(tenant_id)
        if not self.org_exists(tenant_id, org_id):
            raise NotFound("ORG_NOT_FOUND", f"Organization {org_id} not found")

    def find_client(self, client_id: str) -> Client | None:
        """The client as its event stream says it is now (None when unknown)."""
        client: Client | None = None
        for recorded in self.store.stream(client_stream(client_id)):
            event = recorded.event
            if isinstance(event, ClientRegistered):
                client = Client(event.client_id, event.tenant_id, event.org_id, event.name, event.secret_hash, False, recorded.version)
            elif client is not None and isinstance(event, ClientSecretRotated):
                client = replace(client, secret_hash=event.secret_hash, version=recorded.version)
            elif client is not None and isinstance(event, ClientDisabled):
                client = replace(client, disabled=True, version=recorded.version)
        return client

    def require_client(self, client_id: str) -> Client:
        client = self.find_client(client_id)
        if client is None:
            raise NotFound("CLIENT_NOT_FOUND", f"Client {client_id} not found")
        return client

    # audit --------------------------------------------------------------------------
    def record_access_attempt(
        self,
        tenant_id: str,
        org_id: str,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        reason: str = "",
        details: dict | None = None,
    ) -> int:
        event = AccessAttempted(
            tenant_id=tenant_id,
            org_id=org_id,
            recorded_at=self.now,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            reason=reason,
            details=details,
        )
        return self.journal.record_fact(event)

    # cost controls (ledger/budgets/commands.py) ---------------------------------------------
    @property
    def cost_controls(self):
        from ledger.budgets.commands import CostControls

        return CostControls(self)
