"""Credit rates: shipped defaults, effective-dated overrides, how an event's credits are
computed and how a gauge accrues."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger.errors import Invalid
from ledger.pricing.credits import (
    DEFAULT_CREDIT_RATES,
    CreditRate,
    CreditRateBook,
    check_credit_rate,
    gauge_credits,
    is_gauge,
)

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def rate(resource_type: str, value: str, at: datetime) -> CreditRate:
    return CreditRate(resource_type, Decimal(value), at, "override")


def test_defaults_apply_when_nothing_was_overridden():
    book = CreditRateBook()
    for resource_type, value in DEFAULT_CREDIT_RATES.items():
        assert book.rate_for(resource_type, T0) == value


def test_an_override_applies_from_its_effective_moment_inclusive():
    book = CreditRateBook([rate("agent_run", "2", T0)])
    assert book.rate_for("agent_run", T0 - timedelta(microseconds=1)) == Decimal("1")
    assert book.rate_for("agent_run", T0) == Decimal("2")


def test_the_latest_override_in_force_wins():
    book = CreditRateBook([rate("ai", "150", T0 + timedelta(days=5)), rate("ai", "120", T0)])
    assert book.rate_for("ai", T0 + timedelta(days=4)) == Decimal("120")
    assert book.rate_for("ai", T0 + timedelta(days=5)) == Decimal("150")


def test_an_unknown_resource_type_has_rate_zero():
    assert CreditRateBook().rate_for("teleport", T0) == Decimal(0)


def test_in_force_names_the_source_of_each_rate():
    book = CreditRateBook([rate("agent_run", "2", T0)])
    sources = {r.resource_type: r.source for r in book.in_force(T0)}
    assert sources["agent_run"] == "override" and sources["ai"] == "default"
    assert set(sources) == set(DEFAULT_CREDIT_RATES)


def test_event_credits_are_quantity_times_rate():
    book = CreditRateBook()
    assert book.credits_for("app_compute", Decimal(3600), Decimal(0), False, T0) == Decimal("36.000000000")
    assert book.credits_for("agent_run", Decimal(3), Decimal(0), False, T0) == Decimal("3.000000000")


def test_ai_credits_follow_the_cost_when_there_is_no_quantity():
    book = CreditRateBook()
    assert book.credits_for("ai", None, Decimal("0.0125"), False, T0) == Decimal("1.250000000")
    assert book.credits_for("ai", None, Decimal("0.0125"), True, T0) is None  # unpriced: unknown, not zero


def test_a_run_without_quantity_counts_as_one_run():
    assert CreditRateBook().credits_for("agent_run", None, Decimal(0), False, T0) == Decimal("1.000000000")


def test_no_credits_without_resource_type_for_gauges_or_without_quantity():
    book = CreditRateBook()
    assert book.credits_for(None, Decimal(1), Decimal(0), False, T0) is None
    assert book.credits_for("app_storage", Decimal(10**9), Decimal(0), False, T0) is None
    assert book.credits_for("app_compute", None, Decimal(0), False, T0) is None


def test_event_credits_use_the_rate_in_force_at_the_event():
    book = CreditRateBook([rate("agent_run", "2", T0)])
    assert book.credits_for("agent_run", Decimal(1), Decimal(0), False, T0 - timedelta(seconds=1)) == Decimal("1.000000000")
    assert book.credits_for("agent_run", Decimal(1), Decimal(0), False, T0) == Decimal("2.000000000")


def test_gauges_accrue_level_times_rate_times_days_held():
    assert is_gauge("app_storage") and is_gauge("es_index_count") and not is_gauge("ai") and not is_gauge(None)
    one_gb = Decimal(10**9)
    assert gauge_credits(one_gb, DEFAULT_CREDIT_RATES["app_storage"], 86400) == Decimal(1)
    assert gauge_credits(one_gb, DEFAULT_CREDIT_RATES["app_storage"], 43200) == Decimal("0.5")


@pytest.mark.parametrize("value", ["-1", "1000000000", "0.0000000000001", "NaN", "Infinity"])
def test_a_rate_must_be_finite_non_negative_below_a_billion_with_at_most_12_decimals(value):
    with pytest.raises(Invalid) as error:
        check_credit_rate("agent_run", Decimal(value))
    assert error.value.details["field"] == "credits_per_unit"


def test_a_rate_needs_a_known_resource_type():
    with pytest.raises(Invalid):
        check_credit_rate("teleport", Decimal(1))
    check_credit_rate("agent_run", Decimal("0.000000000001"))  # 12 decimals: accepted
