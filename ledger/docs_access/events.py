"""Docs access events (stored topic = class name; never rename one)."""
from __future__ import annotations

from ledger.events import LedgerEvent


class DocsAccessGranted(LedgerEvent, frozen=True):
    email: str
    reason: str = ""
    already_present: bool = False


class DocsAccessRevoked(LedgerEvent, frozen=True):
    email: str
    already_absent: bool = False

