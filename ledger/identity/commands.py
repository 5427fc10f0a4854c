"""Identity commands: tenants, organizations, agent clients, portal users and their
sessions, and named entities (apps, users, agents).

Portal users and sessions are in ledger/identity/users.py (the base class).

Each command folds the state of one stream from the ledger (so it is never behind) and
appends to a deterministic stream: registering the same thing twice is a stream conflict
and answers 409.
"""
from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from ledger.errors import NotFound
from ledger.identity.events import (
    ClientDisabled,
    ClientRegistered,
    ClientSecretRotated,
    EntityRegistered,
    OrganizationCreated,
    TenantCreated,
)
from ledger.identity.rules import (
    Client,
    NewClient,
    check_entity,
    check_id,
    hash_secret,
    new_client_id,
    new_client_secret,
)
from ledger.identity.users import UserAccounts, session_stream, user_stream
from ledger.store import stream_id


def tenant_stream(tenant_id: str) -> UUID:
    return stream_id("tenant", tenant_id)


def org_stream(tenant_id: str, org_id: str) -> UUID:
    return stream_id("org", tenant_id, org_id)


def client_stream(client_id: str) -> UUID:
    return stream_id("client", client_id)


def entity_stream(tenant_id: str, entity_type: str, entity_id: str) -> UUID:
    return stream_id("entity", tenant_id, entity_type, entity_id)


class IdentityCommands(UserAccounts):
    # tenants and organizations -----------------------------------------------------------
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

    def require_tenant(self, tenant_id: str) -> None:
        if not self.journal.stream(tenant_stream(tenant_id)):
            raise NotFound("TENANT_NOT_FOUND", f"Tenant {tenant_id} not found")

    def org_exists(self, tenant_id: str, org_id: str) -> bool:
        return bool(self.journal.stream(org_stream(tenant_id, org_id)))

    def require_org(self, tenant_id: str, org_id: str) -> None:
        self.require_tenant(tenant_id)
        if not self.org_exists(tenant_id, org_id):
            raise NotFound("ORG_NOT_FOUND", f"Organization {org_id} not found")

    # agent clients -----------------------------------------------------------------------
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
            secret_hash=self._seal(hash_secret(secret, self.settings.secret_pepper), "secret_hash"),
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
            secret_hash=self._seal(hash_secret(secret, self.settings.secret_pepper), "secret_hash"),
        )
        position = self.journal.extend_stream(client_stream(client_id), event, client.version)
        return NewClient(client_id, secret, client.tenant_id, client.org_id, client.name, position)

    def disable_client(self, client_id: str, actor: str) -> int:
        client = self.require_client(client_id)
        event = ClientDisabled(
            tenant_id=client.tenant_id, org_id=client.org_id, recorded_at=self.now, actor=actor, client_id=client_id
        )
        return self.journal.extend_stream(client_stream(client_id), event, client.version)

    def find_client(self, client_id: str) -> Client | None:
        """The client as its event stream says it is now (None when unknown)."""
        client: Client | None = None
        for recorded in self.journal.stream(client_stream(client_id)):
            event = recorded.event
            if isinstance(event, ClientRegistered):
                secret_hash = self._unseal(event.secret_hash, "secret_hash")
                client = Client(event.client_id, event.tenant_id, event.org_id, event.name, secret_hash, False, recorded.version)
            elif client is not None and isinstance(event, ClientSecretRotated):
                client = replace(client, secret_hash=self._unseal(event.secret_hash, "secret_hash"), version=recorded.version)
            elif client is not None and isinstance(event, ClientDisabled):
                client = replace(client, disabled=True, version=recorded.version)
        return client

    def require_client(self, client_id: str) -> Client:
        client = self.find_client(client_id)
        if client is None:
            raise NotFound("CLIENT_NOT_FOUND", f"Client {client_id} not found")
        return client

    # named entities ----------------------------------------------------------------------
    def register_entity(
        self,
        tenant_id: str,
        entity_id: str,
        entity_type: str,
        name: str,
        actor: str,
        slug: str | None = None,
        owner_id: str | None = None,
        display_name: str | None = None,
    ) -> int:
        """EntityRegistered; registering the same (tenant, type, id) twice → 409 ENTITY_EXISTS."""
        check_entity(entity_type, entity_id)
        self.require_tenant(tenant_id)
        event = EntityRegistered(
            tenant_id=tenant_id,
            recorded_at=self.now,
            actor=actor,
            entity_id=entity_id,
            entity_type=entity_type,
            name=name,
            slug=slug,
            owner_id=owner_id,
            display_name=display_name,
        )
        return self.journal.start_stream(
            entity_stream(tenant_id, entity_type, entity_id),
            event,
            "ENTITY_EXISTS",
            f"The {entity_type} {entity_id} is already registered",
        )


__all__ = ["IdentityCommands", "session_stream", "user_stream"]
