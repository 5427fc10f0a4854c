"""Budget hold rules as pure functions: what a hold is worth to a budget period, when it
stops counting, and how a period's holds change. No I/O; the hold commands and the
budget_status read model ask these functions.

A budget period's holds are two lists (`PeriodState`):
- outstanding holds count at their amount while `now < expires_at`; at `expires_at` they
  stop counting, whether or not an expiry event was appended yet;
- committed holds count at their actual amount until the budget's recorded spend includes
  their spend (the read model has passed it: `counted`), then they are dropped.

What a reserve decides on, per budget: recorded spend (read model at position P) + committed
holds not yet counted at P + outstanding holds + the estimate ≤ limit (block budgets).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Collection

import msgspec

from ledger.budgets.events import BudgetHoldCommitted, BudgetPeriodHolds, HeldAmount, PeriodHold
from ledger.budgets.rules import as_utc

MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 3600
DEFAULT_TTL_SECONDS = 300
STATES = ("held", "committed", "released", "expired")  # what GET /budgets/holds/{id} answers


def counts(expires_at: datetime | None, now: datetime) -> bool:
    """Whether an outstanding hold still counts: strictly before its expiry instant."""
    return expires_at is None or as_utc(now) < as_utc(expires_at)


def expiry(now: datetime, ttl_seconds: int) -> datetime:
    return as_utc(now) + timedelta(seconds=ttl_seconds)


def fingerprint(request: dict) -> str:
    """The digest of a reserve request (sorted keys, values as text), for idempotent hold ids."""
    return hashlib.sha256(msgspec.json.encode({k: None if v is None else str(v) for k, v in sorted(request.items())})).hexdigest()


@dataclass(frozen=True)
class PeriodState:
    """The holds of one (budget, period) stream at `version` (0: no hold yet)."""

    version: int = 0
    outstanding: tuple[PeriodHold, ...] = ()
    committed: tuple[PeriodHold, ...] = ()
    spend_position: int = 0  # spend read at an older position misses commits dropped here

    @classmethod
    def of(cls, last: BudgetPeriodHolds | None, version: int) -> "PeriodState":
        if last is None:
            return cls()
        return cls(version, last.outstanding, last.committed, last.spend_position)

    def held(self, now: datetime) -> Decimal:
        """The outstanding holds that still count at `now`."""
        return sum((h.amount for h in self.outstanding if counts(h.expires_at, now)), Decimal(0))

    def pending(self, counted: Collection[str]) -> Decimal:
        """Committed holds whose spend the read model does not include yet."""
        return sum((h.amount for h in self.committed if h.hold_id not in counted), Decimal(0))

    def pruned(self, now: datetime, counted: Collection[str], spend_position: int = 0) -> "PeriodState":
        """Without expired holds and without commits the recorded spend at `spend_position`
        includes (`counted`)."""
        return PeriodState(
            self.version,
            tuple(h for h in self.outstanding if counts(h.expires_at, now)),
            tuple(h for h in self.committed if h.hold_id not in counted),
            max(self.spend_position, spend_position) if counted else self.spend_position,
        )

    def placed(self, hold: PeriodHold) -> "PeriodState":
        return PeriodState(self.version, (*self.outstanding, hold), self.committed, self.spend_position)

    def settled(self, hold_id: str, actual: Decimal | None) -> "PeriodState":
        """The hold leaves the outstanding list; with an actual amount it is committed."""
        outstanding = tuple(h for h in self.outstanding if h.hold_id != hold_id)
        committed = self.committed
        if actual is not None:
            committed = (*tuple(h for h in committed if h.hold_id != hold_id), PeriodHold(hold_id=hold_id, amount=actual))
        return PeriodState(self.version, outstanding, committed, self.spend_position)


def hold_state(terminal: str | None, expires_at: datetime, now: datetime) -> str:
    """held | committed | released | expired: a held hold past its expiry is expired at
    once, before any expiry event."""
    if terminal is not None:
        return terminal
    return "held" if counts(expires_at, now) else "expired"


def available(limit: Decimal | int, used: Decimal | int, held: Decimal | int) -> Decimal | int:
    """limit − used − held, never below zero."""
    return max(limit - used - held, 0)



def actual_of(committed: BudgetHoldCommitted, held: HeldAmount) -> Decimal:
    """A commit's actual amount in a held budget's unit (0 when the commit names none)."""
    value = committed.actual_cost_usd if held.unit == "usd" else committed.actual_credits
    return value if value is not None else Decimal(0)
