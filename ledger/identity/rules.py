"""Tenants, organizations, agent clients, portal users and named entities: ids, secrets,
e-mail addresses and permissions, and how each is checked. Pure functions and plain state."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import Invalid

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# ids chosen by callers for things they own (usage events, nodes, policies)
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PERMISSIONS = (
    "permission.billing.manage", "permission.tenant.superuser", "usage:platform_wide", "read:audit", "read:ledger", "admin",
)
ENTITY_TYPES = ("app", "user", "agent")


def check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise Invalid(
            "VALIDATION_FAILED",
            f"{kind} must be 1-64 characters of letters, digits, '.', '_' or '-'",
            field=kind,
        )
    return value


def new_client_id() -> str:
    return "cli_" + secrets.token_hex(8)


def new_client_secret() -> str:
    return "cs_" + secrets.token_urlsafe(32)


def hash_secret(secret: str, pepper: str) -> str:
    """HMAC-SHA-256 with a server pepper: fast to check, useless without the pepper."""
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str, pepper: str) -> bool:
    return hmac.compare_digest(hash_secret(secret, pepper), stored_hash)


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not EMAIL.match(email):
        raise Invalid("VALIDATION_FAILED", "email is not a valid e-mail address", field="email")
    return email


def check_permissions(permissions: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise Invalid(
            "INVALID_PERMISSIONS",
            f"Unknown permission(s): {', '.join(unknown)}; known: {', '.join(PERMISSIONS)}",
            field="permissions",
        )
    return sorted(set(permissions))


def check_password(password: Any) -> None:
    if not isinstance(password, str) or not 8 <= len(password) <= 1024:
        raise Invalid("VALIDATION_FAILED", "password must be 8 to 1024 characters", field="password")


def check_entity(entity_type: str, entity_id: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise Invalid("VALIDATION_FAILED", f"entity_type must be one of {', '.join(ENTITY_TYPES)}", field="entity_type")
    if not entity_id or len(entity_id) > 128:
        raise Invalid("VALIDATION_FAILED", "entity_id must be 1-128 characters", field="entity_id")


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant_id: str
    org_id: str
    name: str
    secret_hash: str
    disabled: bool
    version: int


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    tenant_id: str
    org_id: str
    name: str
    position: int


@dataclass(frozen=True)
class User:
    email: str
    tenant_id: str
    org_id: str
    password_hash: str
    permissions: tuple[str, ...]
    created_at: datetime
    version: int
    disabled: bool = False
    sessions_since: int = 0  # sessions that began before this user stream version have ended

    def public(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "tenant_id": self.tenant_id,
            "org_id": self.org_id,
            "permissions": list(self.permissions),
        }


@dataclass(frozen=True)
class Session:
    token: str
    session_id: str
    user: User
    expires_at: datetime
    position: int = 0
