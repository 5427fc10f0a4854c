"""Credits: shipped default rates, effective-dated overrides (CreditRateSet), how
an event's credits are computed at ingest and how a gauge's credits accrue (the command
that sets a rate is in ledger/pricing/commands.py).

Rates are credits per unit of the resource type (ledger/usage/resources.py):
- event types (ai, agent_run, app_compute, job_compute): credits = quantity × rate, where
  `ai` is measured in dollars of cost (quantity, else the event's cost_usd) and a run
  without a quantity counts as one run. Computed at ingest when the event has no credits.
- gauge types (storage, index count): the unit is per unit-day. A reported level is held
  from its reading until the next reading of the same series, and accrues
  level × rate × days held (see projections/credits.py); ingest leaves credits empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable

from ledger.errors import Invalid
from ledger.usage.resources import RESOURCE_TYPES, RESOURCE_TYPE_SLUGS

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
NANO = Decimal("0.000000001")
RATE_EXPONENT = -12
MODE_BY_TYPE = {r.slug: r.mode for r in RESOURCE_TYPES}
UNIT_BY_TYPE = {r.slug: r.unit for r in RESOURCE_TYPES}

# resource type → credits per unit (per unit-day for gauges). Documented in README.md.
DEFAULT_CREDIT_RATES: dict[str, Decimal] = {
    "ai": Decimal("100"),  # per dollar of AI cost: 1 credit = $0.01
    "agent_run": Decimal("1"),  # per run
    "app_compute": Decimal("0.01"),  # per second: 36 credits per hour
    "job_compute": Decimal("0.005"),  # per second: 18 credits per hour
    "app_storage": Decimal("0.000000001"),  # per byte-day: 1 credit per GB-day
    "workspace_storage": Decimal("0.000000001"),  # per byte-day
    "file_storage": Decimal("0.000000001"),  # per byte-day
    "es_index_count": Decimal("1"),  # per index-day
}


@dataclass(frozen=True)
class CreditRate:
    resource_type: str
    credits_per_unit: Decimal
    effective_from: datetime
    source: str  # default | override


def is_gauge(resource_type: str | None) -> bool:
    return MODE_BY_TYPE.get(resource_type or "") == "gauge"


class CreditRateBook:
    """Answers 'how many credits per unit of this resource type at that time?'."""

    def __init__(self, overrides: Iterable[CreditRate] = ()):
        self._by_type: dict[str, list[CreditRate]] = {
            slug: [CreditRate(slug, rate, _EPOCH, "default")] for slug, rate in DEFAULT_CREDIT_RATES.items()
        }
        for rate in overrides:
            self._by_type.setdefault(rate.resource_type, []).append(rate)
        for rates in self._by_type.values():
            rates.sort(key=lambda r: (r.effective_from, r.source == "override"))

    def rate_for(self, resource_type: str, at: datetime) -> Decimal:
        """The newest rate in force at `at` (the rates are kept oldest first)."""
        for candidate in reversed(self._by_type.get(resource_type, ())):
            if candidate.effective_from <= at:
                return candidate.credits_per_unit
        return DEFAULT_CREDIT_RATES.get(resource_type, Decimal(0))

    def in_force(self, at: datetime) -> list[CreditRate]:
        current = {}
        for slug, rates in self._by_type.items():
            for rate in rates:
                if rate.effective_from <= at:
                    current[slug] = rate
        return [current[s] for s in sorted(current)]

    def credits_for(
        self,
        resource_type: str | None,
        quantity: Decimal | None,
        cost_usd: Decimal,
        unpriced: bool,
        at: datetime,
    ) -> Decimal | None:
        """Credits of one event-mode usage event; None when they cannot be known
        (no resource type, a gauge, an unpriced AI call, or no quantity to charge)."""
        if not resource_type or is_gauge(resource_type):
            return None
        if quantity is None:
            if resource_type == "ai":
                if unpriced:
                    return None
                quantity = cost_usd
            elif UNIT_BY_TYPE.get(resource_type) == "run":
                quantity = Decimal(1)
            else:
                return None
        return quantize_credits(quantity * self.rate_for(resource_type, at))


def quantize_credits(value: Decimal) -> Decimal:
    return value.quantize(NANO, rounding=ROUND_HALF_EVEN)


def gauge_credits(level: Decimal, rate_per_unit_day: Decimal, seconds: Decimal | int) -> Decimal:
    """The gauge rule: level × rate × days held."""
    return level * rate_per_unit_day * Decimal(seconds) / Decimal(86400)


def check_credit_rate(resource_type: str, credits_per_unit: Decimal) -> None:
    if resource_type not in RESOURCE_TYPE_SLUGS:
        raise Invalid(
            "VALIDATION_FAILED", f"resource_type must be one of {', '.join(sorted(RESOURCE_TYPE_SLUGS))}", field="resource_type"
        )
    if (
        not credits_per_unit.is_finite()
        or credits_per_unit < 0
        or credits_per_unit >= 10**9
        or credits_per_unit.as_tuple().exponent < RATE_EXPONENT  # type: ignore[operator]
    ):
        raise Invalid(
            "VALIDATION_FAILED", "credits_per_unit must be ≥ 0, below 10^9, with at most 12 decimals", field="credits_per_unit"
        )
