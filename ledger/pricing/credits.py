"""Credits (seed 003): shipped default rates, effective-dated overrides (CreditRateSet), how
an event's credits are computed at ingest and how a gauge's credits accrue; plus the
commands that register entities, set rates and record License Manager sync outcomes.

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
from typing import TYPE_CHECKING, Iterable
from uuid import uuid4

from ledger.errors import Invalid
from ledger.identity.events import EntityRegistered
from ledger.licensing.events import LicenseSynced, LicenseSyncFailed
from ledger.pricing.events import CreditRateSet
from ledger.usage.resources import RESOURCE_TYPES, RESOURCE_TYPE_SLUGS
from ledger.store import NewEvent, stream_id

if TYPE_CHECKING:  # pragma: no cover
    from ledger.application import Ledger

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
NANO = Decimal("0.000000001")
RATE_EXPONENT = -12
ENTITY_TYPES = ("app", "user", "agent")
MODE_BY_TYPE = {r.slug: r.mode for r in RESOURCE_TYPES}
UNIT_BY_TYPE = {r.slug: r.unit for r in RESOURCE_TYPES}
LICENSE_SYNC_FAILURE_CODES = ("lm_unreachable", "lm_unavailable", "license_not_recognized", "lm_error")

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
        rate = DEFAULT_CREDIT_RATES.get(resource_type, Decimal(0))
        for candidate in self._by_type.get(resource_type, ()):
            if candidate.effective_from <= at:
                rate = candidate.credits_per_unit
        return rate

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


# commands -----------------------------------------------------------------------------
def entity_stream(tenant_id: str, entity_type: str, entity_id: str):
    return stream_id("entity", tenant_id, entity_type, entity_id)


def register_entity(
    ledger: "Ledger",
    tenant_id: str,
    entity_id: str,
    entity_type: str,
    name: str,
    actor: str,
    slug: str | None = None,
    owner_id: str | None = None,
    display_name: str | None = None,
) -> int:
    """EntityRegistered; registering the same (tenant, type, id) twice → 409 ENTITY_EXISTS."""
    if entity_type not in ENTITY_TYPES:
        raise Invalid("VALIDATION_FAILED", f"entity_type must be one of {', '.join(ENTITY_TYPES)}", field="entity_type")
    if not entity_id or len(entity_id) > 128:
        raise Invalid("VALIDATION_FAILED", "entity_id must be 1-128 characters", field="entity_id")
    ledger.require_tenant(tenant_id)
    event = EntityRegistered(
        tenant_id=tenant_id,
        recorded_at=ledger.now,
        actor=actor,
        entity_id=entity_id,
        entity_type=entity_type,
        name=name,
        slug=slug,
        owner_id=owner_id,
        display_name=display_name,
    )
    return ledger.journal.start_stream(
        entity_stream(tenant_id, entity_type, entity_id),
        event,
        "ENTITY_EXISTS",
        f"The {entity_type} {entity_id} is already registered",
    )


def set_credit_rate(
    ledger: "Ledger", resource_type: str, credits_per_unit: Decimal, actor: str, effective_from: datetime | None = None
) -> tuple[int, CreditRateSet]:
    """CreditRateSet (platform-wide); history is kept, the latest effective rate wins."""
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
    moment = effective_from or ledger.now
    if moment.tzinfo is None:
        raise Invalid("VALIDATION_FAILED", "effective_from needs a time zone offset", field="effective_from")
    event = CreditRateSet(
        tenant_id="",
        recorded_at=ledger.now,
        actor=actor,
        resource_type=resource_type,
        credits_per_unit=credits_per_unit,
        effective_from=moment.astimezone(timezone.utc),
    )
    return ledger.store.append([NewEvent(uuid4(), 1, event)])[0], event


@dataclass(frozen=True)
class LicenseTerms:
    """What the License Manager answered for one licence key."""

    tier: str | None
    nodes_total: int | None
    credits_included: Decimal | None
    expires_at: datetime | None
    status: str | None


def record_license_synced(ledger: "Ledger", tenant_id: str, org_id: str, license_key: str, terms: LicenseTerms) -> int:
    event = LicenseSynced(
        tenant_id=tenant_id,
        org_id=org_id,
        recorded_at=ledger.now,
        actor="system:license-sync",
        license_key=license_key,
        tier=terms.tier,
        nodes_total=terms.nodes_total,
        credits_included=terms.credits_included,
        expires_at=terms.expires_at,
        status=terms.status,
    )
    return ledger.store.append([NewEvent(uuid4(), 1, event)])[0]


def record_license_sync_failed(
    ledger: "Ledger", tenant_id: str, org_id: str, license_key: str, code: str, message: str, http_status: int | None
) -> int:
    assert code in LICENSE_SYNC_FAILURE_CODES, code
    event = LicenseSyncFailed(
        tenant_id=tenant_id,
        org_id=org_id,
        recorded_at=ledger.now,
        actor="system:license-sync",
        license_key=license_key,
        code=code,
        message=message[:500],
        http_status=http_status,
    )
    return ledger.store.append([NewEvent(uuid4(), 1, event)])[0]
