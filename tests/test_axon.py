"""Axon usage and audit log (seed 001), retention and SIEM forwarding, on both backends."""
from __future__ import annotations

from decimal import Decimal

import pytest

from projections.axon import AxonAuditProjection
from projections.framework import catch_up, reset, table_digest
from tests.conftest import usage
from tests.fakes import FakeServer
from tests.processes import free_port

SEED_KEYS = {"requests", "prompt_tokens", "completion_tokens", "total_tokens"}


def axon(event_id: str, model: str, operation: str, prompt: int, completion: int, **fields) -> dict:
    return usage(
        event_id,
        llm_provider="axon",
        llm_model=model,
        operation=operation,
        prompt_tokens=prompt,
        completion_tokens=completion,
        **fields,
    )


AXON_EVENTS = [
    axon("cmp-1", "axon-sovereign-1", "completion", 286, 201, user_id="usr-1", occurred_at="2026-11-20T10:00:00Z"),
    axon("cmp-2", "axon-sovereign-1", "completion", 1000, 500, user_id="usr-2", occurred_at="2026-11-19T09:00:00Z"),
    axon("rag-1", "axon-sovereign-1", "rag_query", 700, 300, knowledge_base_id="kb-1", occurred_at="2026-11-18T08:00:00Z"),
    axon("emb-1", "axon-embed-1", "embedding", 1200, 0, occurred_at="2026-11-20T11:00:00Z"),
    axon("emb-2", "axon-embed-1", "embedding", 800, 0, occurred_at="2026-10-25T11:00:00Z"),
    axon("mini-1", "axon-sovereign-1-mini", "completion", 333, 77, occurred_at="2026-11-20T11:30:00Z"),
    usage("not-axon"),  # an LLM request without an operation is not an axon record
]


@pytest.fixture
def loaded(h, agent):
    assert h.post_events(agent, AXON_EVENTS).status_code == 202
    h.project()
    return agent


def test_usage_has_the_seed_shape_and_defaults_to_30_days(h, loaded):
    response = h.http.get("/v1/axon/usage", headers=loaded)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert set(response.json) == {"data"}
    assert set(data) == {"period_days", "since", "range", "totals", "by_model", "by_operation"}
    assert data["period_days"] == 30
    assert data["since"] == "2026-10-22T00:00:00Z"  # the last 30 days: today and the 29 days before
    assert data["range"] == {"start": "2026-10-22T00:00:00.000000Z", "end": "2026-11-21T00:00:00.000000Z"}
    assert {k: data["totals"][k] for k in SEED_KEYS} == {
        "requests": 6,
        "prompt_tokens": 286 + 1000 + 700 + 1200 + 800 + 333,
        "completion_tokens": 201 + 500 + 300 + 77,
        "total_tokens": 286 + 1000 + 700 + 1200 + 800 + 333 + 201 + 500 + 300 + 77,
    }
    assert {k: data["by_model"]["axon-sovereign-1"][k] for k in SEED_KEYS} == {
        "requests": 3, "prompt_tokens": 1986, "completion_tokens": 1001, "total_tokens": 2987,
    }
    assert {k: data["by_model"]["axon-embed-1"][k] for k in SEED_KEYS} == {
        "requests": 2, "prompt_tokens": 2000, "completion_tokens": 0, "total_tokens": 2000,
    }
    assert data["by_operation"] == {"completion": 3, "embedding": 2, "rag_query": 1}
    assert sum(m["requests"] for m in data["by_model"].values()) == data["totals"]["requests"]


def test_days_narrows_the_window_to_whole_utc_days(h, loaded):
    data = h.http.get("/v1/axon/usage?days=2", headers=loaded).json["data"]
    assert data["since"] == "2026-11-19T00:00:00Z"
    assert data["by_operation"] == {"completion": 3, "embedding": 1}
    assert data["totals"]["requests"] == 4


@pytest.mark.parametrize("days", ["0", "366", "-1", "abc"])
def test_days_out_of_range_is_422(h, loaded, days):
    response = h.http.get(f"/v1/axon/usage?days={days}", headers=loaded)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "VALIDATION_FAILED"


def test_days_365_is_accepted(h, loaded):
    assert h.http.get("/v1/axon/usage?days=365", headers=loaded).json["data"]["period_days"] == 365


