"""Model prices: a shipped default table plus effective-dated overrides (ModelPriceSet).

Prices are USD per 1,000 tokens. A usage event without cost_usd is priced with the price
in force at its occurred_at; a model with no price is `unpriced`, never silently $0.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable

DEFAULT_PRICES_SOURCE_DATE = "2025-06-01"
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_NANO = Decimal("0.000000001")

# provider, model, input per 1K tokens, output per 1K tokens (public list prices).
_DEFAULT_TABLE: tuple[tuple[str, str, str, str], ...] = (
    ("openai", "gpt-4o", "0.0025", "0.01"),
    ("openai", "gpt-4o-mini", "0.00015", "0.0006"),
    ("openai", "gpt-4.1", "0.002", "0.008"),
    ("openai", "gpt-4.1-mini", "0.0004", "0.0016"),
    ("openai", "gpt-4.1-nano", "0.0001", "0.0004"),
    ("openai", "o3", "0.002", "0.008"),
    ("openai", "o4-mini", "0.0011", "0.0044"),
    ("openai", "text-embedding-3-small", "0.00002", "0"),
    ("openai", "text-embedding-3-large", "0.00013", "0"),
    ("anthropic", "claude-opus-4", "0.015", "0.075"),
    ("anthropic", "claude-sonnet-4", "0.003", "0.015"),
    ("anthropic", "claude-3-5-haiku", "0.0008", "0.004"),
    ("google", "gemini-2.5-pro", "0.00125", "0.01"),
    ("google", "gemini-2.5-flash", "0.0003", "0.0025"),
    ("google", "gemini-2.0-flash", "0.0001", "0.0004"),
    ("mistral", "mistral-large-latest", "0.002", "0.006"),
    ("mistral", "mistral-small-latest", "0.0002", "0.0006"),
    ("axon", "axon-sovereign-1", "0.015", "0.075"),
    ("axon", "axon-sovereign-1-mini", "0.003", "0.015"),
    ("axon", "axon-embed-1", "0.0001", "0"),
)


@dataclass(frozen=True)
class ModelPrice:
    provider: str
    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal
    effective_from: datetime
    source: str  # default | override

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        raw = (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000
        return raw.quantize(_NANO, rounding=ROUND_HALF_EVEN)


DEFAULT_PRICES: tuple[ModelPrice, ...] = tuple(
    ModelPrice(p, m, Decimal(i), Decimal(o), _EPOCH, "default") for p, m, i, o in _DEFAULT_TABLE
)


class PriceBook:
    """Answers 'what did this model cost at that time?' from defaults plus overrides."""

    def __init__(self, overrides: Iterable[ModelPrice] = ()):
        self._by_model: dict[str, list[ModelPrice]] = {}
        for price in (*DEFAULT_PRICES, *overrides):
            self._by_model.setdefault(price.model.lower(), []).append(price)
        for prices in self._by_model.values():
            prices.sort(key=lambda p: (p.effective_from, p.source == "override"))

    def price_for(self, provider: str | None, model: str | None, at: datetime) -> ModelPrice | None:
        if not model:
            return None
        candidates = [
            p
            for p in self._by_model.get(model.lower(), ())
            if p.effective_from <= at and (not provider or p.provider == provider.lower())
        ]
        return candidates[-1] if candidates else None

    def in_force(self, at: datetime) -> list[ModelPrice]:
        """The price of every known model at `at`."""
        current: dict[tuple[str, str], ModelPrice] = {}
        for prices in self._by_model.values():
            for price in prices:
                if price.effective_from <= at:
                    current[(price.provider, price.model)] = price
        return sorted(current.values(), key=lambda p: (p.provider, p.model))
