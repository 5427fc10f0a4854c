"""Policies events (stored topic = class name; never rename one)."""
from __future__ import annotations

from typing import Any

from ledger.events import LedgerEvent


class PolicyCreated(LedgerEvent, frozen=True):
    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]


class PolicyUpdated(LedgerEvent, frozen=True):
    """Carries the whole new state (and which fields changed) so projections stay pure."""

    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]
    changed: list[str]


class PolicyDeleted(LedgerEvent, frozen=True):
    policy_id: str
    name: str

