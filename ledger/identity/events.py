"""Identity events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime

from ledger.events import LedgerEvent


class TenantCreated(LedgerEvent, frozen=True):
    name: str


class TenantMoved(LedgerEvent, frozen=True):
    """`usage-ledger move-tenant` copied the tenant's events to another ledger cluster and
    switched the directory; recorded on both sides (the source keeps its sealed history)."""

    from_cluster: str
    to_cluster: str
    events_copied: int
    source_through: int  # the source position the copy reached


class OrganizationCreated(LedgerEvent, frozen=True):
    name: str


class ClientRegistered(LedgerEvent, frozen=True):
    client_id: str
    name: str
    secret_hash: str


class ClientSecretRotated(LedgerEvent, frozen=True):
    client_id: str
    secret_hash: str


class ClientDisabled(LedgerEvent, frozen=True):
    client_id: str


class UserCreated(LedgerEvent, frozen=True):
    email: str
    password_hash: str
    permissions: list[str]


class UserPermissionsChanged(LedgerEvent, frozen=True):
    email: str
    permissions: list[str]
    previous: list[str]


class UserLoggedIn(LedgerEvent, frozen=True):
    """A session began. Its stream is derived from a hash of the session token; the event
    holds only a public session id, never the token or its hash."""

    email: str
    session_id: str
    expires_at: datetime
    user_version: int = 0  # the user stream's version at login (sessions before a password change or disabling end)


class UserLoggedOut(LedgerEvent, frozen=True):
    email: str
    session_id: str


class EntityRegistered(LedgerEvent, frozen=True):
    """An app, user or agent of a tenant, so that reports show names rather than ids."""

    entity_id: str
    entity_type: str  # app | user | agent
    name: str
    slug: str | None = None
    owner_id: str | None = None
    display_name: str | None = None



class UserDisabled(LedgerEvent, frozen=True):
    """Every session of the user ends; every key the user created answers 401."""

    email: str


class UserEnabled(LedgerEvent, frozen=True):
    email: str


class UserPasswordChanged(LedgerEvent, frozen=True):
    """A new password (an admin's reset or the user's own change); every session ends.
    The hash is sealed (ledger/identity/credentials.py)."""

    email: str
    password_hash: str
