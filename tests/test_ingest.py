"""POST /api/v1/events: the batch rules of SPEC.md §3 on both backends."""
from __future__ import annotations

import pytest

from tests.conftest import usage


def test_a_single_event_is_accepted_with_its_position(h, agent):
    response = h.post_events(agent, usage("e-1"))
    assert response.status_code == 202
    assert response.json["accepted"] == 1 and response.json["duplicates"] == 0
    assert response.headers["X-Ledger-Position"] == str(response.json["position"])
    assert response.json["position"] == h.store.max_position()


def test_a_batch_is_appended_in_one_piece(h, agent):
    before = h.ledger_count()
    response = h.post_events(agent, [usage(f"e-{i}") for i in range(25)])
    assert response.status_code == 202 and response.json["accepted"] == 25
    assert h.ledger_count() == before + 25


@pytest.mark.parametrize(
    "field,value",
    [
        ("event_id", ""),
        ("event_id", "has space"),
        ("event_id", "x" * 129),
        ("event_type", "Not-A-Slug"),
        ("occurred_at", "yesterday"),
        ("occurred_at", "2026-11-20T12:06:00Z"),  # more than 5 minutes in the future
        ("occurred_at", "2026-10-15T11:59:00Z"),  # older than the 35-day window
        ("operation", "translation"),
        ("resource_type", "gpu"),
        ("quantity", -1),
        ("prompt_tokens", -5),
        ("prompt_tokens", 1.5),
        ("total_tokens", 7),  # prompt + completion is 1500
        ("latency_ms", -1),
        ("cost_usd", -0.01),
        ("cost_usd", "0.1234567891"),
        ("credits", -2),
        ("policies_evaluated", -1),
        ("http_status_code", 99),
        ("success", "yes"),
        ("metadata", ["not", "an", "object"]),
        ("metadata", {"blob": "x" * 9000}),
        ("client_id", "someone-else"),
        ("tenant_id", "other-tenant"),
        ("surprise", 1),
    ],
)
def test_an_invalid_item_rejects_the_whole_batch_and_names_the_item(h, agent, field, value):
    before = h.ledger_count()
    bad = usage("bad-one")
    bad[field] = value
    response = h.post_events(agent, [usage("good-0"), usage("good-1"), bad])
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "VALIDATION_FAILED"
    item = error["items"][0]
    assert item["index"] == 2
    assert item["field"] == field
    assert item["message"]
    assert h.ledger_count() == before


def test_every_invalid_item_is_reported(h, agent):
    response = h.post_events(agent, [usage("a", prompt_tokens=-1), usage("b"), usage("c", latency_ms=-3)])
    assert response.status_code == 422
    assert [(i["index"], i["event_id"]) for i in response.json["error"]["items"]] == [(0, "a"), (2, "c")]


def test_deeply_nested_metadata_is_rejected(h, agent):
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    response = h.post_events(agent, [usage("deep", metadata=deep)])
    assert response.status_code == 422
    assert response.json["error"]["items"][0]["field"] == "metadata"


def test_batches_above_one_thousand_events_are_too_large(h, agent):
    response = h.post_events(agent, [usage(f"e-{i}") for i in range(1001)])
    assert response.status_code == 413
    assert response.json["error"]["code"] == "BATCH_TOO_LARGE"


