"""Usage breakdowns (from the rollups) and records (filters, pagination) of seed 002."""
from __future__ import annotations

import pytest

from tests.conftest import usage


@pytest.fixture
def traffic(h, agent):
    h.post_events(agent, [
        usage("a1", cost_usd="1", agent_id="bot-a", team_id="eng", user_id="u1", workflow_id="wf", occurred_at="2026-11-18T10:00:00Z"),
        usage("a2", cost_usd="2", agent_id="bot-a", team_id="eng", user_id="u2", occurred_at="2026-11-19T10:00:00Z"),
        usage("b1", cost_usd="4", llm_provider="anthropic", llm_model="claude-sonnet-4", agent_id="bot-b",
              team_id="sales", user_id="u1", http_status_code=500, occurred_at="2026-11-19T11:00:00Z"),
        usage("m1", cost_usd=None, llm_provider="acme", llm_model="secret-llm", occurred_at="2026-11-20T10:00:00Z"),
    ])
    h.tenant("globex", ("main",))
    h.post_events(h.agent("globex", "main"), [usage("foreign", cost_usd="100")])
    h.project()


def breakdown(h, agent, group_by, **params):
    query = "&".join([f"group_by={group_by}"] + [f"{k}={v}" for k, v in params.items()])
    response = h.http.get(f"/api/v1/usage/breakdown?{query}", headers=agent)
    assert response.status_code == 200, response.json
    return response.json


def test_breakdown_by_each_dimension(h, agent, traffic):
    by_model = breakdown(h, agent, "model")
    assert [(i["provider"], i["key"], i["cost_usd"], i["events"], i["unpriced_events"]) for i in by_model["breakdown"]] == [
        ("anthropic", "claude-sonnet-4", 4, 1, 0),
        ("openai", "gpt-4o", 3, 2, 0),
        ("acme", "secret-llm", 0, 1, 1),
    ]
    assert by_model["totals"]["cost_usd"] == 7 and by_model["totals"]["events"] == 4
    assert [(i["key"], i["cost_usd"]) for i in breakdown(h, agent, "provider")["breakdown"]] == [
        ("anthropic", 4), ("openai", 3), ("acme", 0)]
    assert [(i["key"], i["cost_usd"]) for i in breakdown(h, agent, "agent")["breakdown"]] == [
        ("bot-b", 4), ("bot-a", 3), (None, 0)]
    assert [(i["key"], i["cost_usd"]) for i in breakdown(h, agent, "team")["breakdown"]] == [
        ("sales", 4), ("eng", 3), (None, 0)]
    assert [(i["key"], i["cost_usd"]) for i in breakdown(h, agent, "user")["breakdown"]] == [
        ("u1", 5), ("u2", 2), (None, 0)]
    assert [(i["key"], i["cost_usd"]) for i in breakdown(h, agent, "workflow")["breakdown"]] == [
        (None, 6), ("wf", 1)]
    assert [(i["key"], i["cost_usd"], i["events"]) for i in breakdown(h, agent, "day")["breakdown"]] == [
        ("2026-11-18", 1, 1), ("2026-11-19", 6, 2), ("2026-11-20", 0, 1)]


def test_breakdown_windows_and_validation(h, agent, traffic):
    window = breakdown(h, agent, "model", start="2026-11-19", end="2026-11-19")
    assert window["totals"]["cost_usd"] == 6
    hours = breakdown(h, agent, "agent", start="2026-11-19T10:30:00Z", end="2026-11-19T12:00:00Z")
    assert [(i["key"], i["cost_usd"]) for i in hours["breakdown"]] == [("bot-b", 4)]
    assert h.http.get("/api/v1/usage/breakdown?group_by=planet", headers=agent).status_code == 422
    assert h.http.get("/api/v1/usage/breakdown?start=2026-11-20&end=2026-11-01", headers=agent).status_code == 422
    assert h.http.get("/api/v1/usage/breakdown").status_code == 401


def test_records_filter_and_paginate(h, agent, traffic):
    def ids(query=""):
        response = h.http.get(f"/api/v1/usage/records?start=2026-11-01{query}", headers=agent)
        assert response.status_code == 200, response.json
        return [r["event_id"] for r in response.json["records"]], response.json["has_more"]

    assert ids() == (["m1", "b1", "a2", "a1"], False)
    assert ids("&limit=2") == (["m1", "b1"], True)
    assert ids("&limit=2&offset=2") == (["a2", "a1"], False)
    assert ids("&agent_id=bot-a") == (["a2", "a1"], False)
    assert ids("&model=claude-sonnet-4") == (["b1"], False)
    assert ids("&provider=openai&user_id=u1") == (["a1"], False)
    assert ids("&success=false") == (["b1"], False)
    assert ids("&team_id=eng&workflow_id=wf") == (["a1"], False)
    assert ids("&end=2026-11-18") == (["a1"], False)
    assert h.http.get("/api/v1/usage/records?limit=1000", headers=agent).status_code == 200
    assert h.http.get("/api/v1/usage/records?limit=1001", headers=agent).status_code == 422
    assert h.http.get("/api/v1/usage/records?offset=-1", headers=agent).status_code == 422
