"""Model prices (SPEC.md §5.2): the shipped defaults, effective-dated overrides with
history, and ingest pricing with the price in force at occurred_at."""
from __future__ import annotations

from tests.conftest import usage


def set_price(h, **body):
    price = {"provider": "openai", "model": "gpt-4o", "input_per_1k": "0.005", "output_per_1k": "0.02", **body}
    return h.admin("PUT", "/api/v1/admin/pricing", json=price)


def costs(h, agent) -> dict[str, float]:
    records = h.http.get("/api/v1/usage/records?start=2026-11-01", headers=agent).json["records"]
    return {r["event_id"]: r["cost_usd"] for r in records}


def test_the_default_table_is_served_with_its_source_date(h, agent):
    response = h.http.get("/api/v1/pricing", headers=agent)
    assert response.status_code == 200
    body = response.json
    assert body["default_source_date"] == "2025-06-01" and body["currency"] == "USD"
    gpt4o = next(p for p in body["prices"] if p["model"] == "gpt-4o")
    assert gpt4o == {"provider": "openai", "model": "gpt-4o", "input_per_1k": 0.0025, "output_per_1k": 0.01,
                     "effective_from": "2000-01-01T00:00:00Z", "source": "default",
                     "cached_input_per_1m": 1.25, "cache_write_input_per_1m": None}
    assert {"anthropic", "google", "axon"} <= {p["provider"] for p in body["prices"]}
    assert h.http.get("/api/v1/pricing").status_code == 401


def test_a_price_changed_mid_month_prices_earlier_and_later_events_differently(h, agent):
    # ingested before the override exists: priced with the default, and stays so
    h.post_events(agent, [usage("after-early", cost_usd=None, occurred_at="2026-11-18T10:00:00Z")])
    response = set_price(h, effective_from="2026-11-15T00:00:00Z")
    assert response.status_code == 200, response.json
    assert response.json["source"] == "override" and response.headers["X-Ledger-Position"]
    h.project()
    h.post_events(agent, [
        usage("before", cost_usd=None, occurred_at="2026-11-10T10:00:00Z"),
        usage("after", cost_usd=None, occurred_at="2026-11-18T10:00:00Z"),
        usage("given", cost_usd="1.5", occurred_at="2026-11-18T10:00:00Z"),
    ])
    h.project()
    # 1000 prompt + 500 completion tokens: 0.0025 + 0.005 before, 0.005 + 0.01 after
    assert costs(h, agent) == {"after-early": 0.0075, "before": 0.0075, "after": 0.015, "given": 1.5}

    prices = h.http.get("/api/v1/pricing", headers=agent).json["prices"]
    gpt4o = next(p for p in prices if p["model"] == "gpt-4o")
    assert (gpt4o["input_per_1k"], gpt4o["output_per_1k"], gpt4o["source"]) == (0.005, 0.02, "override")
    assert gpt4o["effective_from"] == "2026-11-15T00:00:00Z"
    earlier = h.http.get("/api/v1/pricing?at=2026-11-10T00:00:00Z", headers=agent).json["prices"]
    assert next(p for p in earlier if p["model"] == "gpt-4o")["source"] == "default"


def test_overrides_keep_their_history(h, agent):
    set_price(h, effective_from="2026-11-01T00:00:00Z")
    set_price(h, input_per_1k="0.004", effective_from="2026-11-10T00:00:00Z")
    set_price(h, provider="acme", model="in-house-llm", input_per_1k="0.001", output_per_1k="0.001",
              effective_from="2026-11-01T00:00:00Z")
    h.project()
    history = h.admin("GET", "/api/v1/admin/pricing").json["overrides"]
    assert [(o["model"], o["input_per_1k"], o["effective_from"]) for o in history] == [
        ("in-house-llm", 0.001, "2026-11-01T00:00:00Z"),
        ("gpt-4o", 0.005, "2026-11-01T00:00:00Z"),
        ("gpt-4o", 0.004, "2026-11-10T00:00:00Z"),
    ]
    assert all(o["set_by"] == "admin" for o in history)
    # a model that was unpriced is priced once it has a price
    h.post_events(agent, [usage("in-house", llm_provider="acme", llm_model="in-house-llm", cost_usd=None)])
    h.project()
    assert costs(h, agent)["in-house"] == 0.0015


def test_unknown_models_are_unpriced_never_silently_free(h, agent):
    h.post_events(agent, [usage("mystery", llm_provider="acme", llm_model="secret-llm", cost_usd=None)])
    h.project()
    record = h.http.get("/api/v1/usage/records?start=2026-11-01", headers=agent).json["records"][0]
    assert record["unpriced"] is True and record["cost_usd"] == 0
    assert h.http.get("/api/v1/usage/summary", headers=agent).json["unpriced_events"] == 1


def test_only_admins_set_prices_and_prices_are_checked(h, agent):
    body = {"provider": "openai", "model": "gpt-4o", "input_per_1k": 1, "output_per_1k": 1}
    assert h.http.put("/api/v1/admin/pricing", json=body, headers=agent).status_code == 401
    assert set_price(h, input_per_1k=-1).status_code == 422
    assert set_price(h, output_per_1k="0.0000000001").status_code == 422
    assert set_price(h, effective_from="2026-11-15T00:00:00").status_code == 422  # no offset
    assert set_price(h, surprise=1).status_code == 422
