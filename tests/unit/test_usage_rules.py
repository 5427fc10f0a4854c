"""The ingest rules of a usage event, field by field, without a database or a web app.

An item is typed the way the edge decodes it (`msgspec.convert` into `UsageIn` checks the
declared types and bounds, as the JSON decoder does), then judged by `validate_items`.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

from ledger.errors import Invalid
from ledger.pricing.credits import CreditRateBook
from ledger.pricing.prices import ModelPrice, PriceBook
from ledger.usage.amendments import amended
from ledger.usage.events import Usage
from ledger.usage.rules import (
    ItemError,
    UsageIn,
    fingerprint,
    price_of,
    token_details_problems,
    type_error,
    validate_items,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
BACKDATING_DAYS = 35


def event(**fields) -> dict:
    """A valid llm_request, one hour before NOW; a field given as None is left out."""
    sent = {
        "event_id": "e-1",
        "event_type": "llm_request",
        "occurred_at": "2026-11-20T11:00:00Z",
        "llm_provider": "openai",
        "llm_model": "gpt-4o",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "http_status_code": 200,
    }
    sent.update(fields)
    return {k: v for k, v in sent.items() if v is not None}


def typed(sent: dict, index: int = 0) -> UsageIn | ItemError:
    try:
        return msgspec.convert(sent, UsageIn)
    except msgspec.ValidationError as error:
        return type_error(index, sent.get("event_id"), str(error))


def accept(prices: PriceBook | None = None, credit_rates: CreditRateBook | None = None, **fields) -> Usage:
    (usage,) = validate_items(
        [typed(event(**fields))], client_id="cli_1", now=NOW, backdating_days=BACKDATING_DAYS,
        prices=prices or PriceBook(), credit_rates=credit_rates,
    )
    return usage


def problems(**fields) -> list[dict]:
    with pytest.raises(Invalid) as raised:
        accept(**fields)
    assert raised.value.code == "VALIDATION_FAILED"
    return raised.value.details["items"]


def refused_field(**fields) -> str | None:
    (problem,) = problems(**fields)
    assert problem["index"] == 0 and problem["message"]
    return problem["field"]


# event_id and event_type -----------------------------------------------------------------
@pytest.mark.parametrize("event_id", ["", "has space", "x" * 129, "é", "a/b"])
def test_an_event_id_outside_the_charset_or_length_is_refused(event_id):
    assert refused_field(event_id=event_id) == "event_id"


@pytest.mark.parametrize("event_id", ["a", "x" * 128, "run-1.2:3_4"])
def test_an_event_id_of_letters_digits_and_dot_colon_dash_underscore_is_accepted(event_id):
    assert accept(event_id=event_id).event_id == event_id


@pytest.mark.parametrize("event_type", ["Not-A-Slug", "1abc", "", "a" * 65])
def test_an_event_type_must_be_a_lowercase_slug(event_type):
    assert refused_field(event_type=event_type) == "event_type"


def test_a_missing_event_id_or_event_type_names_the_field():
    for field in ("event_id", "event_type"):
        assert refused_field(**{field: None}) == field


# occurred_at -----------------------------------------------------------------------------
def test_an_event_up_to_five_minutes_ahead_is_accepted_and_beyond_is_refused():
    assert accept(occurred_at="2026-11-20T12:05:00Z").occurred_at == NOW + timedelta(minutes=5)
    assert refused_field(occurred_at="2026-11-20T12:05:01Z") == "occurred_at"


def test_the_backdating_window_is_measured_from_now():
    assert accept(occurred_at="2026-10-16T12:00:00Z").occurred_at == NOW - timedelta(days=35)
    (problem,) = problems(occurred_at="2026-10-16T11:59:59Z")
    assert problem["field"] == "occurred_at" and "35 days" in problem["message"]


def test_an_offset_is_normalized_to_utc_and_a_missing_time_is_now():
    assert accept(occurred_at="2026-11-20T16:30:00+05:30").occurred_at == datetime(2026, 11, 20, 11, 0, tzinfo=timezone.utc)
    assert accept(occurred_at=None).occurred_at == NOW


@pytest.mark.parametrize("value", ["yesterday", "2026-11-20", 12])
def test_occurred_at_must_be_a_timestamp(value):
    assert refused_field(occurred_at=value) == "occurred_at"


def test_occurred_at_without_an_offset_is_refused():
    assert refused_field(occurred_at="2026-11-20T11:00:00") == "occurred_at"


# operation and resource_type -------------------------------------------------------------
def test_operation_is_one_of_the_known_operations():
    assert accept(operation="embedding").operation == "embedding"
    assert refused_field(operation="translation") == "operation"


def test_resource_type_comes_from_the_registry():
    assert accept(resource_type="app_compute", quantity=3).resource_type == "app_compute"
    assert refused_field(resource_type="gpu") == "resource_type"


def test_an_event_with_model_or_tokens_and_no_resource_type_is_ai():
    assert accept().resource_type == "ai"
    assert accept(llm_provider=None, llm_model=None, prompt_tokens=None, completion_tokens=None).resource_type is None


# amounts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("quantity", [-1, "1.2345", "1000000000000000"])
def test_quantity_is_non_negative_below_1e15_with_three_decimals(quantity):
    assert refused_field(resource_type="app_compute", quantity=quantity) == "quantity"


def test_quantity_zero_and_milli_units_are_accepted():
    assert accept(resource_type="app_compute", quantity=0).quantity == 0
    assert accept(resource_type="app_compute", quantity="1.234").quantity == Decimal("1.234")


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
                                   "policies_evaluated", "policy_violations"])
@pytest.mark.parametrize("value", [-1, 1.5, "3", 10**12 + 1])
def test_counts_are_integers_from_zero_to_a_trillion(field, value):
    assert refused_field(**{field: value}) == field


def test_total_tokens_is_derived_or_must_equal_prompt_plus_completion():
    assert accept().total_tokens == 1500
    assert accept(total_tokens=1500).total_tokens == 1500
    (problem,) = problems(total_tokens=7)
    assert problem["field"] == "total_tokens" and "1500" in problem["message"]


@pytest.mark.parametrize("field", ["cost_usd", "credits"])
@pytest.mark.parametrize("value", [-0.01, "0.1234567891", 1_000_000, "NaN"])
def test_money_is_non_negative_below_a_million_to_the_nano(field, value):
    assert refused_field(**{field: value}) == field


def test_a_stated_cost_and_credits_are_kept_exactly():
    usage = accept(cost_usd="0.123456789", credits="999999.999999999")
    assert usage.cost_usd == Decimal("0.123456789") and usage.credits == Decimal("999999.999999999")
    assert usage.unpriced is False


# success, http, metadata -----------------------------------------------------------------
def test_success_defaults_from_the_status_code():
    assert accept(http_status_code=200).success is True
    assert accept(http_status_code=399).success is True
    assert accept(http_status_code=400).success is False
    assert accept(http_status_code=None).success is True
    assert accept(http_status_code=500, success=True).success is True


def test_success_must_be_a_boolean_and_status_a_code():
    assert refused_field(success="yes") == "success"
    assert refused_field(http_status_code=99) == "http_status_code"
    assert refused_field(http_status_code=600) == "http_status_code"


def test_the_http_method_is_upper_cased():
    assert accept(http_method="post").http_method == "POST"
    assert refused_field(http_method="GE T") == "http_method"


def test_metadata_is_an_object_of_at_most_8_kib_and_8_levels():
    assert accept(metadata={"blob": "x" * 8000}).metadata == {"blob": "x" * 8000}
    assert refused_field(metadata={"blob": "x" * 8200}) == "metadata"
    assert refused_field(metadata=["not", "an", "object"]) == "metadata"
    deep: dict = {}
    node = deep
    for _ in range(8):
        node["x"] = {}
        node = node["x"]
    assert refused_field(metadata=deep) == "metadata"


# unknown and server-set fields -----------------------------------------------------------
def test_an_unknown_field_is_refused_by_name():
    assert refused_field(surprise=1) == "surprise"


@pytest.mark.parametrize("field", ["client_id", "tenant_id", "org_id"])
def test_fields_set_from_the_credentials_may_not_be_sent(field):
    (problem,) = problems(**{field: "someone-else"})
    assert problem["field"] == field and "credentials" in problem["message"]


def test_the_client_comes_from_the_credentials():
    assert accept().client_id == "cli_1"


def test_every_bad_item_is_reported_with_its_index_and_event_id():
    items = [typed(event(event_id="a", prompt_tokens=-1), 0), typed(event(event_id="b")),
             typed(event(event_id="c", operation="nope"), 2)]
    with pytest.raises(Invalid) as raised:
        validate_items(items, client_id="c", now=NOW, backdating_days=35, prices=PriceBook())
    assert [(i["index"], i["event_id"], i["field"]) for i in raised.value.details["items"]] == [
        (0, "a", "prompt_tokens"), (2, "c", "operation")]


# pricing ---------------------------------------------------------------------------------
def test_an_event_without_cost_is_priced_at_the_price_in_force_when_it_occurred():
    # gpt-4o by default: 1000 × 0.0025/1K + 500 × 0.01/1K
    assert accept().cost_usd == Decimal("0.0075")
    override = ModelPrice("openai", "gpt-4o", Decimal("1"), Decimal("2"), datetime(2026, 11, 20, 11, 30, tzinfo=timezone.utc), "override")
    prices = PriceBook([override])
    assert accept(prices=prices, occurred_at="2026-11-20T11:29:59Z").cost_usd == Decimal("0.0075")
    assert accept(prices=prices, occurred_at="2026-11-20T11:30:00Z").cost_usd == Decimal("2")


def test_a_model_without_a_price_is_unpriced_not_free():
    usage = accept(llm_provider="acme", llm_model="secret-llm")
    assert usage.unpriced is True and usage.cost_usd == 0


def test_an_event_without_model_or_tokens_costs_nothing_and_is_priced():
    assert price_of(None, None, 0, 0, 0, NOW, PriceBook()) == (Decimal(0), False)


def test_credits_follow_the_rate_of_the_resource_type_unless_stated():
    rates = CreditRateBook()
    assert accept(credit_rates=rates).credits == Decimal("0.75")  # $0.0075 × 100 credits per dollar
    assert accept(credit_rates=rates, credits="2").credits == Decimal("2")
    assert accept(credit_rates=rates, llm_model="secret-llm").credits is None  # unpriced


# retries and amendments ------------------------------------------------------------------
def test_the_same_content_has_the_same_fingerprint_however_decimals_are_written():
    assert fingerprint(typed(event(cost_usd="0.10"))) == fingerprint(typed(event(cost_usd="0.1")))
    assert fingerprint(typed(event())) != fingerprint(typed(event(prompt_tokens=1)))


def test_an_amendment_rederives_totals_and_cost_from_replaced_inputs():
    usage = accept()
    current = amended(usage, {"completion_tokens": 100}, backdating_days=35, prices=PriceBook())
    assert current.total_tokens == 1100 and current.cost_usd == Decimal("0.0035")
    assert current.body_sha256 == usage.body_sha256 and current.occurred_at == usage.occurred_at


def test_an_amendment_is_judged_by_the_ingest_rules():
    usage = accept()
    for fields, field in (({"prompt_tokens": -1}, "prompt_tokens"), ({"operation": "nope"}, "operation"),
                          ({"cost_usd": 0.1234567891}, "cost_usd")):
        with pytest.raises(Invalid) as raised:
            amended(usage, fields, backdating_days=35, prices=PriceBook())
        assert raised.value.details["items"][0]["field"] == field


def test_an_amended_decimal_sent_as_a_json_number_is_exact():
    current = amended(accept(), {"cost_usd": 0.1}, backdating_days=35, prices=PriceBook())
    assert current.cost_usd == Decimal("0.1")


# token details ----------------------------------------------------------------------------
def test_token_details_are_parts_of_their_totals():
    assert token_details_problems(100, 50, cached=60, cache_creation=40, reasoning=50) == {}
    assert set(token_details_problems(100, 50, cached=101, cache_creation=0, reasoning=51)) == {
        "cached_prompt_tokens", "reasoning_tokens"
    }
    assert set(token_details_problems(100, 50, cached=60, cache_creation=41, reasoning=0)) == {"cache_creation_tokens"}


def test_an_event_with_a_part_over_its_total_is_refused_naming_the_part():
    assert refused_field(reasoning_tokens=501) == "reasoning_tokens"
    assert refused_field(cached_prompt_tokens=600, cache_creation_tokens=401) == "cache_creation_tokens"


def test_cached_prompt_tokens_are_priced_at_the_cache_price_and_reasoning_only_once_as_output():
    usage = accept(cached_prompt_tokens=800, reasoning_tokens=300)
    # gpt-4o: $2.50/1M uncached, $1.25/1M cache reads, $10/1M output (reasoning is inside the 500)
    assert usage.cost_usd == Decimal("0.0005") + Decimal("0.001") + Decimal("0.005")
    assert (usage.cached_prompt_tokens, usage.reasoning_tokens, usage.total_tokens) == (800, 300, 1500)
