"""Model prices: a shipped default table plus effective-dated overrides (ModelPriceSet).

Prices are USD per 1,000 tokens; the cache prices (cache reads, cache writes) are USD per
1,000,000 tokens, as providers list them, and a model without one prices those tokens at
its input price. Reasoning tokens are part of the output and priced as output. A usage
event without cost_usd is priced with the price in force at its occurred_at; a model with
no price is `unpriced`, never silently $0.
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
# provider, model: cache-read and cache-write price per 1M tokens (None: the input price).
_DEFAULT_CACHE_PRICES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("openai", "gpt-4o"): ("1.25", None),
    ("openai", "gpt-4o-mini"): ("0.075", None),
    ("openai", "gpt-4.1"): ("0.50", None),
    ("openai", "gpt-4.1-mini"): ("0.10", None),
    ("openai", "gpt-4.1-nano"): ("0.025", None),
    ("openai", "o3"): ("0.50", None),
    ("openai", "o4-mini"): ("0.275", None),
    ("anthropic", "claude-opus-4"): ("1.50", "18.75"),
    ("anthropic", "claude-sonnet-4"): ("0.30", "3.75"),
    ("anthropic", "claude-3-5-haiku"): ("0.08", "1.00"),
}
_PER_1M = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    provider: str
    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal
    effective_from: datetime
    source: str  # default | override
    cached_input_per_1m: Decimal | None = None
    cache_write_input_per_1m: Decimal | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0, cache_creation_tokens: int = 0) -> Decimal:
        """Uncached input, cache reads, cache writes and output, each at its price (cache
        reads and writes are parts of prompt_tokens; reasoning is part of completion_tokens)."""
        if not cached_prompt_tokens and not cache_creation_tokens:
            raw = (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000
            if raw:  # the cache terms would add a zero: the same value, and a non-zero value keeps its sign
                return raw.quantize(_NANO, rounding=ROUND_HALF_EVEN)
        uncached = prompt_tokens - cached_prompt_tokens - cache_creation_tokens
        input_per_1m = self.input_per_1k * 1000
        cached_per_1m = input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m
        write_per_1m = input_per_1m if self.cache_write_input_per_1m is None else self.cache_write_input_per_1m
        raw = (uncached * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000 + (
            cached_prompt_tokens * cached_per_1m + cache_creation_tokens * write_per_1m
        ) / _PER_1M
        return raw.quantize(_NANO, rounding=ROUND_HALF_EVEN)


def _default_price(provider: str, model: str, input_per_1k: str, output_per_1k: str) -> ModelPrice:
    cached, write = _DEFAULT_CACHE_PRICES.get((provider, model), (None, None))
    return ModelPrice(
        provider, model, Decimal(input_per_1k), Decimal(output_per_1k), _EPOCH, "default",
        None if cached is None else Decimal(cached), None if write is None else Decimal(write),
    )


DEFAULT_PRICES: tuple[ModelPrice, ...] = tuple(_default_price(*row) for row in _DEFAULT_TABLE)


class PriceBook:
    """Answers 'what did this model cost at that time?' from defaults plus overrides."""

    def __init__(self, overrides: Iterable[ModelPrice] = ()):
        self._by_model: dict[str, list[ModelPrice]] = {}
        for price in (*DEFAULT_PRICES, *overrides):
            self._by_model.setdefault(price.model.lower(), []).append(price)
        for prices in self._by_model.values():
            prices.sort(key=lambda p: (p.effective_from, p.source == "override"))
        # (model, provider or None for any) → the prices that answer it, oldest first: one
        # lookup per usage event instead of a filter over the model's prices
        self._by_model_and_provider: dict[tuple[str, str | None], tuple[ModelPrice, ...]] = {}
        for model, prices in self._by_model.items():
            self._by_model_and_provider[(model, None)] = tuple(prices)
            for provider in {p.provider for p in prices}:
                self._by_model_and_provider[(model, provider)] = tuple(p for p in prices if p.provider == provider)

    def price_for(self, provider: str | None, model: str | None, at: datetime) -> ModelPrice | None:
        """The newest price of the model (of that provider, when named) in force at `at`."""
        if not model:
            return None
        key = (model.lower(), provider.lower() if provider else None)
        for price in reversed(self._by_model_and_provider.get(key, ())):
            if price.effective_from <= at:
                return price
        return None

    def in_force(self, at: datetime) -> list[ModelPrice]:
        """The price of every known model at `at`."""
        current: dict[tuple[str, str], ModelPrice] = {}
        for prices in self._by_model.values():
            for price in prices:
                if price.effective_from <= at:
                    current[(price.provider, price.model)] = price
        return sorted(current.values(), key=lambda p: (p.provider, p.model))
