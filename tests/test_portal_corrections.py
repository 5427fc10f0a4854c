"""Usage corrections: void and amend append new events; every read model reflects them;
the original stays in the ledger."""
from __future__ import annotations

from ledger.usage.streams import usage_stream
from tests.conftest import ADMIN_KEY, usage

ADMIN = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}


def summary(h, headers):
    h.project()
    return h.http.get("/api/v1/usage/summary", headers=headers).json


def test_voiding_removes_the_event_from_every_read_model(h, agent):
    h.post_events(agent, [usage("e-1"), usage("e-2")])
    response = h.http.post("/api/v1/events/e-1/void", json={"reason": "test traffic"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json["position"] == h.store.max_position()
    totals = summary(h, agent)
    assert totals["total_llm_requests"] == 1 and totals["total_tokens"] == 1500
    raw = h.http.get("/api/v1/usage?granularity=raw", headers=agent).json["data"]
    assert [e["event_id"] for e in raw] == ["e-2"]
    versions = [r.event.type for r in h.store.stream(usage_stream("acme", "e-1"))]
    assert versions == ["UsageRecorded", "UsageVoided"]  # the original stays


def test_voiding_twice_answers_409(h, agent):
    h.post_events(agent, [usage("e-1")])
    assert h.http.post("/api/v1/events/e-1/void", json={"reason": "x"}, headers=ADMIN).status_code == 200
    second = h.http.post("/api/v1/events/e-1/void", json={"reason": "x"}, headers=ADMIN)
    assert second.status_code == 409 and second.json["error"]["code"] == "USAGE_ALREADY_VOIDED"


def test_an_unknown_or_foreign_event_answers_404(h, agent):
    h.tenant("globex")
    h.post_events(h.agent("globex", "prod"), [usage("theirs")])
    assert h.http.post("/api/v1/events/nope/void", json={"reason": "x"}, headers=ADMIN).status_code == 404
    assert h.http.post("/api/v1/events/theirs/void", json={"reason": "x"}, headers=ADMIN).status_code == 404


def test_a_reason_is_required(h, agent):
    h.post_events(agent, [usage("e-1")])
    assert h.http.post("/api/v1/events/e-1/void", json={}, headers=ADMIN).status_code == 422
    assert h.http.post("/api/v1/events/e-1/amend", json={"fields": {"prompt_tokens": 1}}, headers=ADMIN).status_code == 422


def test_amending_tokens_rederives_total_and_cost(h, agent):
    h.post_events(agent, [usage("e-1", cost_usd=None)])  # gpt-4o 1000/500 → 0.0075
    assert summary(h, agent)["estimated_cost_usd"] == 0.0075
    response = h.http.post(
        "/api/v1/events/e-1/amend", json={"fields": {"prompt_tokens": 2000}, "reason": "gateway undercounted"}, headers=ADMIN
    )
    assert response.status_code == 200
    assert response.json["total_tokens"] == 2500
    totals = summary(h, agent)
    assert (totals["total_tokens"], totals["estimated_cost_usd"], totals["total_llm_requests"]) == (2500, 0.01, 1)


def test_amending_model_and_attribution(h, agent):
    h.post_events(agent, [usage("e-1", cost_usd="0.5")])
    h.http.post("/api/v1/events/e-1/amend", json={"fields": {"llm_model": "gpt-4o-mini", "team_id": "ml"}, "reason": "r"}, headers=ADMIN)
    h.project()
    (event,) = h.http.get("/api/v1/usage?granularity=raw", headers=agent).json["data"]
    assert (event["llm_model"], event["team_id"]) == ("gpt-4o-mini", "ml")
    assert event["cost_usd"] == 0.00045  # re-priced: 1000 × 0.00015/1K + 500 × 0.0006/1K


def test_amended_fields_are_validated(h, agent):
    h.post_events(agent, [usage("e-1")])
    bad = h.http.post("/api/v1/events/e-1/amend", json={"fields": {"prompt_tokens": -1}, "reason": "r"}, headers=ADMIN)
    assert bad.status_code == 422
    refused = h.http.post("/api/v1/events/e-1/amend", json={"fields": {"occurred_at": "2026-11-01T00:00:00Z"}, "reason": "r"}, headers=ADMIN)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "FIELD_NOT_AMENDABLE"
    assert h.http.post("/api/v1/events/e-1/amend", json={"fields": {}, "reason": "r"}, headers=ADMIN).status_code == 422


def test_a_voided_event_cannot_be_amended(h, agent):
    h.post_events(agent, [usage("e-1")])
    h.http.post("/api/v1/events/e-1/void", json={"reason": "x"}, headers=ADMIN)
    response = h.http.post("/api/v1/events/e-1/amend", json={"fields": {"prompt_tokens": 1}, "reason": "r"}, headers=ADMIN)
    assert response.status_code == 409


def test_a_retry_of_the_original_body_is_still_a_duplicate_after_an_amendment(h, agent):
    h.post_events(agent, [usage("e-1")])
    h.http.post("/api/v1/events/e-1/amend", json={"fields": {"team_id": "ml"}, "reason": "r"}, headers=ADMIN)
    retry = h.post_events(agent, [usage("e-1")])
    assert retry.status_code == 202 and retry.json["duplicates"] == 1


def test_a_portal_admin_may_correct_and_a_plain_user_may_not(h, agent):
    h.post_events(agent, [usage("e-1"), usage("e-2")])
    plain = h.portal_user("ada@acme.test")
    assert plain.post("/api/v1/events/e-1/void", json={"reason": "x"}).status_code == 403
    admin = h.portal_user("root@acme.test", permissions=["admin"])
    assert admin.post("/api/v1/events/e-1/void", json={"reason": "x"}).status_code == 200
    assert summary(h, agent)["total_llm_requests"] == 1


def test_agents_and_keys_cannot_correct(h, agent):
    h.post_events(agent, [usage("e-1")])
    assert h.http.post("/api/v1/events/e-1/void", json={"reason": "x"}, headers=agent).status_code == 401


def test_a_rebuild_gives_the_same_corrected_totals(h, agent):
    from projections.framework import catch_up, reset
    from projections.registry import by_name

    h.post_events(agent, [usage("e-1"), usage("e-2")])
    h.http.post("/api/v1/events/e-1/void", json={"reason": "x"}, headers=ADMIN)
    h.http.post("/api/v1/events/e-2/amend", json={"fields": {"completion_tokens": 0}, "reason": "r"}, headers=ADMIN)
    before = summary(h, agent)
    for name in ("usage_events", "usage_rollups"):
        projection = by_name(name)
        reset(h.engine, projection)
        catch_up(h.engine, h.store, projection)
    assert summary(h, agent) == before
    assert before["total_tokens"] == 1000
