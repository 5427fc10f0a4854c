"""Portal API keys events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime

from ledger.events import LedgerEvent


class ApiKeyCreated(LedgerEvent, frozen=True):
    key_id: str
    name: str
    key_prefix: str
    key_sha256: str
    scopes: list[str]
    expires_at: datetime | None = None
    created_by: str | None = None  # "user:<email>" or "admin"; None for keys of earlier releases


class ApiKeyRevoked(LedgerEvent, frozen=True):
    key_id: str
    name: str
    scopes: list[str]


class ApiKeyUsed(LedgerEvent, frozen=True):
    key_id: str

