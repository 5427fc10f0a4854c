"""Pricing commands: set a platform-wide credit rate from a moment on (history is kept,
the latest effective rate wins)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from ledger.errors import Invalid
from ledger.journal import Journal
from ledger.pricing.credits import check_credit_rate
from ledger.pricing.events import CreditRateSet
from ledger.settings import Settings


class PricingCommands:
    def __init__(self, journal: Journal, settings: Settings):
        self.journal = journal
        self.settings = settings

    def set_credit_rate(
        self, resource_type: str, credits_per_unit: Decimal, actor: str, effective_from: datetime | None = None
    ) -> tuple[int, CreditRateSet]:
        """CreditRateSet (platform-wide) in force from `effective_from` (default: now)."""
        check_credit_rate(resource_type, credits_per_unit)
        now = self.journal.now
        moment = effective_from or now
        if moment.tzinfo is None:
            raise Invalid("VALIDATION_FAILED", "effective_from needs a time zone offset", field="effective_from")
        event = CreditRateSet(
            tenant_id="",
            recorded_at=now,
            actor=actor,
            resource_type=resource_type,
            credits_per_unit=credits_per_unit,
            effective_from=moment.astimezone(timezone.utc),
        )
        return self.journal.record_fact(event), event