def test_the_cost_allocation_figure_equals_the_seeds_hand_computation(h, loaded):
    data = h.http.get("/v1/axon/usage?days=30", headers=loaded).json["data"]
    rates = {  # seed 001's RATES, per 1K tokens
        "axon-sovereign-1": {"input": Decimal("0.015"), "output": Decimal("0.075")},
        "axon-sovereign-1-mini": {"input": Decimal("0.003"), "output": Decimal("0.015")},
        "axon-embed-1": {"input": Decimal("0.0001"), "output": Decimal("0")},
    }
    total = Decimal(0)
    for model, stats in data["by_model"].items():
        rate = rates[model]
        cost = Decimal(stats["prompt_tokens"]) / 1000 * rate["input"] + Decimal(stats["completion_tokens"]) / 1000 * rate["output"]
        assert Decimal(str(stats["estimated_cost"])) == cost.quantize(Decimal("0.000001")), model
        total += cost
    # by hand from the events: sovereign 1986 in / 1001 out, mini 333 / 77, embed 2000 / 0
    by_hand = (
        Decimal(1986) * Decimal("0.015") / 1000 + Decimal(1001) * Decimal("0.075") / 1000
        + Decimal(333) * Decimal("0.003") / 1000 + Decimal(77) * Decimal("0.015") / 1000
        + Decimal(2000) * Decimal("0.0001") / 1000
    )
    assert total == by_hand
    assert Decimal(str(data["totals"]["estimated_cost"])) == by_hand.quantize(Decimal("0.000001"))
    assert f"{by_hand:.2f}" == "0.11"


def test_an_unpriced_model_has_no_estimated_cost_rather_than_zero(h, agent):
    h.post_events(agent, [axon("x-1", "axon-secret-9", "completion", 10, 10)])
    h.project()
    data = h.http.get("/v1/axon/usage", headers=agent).json["data"]
    assert data["by_model"]["axon-secret-9"]["estimated_cost"] is None


def test_usage_needs_credentials_and_stays_within_the_org(h, loaded):
    assert h.http.get("/v1/axon/usage").status_code == 401
    research = h.http.get("/v1/axon/usage", headers={**loaded, "X-Org-ID": "research"}).json["data"]
    assert research["totals"]["requests"] == 0 and research["by_model"] == {}


def test_admin_key_reads_with_tenant_and_org_headers(h, loaded):
    response = h.admin("GET", "/v1/axon/usage", headers={"X-Tenant-ID": "acme", "X-Org-ID": "prod"})
    assert response.status_code == 200
    assert response.json["data"]["totals"]["requests"] == 6


# audit --------------------------------------------------------------------------------
def test_audit_records_have_the_seed_fields_newest_first(h, loaded):
    response = h.http.get("/v1/axon/audit", headers=loaded)
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"data", "pagination"}
    assert body["pagination"] == {"page": 1, "per_page": 20, "total": 6, "has_more": False}
    assert [r["id"] for r in body["data"]] == ["mini-1", "emb-1", "cmp-1", "cmp-2", "rag-1", "emb-2"]
    assert body["data"][2] == {
        "id": "cmp-1",
        "tenant_id": "acme",
        "user_id": "usr-1",
        "model": "axon-sovereign-1",
        "operation": "completion",
        "prompt_tokens": 286,
        "completion_tokens": 201,
        "knowledge_base_id": None,
        "created_at": "2026-11-20T10:00:00.000000Z",
    }


@pytest.mark.parametrize(
    "query,ids",
    [
        ("filter[operation]=embedding", ["emb-1", "emb-2"]),
        ("filter[model]=axon-sovereign-1", ["cmp-1", "cmp-2", "rag-1"]),
        ("filter[knowledge_base_id]=kb-1", ["rag-1"]),
        ("filter[created_after]=2026-11-19T09:00:00Z", ["mini-1", "emb-1", "cmp-1", "cmp-2"]),
        ("filter[created_before]=2026-11-19T09:00:00Z", ["rag-1", "emb-2"]),
        ("filter[created_after]=2026-11-18&filter[created_before]=2026-11-20", ["cmp-2", "rag-1"]),
        ("filter[operation]=completion&filter[model]=axon-sovereign-1-mini", ["mini-1"]),
    ],
)
def test_audit_filters(h, loaded, query, ids):
    response = h.http.get(f"/v1/axon/audit?{query}", headers=loaded)
    assert response.status_code == 200, response.json
    assert [r["id"] for r in response.json["data"]] == ids
    assert response.json["pagination"]["total"] == len(ids)


