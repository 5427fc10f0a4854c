"""Prices and credit rates in force at once: ingest and amendments price every event with
every price and rate appended before it, whatever the read models' lag; an amendment
recomputes cost, credits and `unpriced` exactly as ingest would."""
from __future__ import annotations

from sqlalchemy import delete, update

from projections.framework import projection_positions
from projections.pricing_queries import PRICING
from runtime.bootstrap import bootstrap
from tests.conftest import ADMIN_KEY, usage

ADMIN = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}


def set_price(h, model: str, price: str, effective_from: str = "2026-11-01T00:00:00Z"):
    body = {"provider": "openai", "model": model, "input_per_1k": price, "output_per_1k": price, "effective_from": effective_from}
    response = h.admin("PUT", "/api/v1/admin/pricing", json=body)
    assert response.status_code == 200, response.json


def records(h, agent) -> dict[str, dict]:
    h.project()
    found = h.http.get("/api/v1/usage/records?start=2026-11-01", headers=agent).json["records"]
    return {r["event_id"]: r for r in found}


def mini(event_id: str, **fields) -> dict:
    return usage(event_id, llm_model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=0, cost_usd=None, **fields)


def test_a_new_price_prices_the_very_next_event(h, agent):
    h.project()
    set_price(h, "gpt-4o-mini", "1")  # no projector runs between the price and the event
    assert h.post_events(agent, [mini("first")]).status_code == 202
    set_price(h, "gpt-4o-mini", "2")
    assert h.post_events(agent, [mini("second")]).status_code == 202
    found = records(h, agent)
    assert (found["first"]["cost_usd"], found["second"]["cost_usd"]) == (1.0, 2.0)


def test_a_new_credit_rate_applies_to_the_very_next_event(h, agent):
    h.project()
    response = h.admin("PUT", "/api/v1/admin/credit-rates", json={"resource_type": "ai", "credits_per_unit": "10", "effective_from": "2026-11-01T00:00:00Z"})
    assert response.status_code == 200
    h.post_events(agent, [usage("e-1", cost_usd="2")])
    assert records(h, agent)["e-1"]["credits"] == 20.0


def test_prices_hold_while_the_pricing_read_model_is_rebuilt(h, agent, settings):
    set_price(h, "gpt-4o-mini", "1")
    h.project()
    with h.engine.begin() as conn:  # the pricing read model being rebuilt on a live system
        conn.execute(delete(PRICING.prices))
        conn.execute(update(projection_positions).where(projection_positions.c.name == PRICING.name).values(position=0))
    h.post_events(agent, [mini("during")])
    with bootstrap(settings) as fresh:  # a process started meanwhile reads the ledger itself
        book = fresh.ledger.price_book()
    price = book.price_for("openai", "gpt-4o-mini", h.settings.clock.now())
    assert price is not None and price.source == "override"
    assert records(h, agent)["during"]["cost_usd"] == 1.0


def test_amending_tokens_recomputes_credits(h, agent):
    h.post_events(agent, [usage("e-1", cost_usd=None, prompt_tokens=1000, completion_tokens=1000)])  # 0.0025 + 0.01
    assert records(h, agent)["e-1"]["credits"] == 1.25
    response = h.http.post(
        "/api/v1/events/e-1/amend", json={"fields": {"completion_tokens": 0}, "reason": "recount"}, headers=ADMIN
    )
    assert response.status_code == 200, response.json
    found = records(h, agent)["e-1"]
    assert (found["cost_usd"], found["credits"]) == (0.0025, 0.25)


def test_amending_attribution_keeps_an_unpriced_event_unpriced(h, agent):
    h.post_events(agent, [usage("e-1", llm_provider="acme", llm_model="secret", cost_usd=None)])
    h.project()
    assert h.http.get("/api/v1/usage/summary", headers=agent).json["unpriced_events"] == 1
    response = h.http.post("/api/v1/events/e-1/amend", json={"fields": {"team_id": "ml"}, "reason": "r"}, headers=ADMIN)
    assert response.status_code == 200, response.json
    h.project()
    assert h.http.get("/api/v1/usage/summary", headers=agent).json["unpriced_events"] == 1
    assert records(h, agent)["e-1"]["credits"] is None


def test_an_unpriced_event_amended_after_its_model_got_a_price_is_priced_at_occurred_at(h, agent):
    h.post_events(agent, [usage("e-1", llm_provider="openai", llm_model="house-model", cost_usd=None, completion_tokens=0)])
    set_price(h, "house-model", "3")
    h.http.post("/api/v1/events/e-1/amend", json={"fields": {"team_id": "ml"}, "reason": "r"}, headers=ADMIN)
    found = records(h, agent)["e-1"]
    assert (found["cost_usd"], found["credits"]) == (3.0, 300.0)
