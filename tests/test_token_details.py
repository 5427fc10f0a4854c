"""Token details: cached prompt tokens, cache writes and reasoning tokens are parts of the
prompt and completion counts, priced at their own rates and never counted twice."""
from __future__ import annotations

import csv
import io
import json
from datetime import timezone
from decimal import Decimal

from ledger.pricing.prices import PriceBook
from tests.conftest import ADMIN_KEY, NOW, usage

DETAILS = ("cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens")


def test_the_cost_adds_uncached_input_cache_reads_cache_writes_and_output_once():
    sonnet = PriceBook().price_for("anthropic", "claude-sonnet-4", NOW)
    # $3 per 1M input, $0.30 cache reads, $3.75 cache writes, $15 output (reasoning included)
    assert sonnet.cost(10_000, 2_000, 6_000, 1_000) == (
        3_000 * Decimal(3) + 6_000 * Decimal("0.30") + 1_000 * Decimal("3.75") + 2_000 * Decimal(15)
    ) / 1_000_000
    gemini = PriceBook().price_for("google", "gemini-2.5-flash", NOW)  # no cache prices: its input price
    assert gemini.cost(10_000, 0, 6_000, 1_000) == gemini.cost(10_000, 0)


def test_a_part_larger_than_its_total_answers_422_and_records_nothing(h, agent):
    before = h.ledger_count()
    events = [
        usage("d-1", prompt_tokens=100, cached_prompt_tokens=101),
        usage("d-2", prompt_tokens=100, cached_prompt_tokens=60, cache_creation_tokens=41),
        usage("d-3", completion_tokens=10, reasoning_tokens=11),
        usage("d-4", prompt_tokens=100, cached_prompt_tokens=60, cache_creation_tokens=40, completion_tokens=10, reasoning_tokens=10),
    ]
    response = h.post_events(agent, events)
    assert response.status_code == 422
    assert [(i["index"], i["field"]) for i in response.json["error"]["items"]] == [
        (0, "cached_prompt_tokens"), (1, "cache_creation_tokens"), (2, "reasoning_tokens")
    ]
    assert h.ledger_count() == before


def test_every_output_sums_the_details_after_the_seeds_columns(h, agent):
    events = [
        usage("t-1", prompt_tokens=10_000, completion_tokens=2_000, cached_prompt_tokens=6_000, reasoning_tokens=500),
        usage("t-2", llm_provider="anthropic", llm_model="claude-sonnet-4", prompt_tokens=4_000, completion_tokens=100,
              cached_prompt_tokens=1_000, cache_creation_tokens=2_000),
    ]
    response = h.post_events(agent, events)
    assert response.status_code == 202, response.json
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert [summary[name] for name in DETAILS] == [7_000, 2_000, 500]
    assert (summary["prompt_tokens"], summary["completion_tokens"], summary["total_tokens"]) == (14_000, 2_100, 16_100)
    gpt4o = (4_000 * Decimal("2.50") + 6_000 * Decimal("1.25") + 2_000 * Decimal(10)) / 1_000_000
    sonnet = (1_000 * Decimal(3) + 1_000 * Decimal("0.30") + 2_000 * Decimal("3.75") + 100 * Decimal(15)) / 1_000_000
    assert Decimal(str(summary["estimated_cost_usd"])) == gpt4o + sonnet
    records = {r["event_id"]: r for r in h.http.get("/api/v1/usage/records", headers=agent).json["records"]}
    assert [records["t-2"][name] for name in DETAILS] == [1_000, 2_000, 0]
    assert Decimal(str(records["t-1"]["cost_usd"])) == gpt4o
    daily = h.http.get("/api/v1/usage?granularity=daily", headers=agent).json["data"]
    assert [sum(row[name] for row in daily) for name in DETAILS] == [7_000, 2_000, 500]
    aggregate_csv = h.http.get("/api/v1/usage?granularity=daily&format=csv", headers=agent).get_data(as_text=True)
    header = next(csv.reader(io.StringIO(aggregate_csv)))
    assert header[-5:] == ["error_count", *DETAILS, "estimated_cost_nanos"]  # the seed's columns, then the sums
    breakdown = h.http.get("/api/v1/usage/breakdown?group_by=model", headers=agent).json
    assert [breakdown["totals"][name] for name in DETAILS] == [7_000, 2_000, 500]


def test_a_cache_price_override_prices_later_events_and_an_amend_reprices(h, agent):
    put = h.admin("PUT", "/api/v1/admin/pricing", json={
        "provider": "openai", "model": "gpt-4o", "input_per_1k": "0.002", "output_per_1k": "0.008",
        "cached_input_per_1m": "0.5", "cache_write_input_per_1m": "2.5", "effective_from": "2026-11-20T10:00:00Z",
    })
    assert put.status_code == 200, put.json
    assert (put.json["cached_input_per_1m"], put.json["cache_write_input_per_1m"]) == (0.5, 2.5)
    h.project()
    prices = h.http.get("/api/v1/pricing", headers=agent).json["prices"]
    assert next(p for p in prices if p["model"] == "gpt-4o")["cached_input_per_1m"] == 0.5
    response = h.post_events(agent, [usage("o-1", prompt_tokens=1_000, completion_tokens=0, cached_prompt_tokens=400, cache_creation_tokens=100)])
    assert response.status_code == 202, response.json
    h.project()
    record = h.http.get("/api/v1/usage/records", headers=agent).json["records"][0]
    assert Decimal(str(record["cost_usd"])) == (500 * Decimal(2) + 400 * Decimal("0.5") + 100 * Decimal("2.5")) / 1_000_000
    amended = h.http.post("/api/v1/events/o-1/amend", json={"reason": "no cache", "fields": {"cached_prompt_tokens": 0}},
                          headers={"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"})
    assert amended.status_code == 200, amended.json
    h.project()
    record = h.http.get("/api/v1/usage/records", headers=agent).json["records"][0]
    assert Decimal(str(record["cost_usd"])) == (900 * Decimal(2) + 100 * Decimal("2.5")) / 1_000_000
    assert record["cached_prompt_tokens"] == 0


def test_litellm_usage_objects_carry_the_details(h, agent):
    payload = {
        "id": "lt-1", "call_type": "completion", "status": "success", "model": "gpt-4o", "custom_llm_provider": "openai",
        "prompt_tokens": 1_000, "completion_tokens": 300, "endTime": NOW.replace(hour=11).astimezone(timezone.utc).timestamp(),
        "response_cost": 0.0041, "metadata": {"usage_object": {
            "prompt_tokens": 1_000, "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 800}, "completion_tokens_details": {"reasoning_tokens": 120},
        }},
    }
    response = h.http.post("/api/v1/integrations/litellm", data=json.dumps(payload) + "\n", headers={**agent, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.json
    h.project()
    record = h.http.get("/api/v1/usage/records", headers=agent).json["records"][0]
    assert [record[name] for name in DETAILS] == [800, 0, 120]
    assert (record["reported_cost_usd"], Decimal(str(record["cost_usd"]))) == (
        0.0041, (200 * Decimal("2.50") + 800 * Decimal("1.25") + 300 * Decimal(10)) / 1_000_000
    )