def test_audit_pages(h, loaded):
    first = h.http.get("/v1/axon/audit?per_page=4", headers=loaded).json
    second = h.http.get("/v1/axon/audit?per_page=4&page=2", headers=loaded).json
    assert first["pagination"] == {"page": 1, "per_page": 4, "total": 6, "has_more": True}
    assert second["pagination"] == {"page": 2, "per_page": 4, "total": 6, "has_more": False}
    assert [r["id"] for r in first["data"] + second["data"]] == ["mini-1", "emb-1", "cmp-1", "cmp-2", "rag-1", "emb-2"]


@pytest.mark.parametrize(
    "query",
    ["per_page=101", "per_page=0", "page=0", "filter[operation]=translation", "filter[created_after]=yesterday", "page=101&per_page=100"],
)
def test_audit_rejects_bad_parameters(h, loaded, query):
    response = h.http.get(f"/v1/axon/audit?{query}", headers=loaded)
    assert response.status_code == 422, response.json
    assert "error" in response.json


def test_audit_per_page_100_and_deepest_page_are_accepted(h, loaded):
    assert h.http.get("/v1/axon/audit?per_page=100", headers=loaded).status_code == 200
    assert h.http.get("/v1/axon/audit?per_page=100&page=100", headers=loaded).json["data"] == []


def test_audit_is_per_org(h, loaded):
    assert h.http.get("/v1/axon/audit", headers={**loaded, "X-Org-ID": "research"}).json["pagination"]["total"] == 0


def test_audit_reads_its_own_writes_with_min_position(h, loaded):
    position = h.post_events(loaded, [axon("late-1", "axon-embed-1", "embedding", 5, 0)]).json["position"]
    stale = h.http.get("/v1/axon/audit", headers=loaded)
    assert stale.status_code == 200 and stale.json["pagination"]["total"] == 6
    waiting = h.http.get(f"/v1/axon/audit?min_position={position}", headers={**loaded})
    assert waiting.status_code == 503  # nobody runs the projector in tests: not caught up
    h.project()
    fresh = h.http.get(f"/v1/axon/audit?min_position={position}", headers=loaded)
    assert fresh.json["pagination"]["total"] == 7
    assert int(fresh.headers["X-Ledger-Position"]) >= position


# retention ----------------------------------------------------------------------------
def test_retention_prunes_old_audit_rows_only_and_a_rebuild_agrees(h, agent, clock, settings):
    from workers.retention import prune_audit

    now = dict(occurred_at=None)  # occurred_at defaults to the (moving) clock
    old = [axon("old-1", "axon-embed-1", "embedding", 10, 0, **now), axon("old-2", "axon-embed-1", "embedding", 10, 0, **now)]
    assert h.post_events(agent, old).status_code == 202
    clock.advance(days=200)
    assert h.post_events(agent, [axon("new-1", "axon-embed-1", "embedding", 10, 0, **now)]).status_code == 202
    h.project()
    clock.advance(days=200)  # old-* are 400 days old now, new-1 is 200
    ledger_before = h.ledger_count()
    live = AxonAuditProjection()
    with h.engine.connect() as conn:
        usage_before = table_digest(conn, _usage_daily(), list(_usage_daily().primary_key.columns))
    assert prune_audit(settings, h.engine) == 2
    assert prune_audit(settings, h.engine) == 0
    audit = h.http.get("/v1/axon/audit?filter[created_after]=2020-01-01", headers=agent).json
    assert [r["id"] for r in audit["data"]] == ["new-1"]
    assert h.ledger_count() == ledger_before  # the ledger is never pruned
    with h.engine.connect() as conn:
        assert table_digest(conn, _usage_daily(), list(_usage_daily().primary_key.columns)) == usage_before  # usage totals untouched
        pruned = table_digest(conn, live.audit, live.digest_order(live.audit))
    rebuilt = AxonAuditProjection(retention_days=settings.audit_retention_days, clock=clock)
    reset(h.engine, rebuilt)
    catch_up(h.engine, h.store, rebuilt)
    with h.engine.connect() as conn:
        assert table_digest(conn, rebuilt.audit, rebuilt.digest_order(rebuilt.audit)) == pruned


