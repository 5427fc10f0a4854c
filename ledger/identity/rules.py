"""Tenants, organizations and agent clients: ids, secrets and how they are checked."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ledger.errors import Invalid

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant_id: str
    org_id: str
    name: str
    secret_hash: str
    disabled: bool
    version: int
