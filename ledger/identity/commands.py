"""Identity commands: tenants, organizations, agent clients, portal users and their
sessions, and named entities (apps, users, agents).

Each command folds the state of one stream from the ledger (so it is never behind) and
appends to a deterministic stream: registering the same thing twice is a stream conflict
and answers 409.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.errors import NotFound, Unauthenticated
from ledger.identity.events import (
    ClientDisabled,
    ClientRegistered,
    ClientSecretRotated,
    EntityRegistered,
    OrganizationCreated,
    TenantCreated,
    UserCreated,
    UserLoggedIn,
    UserLoggedOut,
    UserPermissionsChanged,
)
from ledger.identity.credentials import seal, unseal
from ledger.identity.passwords import dummy_hash, hash_password, password_matches
from ledger.identity.rules import (
    Client,
    NewClient,
    Session,
    User,
    check_entity,
    check_id,
    check_password,
    check_permissions,
    hash_secret,
    new_client_id,
    new_client_secret,
    normalize_email,
)
from ledger.journal import Journal
from ledger.settings import Settings
from ledger.store import stream_id


def tenant_stream(tenant_id: str) -> UUID:
    return stream_id("tenant", tenant_id)


def org_stream(tenant_id: str, org_id: str) -> UUID:
    return stream_id("org", tenant_id, org_id)


def client_stream(client_id: str) -> UUID:
    return stream_id("client", client_id)


def user_stream(email: str) -> UUID:
    return stream_id("user", email)


def session_stream(token: str) -> UUID:
    return stream_id("session", hashlib.sha256(token.encode()).hexdigest())


def entity_stream(tenant_id: str, entity_type: str, entity_id: str) -> UUID:
    return stream_id("entity", tenant_id, entity_type, entity_id)


class IdentityCommands:
    def __init__(self, journal: Journal, settings: Settings, audit: AuditCommands):
        self.journal = journal
        self.settings = settings
        self.audit = audit

    @property
    def now(self) -> datetime:
        return self.journal.now

    def _seal(self, value: str, field: str) -> str:
        return seal(value, self.settings.secret_pepper, field)

    def _unseal(self, stored: str, field: str) -> str:
        return unseal(stored, self.settings.secret_pepper, field)

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

    # portal users ------------------------------------------------------------------------
    def create_user(
        self, tenant_id: str, org_id: str, email: str, password: str, permissions: list[str], actor: str
    ) -> tuple[User, int]:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "USER_CREATE", str(email), {"permissions": list(permissions)}):
            email = normalize_email(email)
            self.require_org(tenant_id, org_id)
            permissions = check_permissions(permissions)
            check_password(password)
            event = UserCreated(
                tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor,
                email=email, password_hash=self._seal(hash_password(password), "password_hash"), permissions=permissions,
            )
            position = self.journal.start_stream(user_stream(email), event, "USER_EXISTS", f"User {email} already exists")
        return _user_from(event, 1), position

    def change_permissions(self, email: str, permissions: list[str], actor: Actor, tenant_id: str | None = None) -> tuple[User, int]:
        """Replace a user's permissions. With tenant_id, a user of another tenant is unknown (404)."""
        with self.audit.attempt(actor, "USER_PERMISSIONS_CHANGE", str(email), {"permissions": list(permissions)}):
            user = self.find_user(email)
            if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
                raise NotFound("USER_NOT_FOUND", f"User {email} not found")
            permissions = check_permissions(permissions)
            event = UserPermissionsChanged(
                tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name,
                email=user.email, permissions=permissions, previous=list(user.permissions),
            )
            position = self.journal.extend_stream(user_stream(user.email), event, user.version)
        return replace(user, permissions=tuple(permissions), version=user.version + 1), position

    def find_user(self, email: str) -> User | None:
        email = (email or "").strip().lower()
        if not email or len(email) > 254:
            return None
        user: User | None = None
        for recorded in self.journal.stream(user_stream(email)):
            event = recorded.event
            if isinstance(event, UserCreated):
                user = _user_from(event, recorded.version)
            elif user is not None and isinstance(event, UserPermissionsChanged):
                user = replace(user, permissions=tuple(event.permissions), version=recorded.version)
        return user

    # sessions ----------------------------------------------------------------------------
    def login(self, email: str, password: str) -> Session:
        """A new session for the right password; 401 INVALID_CREDENTIALS otherwise (the same
        answer, after the same work, whether or not the user exists)."""
        user = self.find_user(email) if isinstance(email, str) else None
        stored = self._unseal(user.password_hash, "password_hash") if user else dummy_hash()
        matches = password_matches(password if isinstance(password, str) else "", stored)
        if user is None or not matches:
            if user is not None:
                self.audit.record_access_attempt(
                    user.tenant_id, user.org_id, f"user:{user.email}", "USER_LOGIN", user.email, "failure", "wrong password"
                )
            raise Unauthenticated("INVALID_CREDENTIALS", "Unknown e-mail or wrong password")
        token = secrets.token_urlsafe(32)
        session_id = "ses_" + secrets.token_hex(8)
        expires_at = self.now + timedelta(hours=self.settings.session_ttl_hours)
        event = UserLoggedIn(
            tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=f"user:{user.email}",
            email=user.email, session_id=session_id, expires_at=expires_at,
        )
        position = self.journal.start_stream(session_stream(token), event, "SESSION_EXISTS", "Session token already in use; retry")
        return Session(token, session_id, user, expires_at, position)

    def find_session(self, token: str) -> Session | None:
        """The live session for a token (not logged out, not expired), with the user's
        current permissions; None otherwise."""
        if not token or len(token) > 256:
            return None
        started: UserLoggedIn | None = None
        for recorded in self.journal.stream(session_stream(token)):
            if isinstance(recorded.event, UserLoggedIn):
                started = recorded.event
            elif isinstance(recorded.event, UserLoggedOut):
                return None
        if started is None or self.now >= started.expires_at:
            return None
        user = self.find_user(started.email)
        if user is None:
            return None
        return Session(token, started.session_id, user, started.expires_at)

    def logout(self, session: Session) -> int:
        event = UserLoggedOut(
            tenant_id=session.user.tenant_id, org_id=session.user.org_id, recorded_at=self.now,
            actor=f"user:{session.user.email}", email=session.user.email, session_id=session.session_id,
        )
        position = self.journal.try_append(session_stream(session.token), event, 1)
        if position is None:
            raise Unauthenticated("UNAUTHENTICATED", "The session has already ended")
        return position

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


def _user_from(event: UserCreated, version: int) -> User:
    return User(
        event.email, event.tenant_id, event.org_id, event.password_hash,
        tuple(event.permissions), event.recorded_at, version,
    )
