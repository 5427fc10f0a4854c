"""Budget rules as pure functions: periods, scopes, percentages, exceeded, warning,
threshold crossed and the pre-flight decision. No I/O; every caller (the check, the status
endpoint, the threshold projector, the alerts job) asks these functions.

Amounts: `used`, `limit` and an estimate are numbers in the budget's unit (USD or credits)
on one scale, Decimal or integer nanos alike; the rules only compare and divide them.

The boundaries, one definition each:
- exceeded: `used >= limit`. A budget at exactly 100 % is exceeded.
- the check refuses a block budget when it is exceeded, or when the estimate does not fit:
  `used >= limit or used + estimate > limit`. A request that fits exactly (`used + estimate
  == limit`, estimate > 0) is allowed; the next one is refused.
- threshold crossed: `used * 100 >= threshold * limit` (the percentage reached the
  threshold), so the 100 % threshold is crossed exactly when the budget is exceeded.
- warning: not exceeded, and some threshold below 100 % is crossed. Thresholds of 100 %
  and above say nothing about a warning; a budget without thresholds is never in warning.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable, Protocol, Sequence

SCOPES = ("organization", "team", "agent", "workflow", "user", "app")
PERIODS = ("daily", "weekly", "monthly", "quarterly", "yearly")
ON_EXCEED = ("warn", "block", "downgrade")
UNITS = ("usd", "credits")
# the attribute of a usage (or of a check request) that each scope's scope_id is compared with
SCOPE_ATTRIBUTES = {"team": "team_id", "agent": "agent_id", "workflow": "workflow_id", "user": "user_id", "app": "app_id"}
# how restrictive each action is: the most restrictive exceeded budget decides
SEVERITY = {"warn": 0, "downgrade": 1, "block": 2}
HUNDRED = Decimal(100)
_CENT = Decimal("0.01")

Amount = Decimal | int


# periods ------------------------------------------------------------------------------
def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (as read models store it)."""
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def add_months(first_of_month: datetime, months: int) -> datetime:
    """The first of the month `months` later (or earlier, when negative)."""
    index = first_of_month.month - 1 + months
    return first_of_month.replace(year=first_of_month.year + index // 12, month=index % 12 + 1)


def period_bounds(period: str, moment: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the UTC period containing `moment`; weeks start on Monday (ISO)."""
    day = as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "monthly":
        start = day.replace(day=1)
        return start, add_months(start, 1)
    if period == "quarterly":
        start = day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
        return start, add_months(start, 3)
    if period == "yearly":
        start = day.replace(day=1, month=1)
        return start, start.replace(year=start.year + 1)
    raise ValueError(f"unknown period {period!r}")


def period_starts(moment: datetime) -> dict[str, datetime]:
    """The start of every period kind containing `moment` (aware UTC)."""
    return {period: period_bounds(period, moment)[0] for period in PERIODS}


# scopes -------------------------------------------------------------------------------
class Scoped(Protocol):
    """A usage or a check request: who spent (each attribute may be empty)."""

    team_id: str | None
    agent_id: str | None
    workflow_id: str | None
    user_id: str | None
    app_id: str | None


def usage_scopes(usage: Scoped) -> list[tuple[str, str]]:
    """The (scope, scope_id) pairs whose budgets a usage counts against: always the
    organization (scope_id ''), plus each scope whose attribute the usage carries."""
    pairs = [("organization", "")]
    for scope, attribute in SCOPE_ATTRIBUTES.items():
        value = getattr(usage, attribute)
        if value:
            pairs.append((scope, value))
    return pairs


# spend against a limit ----------------------------------------------------------------
def percentage(used: Amount, limit: Amount) -> Decimal:
    """used / limit in percent, unrounded; 0 for a zero limit."""
    return Decimal(used) * HUNDRED / Decimal(limit) if limit else Decimal(0)


def rounded_percentage(used: Amount, limit: Amount) -> Decimal:
    """The percentage as answers show it: 2 decimals, rounded half-even."""
    return percentage(used, limit).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def exceeded(used: Amount, limit: Amount) -> bool:
    return used >= limit


def refuses(used: Amount, limit: Amount, estimate: Amount = 0) -> bool:
    """Whether a request estimated at `estimate` does not fit: the budget is exceeded
    already, or the estimate would take it over the limit."""
    return exceeded(used, limit) or used + estimate > limit


def threshold_crossed(used: Amount, limit: Amount, threshold: Decimal) -> bool:
    """Whether spend reached `threshold` percent of the limit (exact, no rounding)."""
    return used * 100 >= threshold * limit


def thresholds_crossed(used: Amount, limit: Amount, thresholds: Iterable[Decimal]) -> list[Decimal]:
    return [t for t in thresholds if threshold_crossed(used, limit, t)]


def budget_status(used: Amount, limit: Amount, thresholds: Iterable[Decimal]) -> str:
    """ok | warning | exceeded (see the module docstring for the boundaries)."""
    if exceeded(used, limit):
        return "exceeded"
    if any(threshold_crossed(used, limit, t) for t in thresholds if t < HUNDRED):
        return "warning"
    return "ok"


# the pre-flight decision --------------------------------------------------------------
@dataclass(frozen=True)
class BudgetUse:
    """An enabled budget a request falls under, with its spend in the current period."""

    budget_id: str
    name: str
    unit: str  # usd | credits
    on_exceed: str  # warn | block | downgrade
    limit: Amount
    used: Amount  # spend recorded
    downgrade_model: str | None = None
    held: Amount = 0  # outstanding holds, and commits the recorded spend does not include yet

    @property
    def taken(self) -> Amount:
        """What the check decides on: recorded spend plus holds."""
        return self.used + self.held

    @property
    def percentage(self) -> Decimal:
        return rounded_percentage(self.taken, self.limit)


@dataclass(frozen=True)
class Estimate:
    """What the request expects to spend, per unit (on the budgets' scale)."""

    usd: Amount = 0
    credits: Amount = 0

    def of(self, unit: str) -> Amount:
        return self.usd if unit == "usd" else self.credits


@dataclass(frozen=True)
class Finding:
    """A budget the request does not fit, and what to tell the caller about it."""

    budget: BudgetUse
    message: str


EXCEEDED = "Budget exceeded"
USE_DOWNGRADE = "Budget exceeded; use the downgrade model"


@dataclass(frozen=True)
class Decision:
    """The answer of the check. `action` is None when no budget is exceeded; `deciding`
    names the block or downgrade budget that decided; `warnings` lists the exceeded warn
    budgets (none when a block budget decides: the request is refused)."""

    allowed: bool
    action: str | None = None
    deciding: Finding | None = None
    warnings: tuple[Finding, ...] = ()

    @property
    def downgrade_model(self) -> str | None:
        return self.deciding.budget.downgrade_model if self.action == "downgrade" and self.deciding else None


ALLOWED = Decision(allowed=True)


def decide(budgets: Iterable[BudgetUse], estimate: Estimate = Estimate()) -> Decision:
    """The most restrictive action among the budgets the request does not fit
    (block > downgrade > warn); among equals the fullest budget, then the smallest id."""
    over = [b for b in budgets if refuses(b.taken, b.limit, estimate.of(b.unit))]
    if not over:
        return ALLOWED
    over.sort(key=lambda b: (-SEVERITY[b.on_exceed], -(b.taken * 10**9 // b.limit), b.budget_id))
    first = over[0]
    if first.on_exceed == "block":
        return Decision(allowed=False, action="block", deciding=Finding(first, EXCEEDED))
    warnings = tuple(Finding(b, EXCEEDED) for b in over if b.on_exceed == "warn")
    if first.on_exceed == "downgrade":
        return Decision(allowed=True, action="downgrade", deciding=Finding(first, USE_DOWNGRADE), warnings=warnings)
    return Decision(allowed=True, action="warn", warnings=warnings)


def sorted_thresholds(thresholds: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """Thresholds as budgets keep them: distinct, normalized, ascending."""
    return tuple(sorted({t.normalize() for t in thresholds}))
