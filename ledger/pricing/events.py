"""Pricing and credits events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.events import LedgerEvent


class ModelPriceSet(LedgerEvent, frozen=True):
    """An effective-dated price override (USD per 1,000 tokens); earlier prices stay in history."""

    provider: str
    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal
    effective_from: datetime
    cached_input_per_1m: Decimal | None = None  # USD per 1,000,000 cache-read tokens; None: the input price
    cache_write_input_per_1m: Decimal | None = None  # USD per 1,000,000 cache-write tokens; None: the input price


class CreditRateSet(LedgerEvent, frozen=True):
    """Credits per unit of a resource type from effective_from on (tenant_id '' = platform-wide)."""

    resource_type: str
    credits_per_unit: Decimal
    effective_from: datetime

