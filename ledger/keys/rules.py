"""Portal API keys: scopes, key material and how a presented key is read. Pure functions."""
from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.errors import Forbidden, Invalid
from ledger.store import stream_id

SCOPES = ("read:usage", "read:policies", "write:logs", "read:audit", "read:ledger", "usage:platform_wide")
DEFAULT_SCOPES = ("read:policies", "write:logs")
KEY_USE_RECORD_INTERVAL = timedelta(minutes=1)
MAX_KEY_EXPIRY_DAYS = 3650
KEY_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    org_id: str
    name: str
    key_prefix: str
    key_sha256: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    version: int
    created_by: str | None = None

    @property
    def creator_email(self) -> str | None:
        """The portal user who created the key (None: the admin key, or an earlier release)."""
        if self.created_by and self.created_by.startswith("user:"):
            return self.created_by[5:]
        return None


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str  # the full key, shown once
    position: int


def new_key_material() -> tuple[str, str]:
    """(prefix, full key): `ulk_<8-char prefix>_<secret>`."""
    prefix = "".join(secrets.choice(KEY_PREFIX_ALPHABET) for _ in range(8))
    return prefix, f"ulk_{prefix}_{secrets.token_urlsafe(32)}"


def key_id_for(prefix: str) -> str:
    """The key id follows from its prefix, so a presented key finds its stream directly."""
    return "key_" + stream_id("apikey-id", prefix).hex[:16]


def parse_key(presented: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not presented.startswith("ulk_") or len(presented) < 14 or presented[12] != "_":
        return None
    prefix = presented[4:12]
    return prefix if all(c in KEY_PREFIX_ALPHABET for c in prefix) else None


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# scopes a key may carry only while its creator holds the matching permission (or admin)
SCOPE_PERMISSIONS = {"read:audit": "read:audit", "read:ledger": "read:ledger", "usage:platform_wide": "usage:platform_wide"}
ALL_PERMISSIONS = frozenset({"admin", *SCOPE_PERMISSIONS.values()})  # what the admin key may grant


def scope_allowed(scope: str, permissions: frozenset[str] | tuple[str, ...]) -> bool:
    needed = SCOPE_PERMISSIONS.get(scope)
    return needed is None or needed in permissions or "admin" in permissions


def effective_scopes(scopes: tuple[str, ...], creator_permissions: tuple[str, ...] | None) -> tuple[str, ...]:
    """A key's scopes at use: those its creator may still grant (all when the creator is the
    admin key or unknown to this release)."""
    if creator_permissions is None:
        return scopes
    return tuple(s for s in scopes if scope_allowed(s, creator_permissions))


def check_scopes(chosen: list[str], may_grant: frozenset[str]) -> list[str]:
    """The chosen scopes in canonical order; 400 for unknown ones, 403 SCOPE_NOT_ALLOWED
    for a scope whose permission the creator (`may_grant`: its permissions) lacks."""
    unknown = sorted(set(chosen) - set(SCOPES))
    if unknown:
        raise Invalid(
            "INVALID_SCOPES", f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}", field="scopes"
        )
    refused = [s for s in SCOPES if s in chosen and not scope_allowed(s, may_grant)]
    if refused:
        raise Forbidden(
            "SCOPE_NOT_ALLOWED",
            f"Granting {', '.join(refused)} needs the matching permission or admin",
            scopes=refused,
        )
    return sorted(set(chosen), key=SCOPES.index)


def check_expiry_days(expires_in_days: int | None) -> None:
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_KEY_EXPIRY_DAYS:
        raise Invalid(
            "VALIDATION_FAILED", f"expires_in_days must be between 1 and {MAX_KEY_EXPIRY_DAYS}", field="expires_in_days"
        )