def _usage_daily():
    from projections.usage_queries import USAGE

    return USAGE.daily


# SIEM ---------------------------------------------------------------------------------
def test_siem_outage_loses_nothing_and_resumes_in_order(h, agent, settings):
    from dataclasses import replace

    from workers.siem import cursor_position, forward_audit

    events = [axon(f"s-{i:02d}", "axon-embed-1", "embedding", i, 0, occurred_at=f"2026-11-20T0{i % 10}:00:00Z") for i in range(25)]
    h.post_events(agent, events[:10])
    h.post_events(agent, events[10:])
    h.project()
    port = free_port()
    siem = replace(settings, siem_url=f"http://127.0.0.1:{port}/ingest")

    # 1. nobody listens on the port: nothing is lost, the cursor stays put
    result = forward_audit(siem, h.engine, batch_size=7)
    assert result.sent == 0 and result.error and cursor_position(h.engine) == 0

    received: list[dict] = []
    state = {"answer": 503, "posts": 0}

    def receiver(method, path, headers, body):
        state["posts"] += 1
        assert method == "POST" and path == "/ingest"
        assert headers["Content-Type"] == "application/x-ndjson"
        if state["answer"] != 200:
            return state["answer"], b"{}"
        import json

        received.extend(json.loads(line) for line in body.decode().splitlines())
        if len(received) >= 14 and state.get("fail_after_two"):
            state["answer"] = 500  # goes down again after two batches
        return 200, b"{}"

    server = FakeServer(receiver, port)
    try:
        # 2. up but answering 503
        result = forward_audit(siem, h.engine, batch_size=7)
        assert result.sent == 0 and "503" in result.error and cursor_position(h.engine) == 0
        # 3. up, accepts two batches, then fails: the cursor stops after what was accepted
        state.update(answer=200, fail_after_two=True)
        result = forward_audit(siem, h.engine, batch_size=7)
        assert result.sent == 14 and result.error
        assert cursor_position(h.engine) == h_positions(h)[13]
        # 4. up again: the rest follows, in order, every record exactly once here
        state.update(answer=200, fail_after_two=False)
        result = forward_audit(siem, h.engine, batch_size=7)
        assert result.sent == 11 and result.error is None
        assert [r["id"] for r in received] == [r["id"] for r in _audit_in_position_order(h)]
        assert sorted(r["id"] for r in received) == sorted(e["event_id"] for e in events)
        assert set(received[0]) == {
            "id", "tenant_id", "user_id", "model", "operation", "prompt_tokens", "completion_tokens", "knowledge_base_id", "created_at",
        }
        # 5. caught up: nothing more is sent; new records follow on the next pass
        posts = state["posts"]
        assert forward_audit(siem, h.engine).sent == 0 and state["posts"] == posts
        h.post_events(agent, [axon("s-late", "axon-embed-1", "embedding", 1, 0)])
        h.project()
        assert forward_audit(siem, h.engine).sent == 1
        assert received[-1]["id"] == "s-late" and len(received) == 26
    finally:
        server.stop()


def _audit_in_position_order(h) -> list[dict]:
    from sqlalchemy import select

    t = AxonAuditProjection().audit
    with h.engine.connect() as conn:
        return [{"id": r.event_id, "position": r.position} for r in conn.execute(select(t).order_by(t.c.position))]


def h_positions(h) -> list[int]:
    return [r["position"] for r in _audit_in_position_order(h)]


def test_portal_api_keys_need_read_usage_and_read_audit(h, agent):
    browser = h.portal_user("ops@acme.test", permissions=["read:audit"])
    auditor = browser.post("/api/v1/keys", json={"name": "auditor", "scopes": ["read:audit"]}).json["key"]
    reporter = browser.post("/api/v1/keys", json={"name": "reporter", "scopes": ["read:usage"]}).json["key"]
    h.project()
    as_auditor = {"Authorization": f"Bearer {auditor}"}
    as_reporter = {"Authorization": f"Bearer {reporter}"}
    assert h.http.get("/v1/axon/audit", headers=as_auditor).status_code == 200
    assert h.http.get("/v1/axon/usage", headers=as_auditor).json["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert h.http.get("/v1/axon/usage", headers=as_reporter).status_code == 200
    assert h.http.get("/v1/axon/audit", headers=as_reporter).status_code == 403
