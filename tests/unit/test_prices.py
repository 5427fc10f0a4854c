"""Effective-dated model prices: a price applies from its effective_from on, the latest one
in force wins, an override beats the default of the same moment, and an unknown model has
no price (never a silent $0)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.pricing.prices import DEFAULT_PRICES, ModelPrice, PriceBook

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
DEFAULT_GPT4O = next(p for p in DEFAULT_PRICES if p.model == "gpt-4o")


def override(model: str, input_per_1k: str, output_per_1k: str, at: datetime, provider: str = "openai") -> ModelPrice:
    return ModelPrice(provider, model, Decimal(input_per_1k), Decimal(output_per_1k), at, "override")


def test_the_default_applies_before_any_override():
    book = PriceBook([override("gpt-4o", "0.005", "0.02", T0)])
    assert book.price_for("openai", "gpt-4o", T0 - timedelta(microseconds=1)) == DEFAULT_GPT4O


def test_an_override_applies_from_its_effective_moment_inclusive():
    book = PriceBook([override("gpt-4o", "0.005", "0.02", T0)])
    assert book.price_for("openai", "gpt-4o", T0).input_per_1k == Decimal("0.005")
    assert book.price_for("openai", "gpt-4o", T0 + timedelta(days=400)).input_per_1k == Decimal("0.005")


def test_the_latest_override_in_force_wins_whatever_the_order_given():
    later, earlier = override("gpt-4o", "0.007", "0.03", T0 + timedelta(days=10)), override("gpt-4o", "0.005", "0.02", T0)
    book = PriceBook([later, earlier])
    assert book.price_for("openai", "gpt-4o", T0 + timedelta(days=9)).input_per_1k == Decimal("0.005")
    assert book.price_for("openai", "gpt-4o", T0 + timedelta(days=10)).input_per_1k == Decimal("0.007")


def test_an_override_at_the_defaults_moment_beats_the_default():
    book = PriceBook([override("gpt-4o", "0.009", "0.01", DEFAULT_GPT4O.effective_from)])
    assert book.price_for("openai", "gpt-4o", T0).source == "override"


def test_models_match_without_case_and_providers_must_match_when_given():
    book = PriceBook()
    assert book.price_for("OpenAI", "GPT-4o", T0) == DEFAULT_GPT4O
    assert book.price_for(None, "gpt-4o", T0) == DEFAULT_GPT4O
    assert book.price_for("anthropic", "gpt-4o", T0) is None


def test_an_unknown_or_missing_model_has_no_price():
    book = PriceBook()
    assert book.price_for("acme", "in-house-llm", T0) is None
    assert book.price_for("openai", None, T0) is None
    assert book.price_for("openai", "", T0) is None


def test_a_new_model_is_priced_only_from_its_override_on():
    book = PriceBook([override("in-house-llm", "0.001", "0.002", T0, provider="acme")])
    assert book.price_for("acme", "in-house-llm", T0 - timedelta(seconds=1)) is None
    assert book.price_for("acme", "in-house-llm", T0).output_per_1k == Decimal("0.002")


def test_cost_is_per_thousand_tokens_rounded_half_even_to_the_nano_dollar():
    price = override("m", "0.0025", "0.01", T0)
    assert price.cost(1000, 500) == Decimal("0.007500000")
    assert price.cost(0, 0) == Decimal("0E-9")
    # 1 token at $0.0000005/1K = 5e-10: half of a nano-dollar rounds to even (0)
    assert override("m", "0.0000005", "0", T0).cost(1, 0) == Decimal("0E-9")
    assert override("m", "0.0000015", "0", T0).cost(1, 0) == Decimal("2E-9")


def test_in_force_lists_each_model_once_at_its_current_price():
    book = PriceBook([override("gpt-4o", "0.005", "0.02", T0)])
    before = {(p.provider, p.model): p for p in book.in_force(T0 - timedelta(days=1))}
    after = {(p.provider, p.model): p for p in book.in_force(T0)}
    assert len(before) == len(after) == len(DEFAULT_PRICES)
    assert before[("openai", "gpt-4o")] == DEFAULT_GPT4O
    assert after[("openai", "gpt-4o")].input_per_1k == Decimal("0.005")


def test_cache_reads_and_writes_are_priced_per_million_and_the_rest_of_the_prompt_at_the_input_price():
    price = ModelPrice("anthropic", "m", Decimal("0.003"), Decimal("0.015"), T0, "override", Decimal("0.30"), Decimal("3.75"))
    # 1,000 uncached at $3/1M, 2,000 cache reads at $0.30/1M, 500 cache writes at $3.75/1M, 400 out at $15/1M
    expected = Decimal("0.003") + Decimal("0.0006") + Decimal("0.001875") + Decimal("0.006")
    assert price.cost(3500, 400, cached_prompt_tokens=2000, cache_creation_tokens=500) == expected


def test_a_model_without_cache_prices_prices_cache_tokens_at_its_input_price():
    price = override("m", "0.002", "0.008", T0)
    assert price.cost(1000, 100, cached_prompt_tokens=600, cache_creation_tokens=400) == price.cost(1000, 100)


# the cost of an event, exactly as it has always been computed ----------------------------
def reference_cost(price: ModelPrice, prompt: int, completion: int, cached: int, cache_creation: int) -> Decimal:
    """ModelPrice.cost as releases up to 2026-11 computed it (every term, always)."""
    input_per_1m = price.input_per_1k * 1000
    cached_per_1m = input_per_1m if price.cached_input_per_1m is None else price.cached_input_per_1m
    write_per_1m = input_per_1m if price.cache_write_input_per_1m is None else price.cache_write_input_per_1m
    raw = ((prompt - cached - cache_creation) * price.input_per_1k + completion * price.output_per_1k) / 1000 + (
        cached * cached_per_1m + cache_creation * write_per_1m
    ) / Decimal(1_000_000)
    return raw.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_EVEN)


rates = st.one_of(
    st.decimals(0, 999_999, places=9, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("0E-9"), Decimal("0.0025"), Decimal("999999.999999999")]),
)


@settings(max_examples=500, deadline=None)
@given(
    rates, rates, st.none() | rates, st.none() | rates,
    st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12),
)
def test_the_cost_is_the_same_decimal_as_every_term_computed(input_1k, output_1k, cached_1m, write_1m, prompt, completion, a, b):
    """Same value, sign and exponent: the cost is stored as it is computed."""
    price = ModelPrice("p", "m", input_1k, output_1k, T0, "override", cached_1m, write_1m)
    cached, cache_creation = sorted((a % (prompt + 1), b % (prompt + 1)))
    cache_creation -= cached  # cached + cache_creation ≤ prompt
    for tokens in ((prompt, completion, 0, 0), (prompt, completion, cached, cache_creation), (0, 0, 0, 0)):
        assert repr(price.cost(*tokens)) == repr(reference_cost(price, *tokens))