def test_bodies_above_five_mib_are_too_large(h, agent):
    body = b'{"events": [' + b" " * (5 * 1024 * 1024) + b"]}"
    response = h.http.post("/api/v1/events", data=body, headers={**agent, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "error" in response.json


def test_malformed_json_is_a_clear_error(h, agent):
    response = h.http.post("/api/v1/events", data=b"{not json", headers={**agent, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "MALFORMED_JSON"


def test_a_stored_duplicate_is_counted_not_appended(h, agent):
    h.post_events(agent, [usage("e-1")])
    before = h.ledger_count()
    response = h.post_events(agent, [usage("e-1"), usage("e-2")])
    assert response.status_code == 202
    assert response.json == {"accepted": 1, "duplicates": 1, "position": response.json["position"]}
    assert h.ledger_count() == before + 1


def test_a_retry_without_occurred_at_is_still_a_duplicate(h, agent, clock):
    event = usage("no-time", occurred_at=None)
    h.post_events(agent, [event])
    clock.advance(seconds=30)
    response = h.post_events(agent, [event])
    assert response.json["duplicates"] == 1 and response.json["accepted"] == 0


def test_the_same_id_with_different_content_is_a_conflict_and_nothing_is_appended(h, agent):
    h.post_events(agent, [usage("e-1")])
    before = h.ledger_count()
    response = h.post_events(agent, [usage("e-new"), usage("e-1", prompt_tokens=999)])
    assert response.status_code == 409
    assert response.json["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert response.json["error"]["event_ids"] == ["e-1"]
    assert h.ledger_count() == before


def test_duplicates_inside_one_batch_follow_the_same_rules(h, agent):
    response = h.post_events(agent, [usage("twin"), usage("twin")])
    assert response.json["accepted"] == 1 and response.json["duplicates"] == 1
    response = h.post_events(agent, [usage("pair"), usage("pair", completion_tokens=1)])
    assert response.status_code == 409 and response.json["error"]["event_ids"] == ["pair"]


def test_event_ids_are_unique_per_tenant_not_globally(h, agent):
    h.tenant("globex")
    other = h.agent("globex", "prod")
    assert h.post_events(agent, [usage("shared-id")]).json["accepted"] == 1
    assert h.post_events(other, [usage("shared-id", prompt_tokens=1)]).json["accepted"] == 1


def test_money_is_exact_and_unpriced_models_are_flagged(h, agent):
    h.post_events(
        agent,
        [
            usage("given", cost_usd="0.1"),
            usage("given-2", cost_usd="0.2"),
            usage("priced", cost_usd=None),  # gpt-4o: 1000 × 0.0025/1K + 500 × 0.01/1K = 0.0075
            usage("unknown", llm_provider="acme", llm_model="secret-llm", cost_usd=None),
        ],
    )
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert summary["estimated_cost_usd"] == 0.3075
    assert summary["unpriced_events"] == 1


def test_credentials_are_required(h, agent):
    assert h.post_events({}, [usage("x")]).status_code == 401
    assert h.post_events({"Authorization": "Basic bm9wZTpub3Bl"}, [usage("x")]).status_code == 401
    assert h.post_events({"Authorization": "Basic !!!"}, [usage("x")]).status_code == 401


def test_x_org_id_picks_another_org_of_the_same_tenant_only(h, agent):
    assert h.post_events({**agent, "X-Org-ID": "research"}, [usage("r-1")]).status_code == 202
    h.tenant("globex", ("globex-org",))
    response = h.post_events({**agent, "X-Org-ID": "globex-org"}, [usage("r-2")])
    assert response.status_code == 403
    assert response.json["error"]["code"] == "ORG_FORBIDDEN"


def test_a_disabled_client_is_refused(h, agent):
    from tests.conftest import basic  # noqa: F401 - documents where the headers come from

    client_id = _client_id(agent)
    assert h.admin("DELETE", f"/api/v1/admin/clients/{client_id}").status_code == 204
    assert h.post_events(agent, [usage("after-disable")]).status_code == 401


def test_a_rotated_secret_replaces_the_old_one(h, agent):
    from tests.conftest import basic

    client_id = _client_id(agent)
    response = h.admin("POST", f"/api/v1/admin/clients/{client_id}/rotate")
    assert response.status_code == 200
    assert h.post_events(agent, [usage("old-secret")]).status_code == 401
    fresh = basic(client_id, response.json["client_secret"])
    assert h.post_events(fresh, [usage("new-secret")]).status_code == 202


def _client_id(headers: dict) -> str:
    import base64

    return base64.b64decode(headers["Authorization"][6:]).decode().split(":")[0]
