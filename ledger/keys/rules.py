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


def check_scopes(chosen: list[str], may_grant: frozenset[str]) -> list[str]:
    """The chosen scopes in canonical order; 400 for unknown ones, 403 for usage:platform_wide
    unless the caller holds it."""
    unknown = sorted(set(chosen) - set(SCOPES))
    if unknown:
        raise Invalid(
            "INVALID_SCOPES", f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}", field="scopes"
        )
    if "usage:platform_wide" in chosen and "usage:platform_wide" not in may_grant:
        raise Forbidden("PERMISSION_DENIED", "Only holders of usage:platform_wide may grant that scope")
    return sorted(set(chosen), key=SCOPES.index)


def check_expiry_days(expires_in_days: int | None) -> None:
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_KEY_EXPIRY_DAYS:
        raise Invalid(
            "VALIDATION_FAILED", f"expires_in_days must be between 1 and {MAX_KEY_EXPIRY_DAYS}", field="expires_in_days"
        )
