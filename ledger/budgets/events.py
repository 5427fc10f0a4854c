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


# holds: reserve before a call, commit after it ---------------------------------------
class HeldAmount(msgspec.Struct, frozen=True, kw_only=True):
    """What one hold holds on one budget, in the budget's period when it was placed."""

    budget_id: str
    unit: str  # usd | credits
    amount: Decimal
    period: str
    period_start: datetime
    incarnation: str = ""  # the budget's created_at: a budget deleted and created again starts afresh
    guarded: bool = True  # a block budget: counted in its period stream (warn and downgrade ones are not)


class BudgetHoldPlaced(LedgerEvent, frozen=True):
    """Version 1 of the hold's stream (`hold_stream`): a reserve that fitted every block
    budget it falls under. `fingerprint` is the request's digest, so the same hold id with
    the same body is idempotent and with another body a conflict."""

    hold_id: str
    holds: tuple[HeldAmount, ...]
    expires_at: datetime
    ttl_seconds: int
    fingerprint: str
    team_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    estimated_cost_usd: Decimal | None = None
    estimated_credits: Decimal | None = None
    action: str | None = None  # warn | downgrade when an exceeded budget said so at placement
    downgrade_model: str | None = None
    client_id: str = ""


class BudgetHoldCommitted(LedgerEvent, frozen=True):
    """Version 2 of the hold's stream: the call's actual cost. `via` "call" (the commit
    endpoint: this event is the spend) or "usage" (a usage event carrying the hold id, appended
    in the same transaction: the usage is the spend, `event_id` names it)."""

    hold_id: str
    via: str
    holds: tuple[HeldAmount, ...]
    occurred_at: datetime
    actual_cost_usd: Decimal | None = None
    actual_credits: Decimal | None = None
    event_id: str | None = None
    team_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    app_id: str | None = None


class BudgetHoldReleased(LedgerEvent, frozen=True):
    """Version 2 of the hold's stream: the call was not made; nothing is spent."""

    hold_id: str
    holds: tuple[HeldAmount, ...]


class BudgetHoldExpired(LedgerEvent, frozen=True):
    """Version 2 of the hold's stream, appended by the expiry job. The hold stopped counting
    at `expires_at` already; this event only says so in the ledger."""

    hold_id: str
    holds: tuple[HeldAmount, ...]
    expires_at: datetime


class PeriodHold(msgspec.Struct, frozen=True, kw_only=True):
    """A hold as a budget period counts it: outstanding until `expires_at`, or committed
    (`expires_at` None) at its actual amount until the budget's spend includes it."""

    hold_id: str
    amount: Decimal
    expires_at: datetime | None = None


class BudgetPeriodHolds(LedgerEvent, frozen=True):
    """The next version of a (budget, period) holds stream (`period_stream`): what changed
    (`change` of `hold_id`) and the holds that count now. The stream's version is the
    concurrency token of reserves: a hold is placed only at version n+1 of the state it was
    decided on."""

    budget_id: str
    period: str
    period_start: datetime
    hold_id: str
    change: str  # placed | committed | released | expired
    outstanding: tuple[PeriodHold, ...] = ()
    committed: tuple[PeriodHold, ...] = ()
    # the budget_status position whose spend includes every commit dropped from `committed`:
    # a reserve that read spend at an older position must read it again
    spend_position: int = 0
