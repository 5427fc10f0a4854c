"""Budgets events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from ledger.events import LedgerEvent


class BudgetTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a budget is: whose spend it limits, by how much, per which period, and what then."""

    budget_id: str
    name: str
    scope: str  # organization | team | agent | workflow | user | app
    scope_id: str | None
    unit: str  # usd | credits
    limit: Decimal
    period: str  # daily | weekly | monthly | quarterly | yearly
    on_exceed: str  # warn | block | downgrade
    alert_thresholds: tuple[Decimal, ...]
    enabled: bool = True
    webhook_url: str | None = None
    downgrade_model: str | None = None


class BudgetCreated(LedgerEvent, frozen=True):
    """actor: the author (X-User-ID) or the client; client_id: the credentials used."""

    budget: BudgetTerms
    client_id: str = ""


class BudgetUpdated(LedgerEvent, frozen=True):
    budget: BudgetTerms
    previous: BudgetTerms
    changed: tuple[str, ...]
    client_id: str = ""


class BudgetDeleted(LedgerEvent, frozen=True):
    budget_id: str
    name: str
    client_id: str = ""


class BudgetThresholdCrossed(LedgerEvent, frozen=True):
    """Raised once per budget, period and threshold (its stream id says which)."""

    alert_id: str
    budget_id: str
    budget_name: str
    period: str
    period_start: datetime
    period_end: datetime
    unit: str
    threshold: Decimal
    percentage: Decimal
    used: Decimal
    limit: Decimal
    crossed_at: datetime
    webhook_url: str | None = None
    # the budget incarnation: 0 for a budget id's first creation, else the position of the
    # BudgetCreated that recreated it (a recreated budget raises its own alerts)
    incarnation: int = 0


class BudgetAlertDelivered(LedgerEvent, frozen=True):
    alert_id: str
    budget_id: str
    attempt: int
    status_code: int


class BudgetAlertDeliveryFailed(LedgerEvent, frozen=True):
    """One failed attempt; `next_attempt_at` is None when no retry is left (final)."""

    alert_id: str
    budget_id: str
    attempt: int
    error: str
    status_code: int | None = None
    next_attempt_at: datetime | None = None



class BudgetWebhookSecretRotated(LedgerEvent, frozen=True):
    """The budget's webhook signing secret was replaced (the secret itself is never in an event)."""

    budget_id: str
    client_id: str = ""
