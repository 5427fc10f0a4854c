"""Audit events (stored topic = class name; never rename one)."""
from __future__ import annotations

from typing import Any

from ledger.events import LedgerEvent


class AccessAttempted(LedgerEvent, frozen=True):
    action: str
    target: str
    outcome: str
    reason: str = ""
    details: dict[str, Any] | None = None  # what was attempted (names, scopes...), never a secret

