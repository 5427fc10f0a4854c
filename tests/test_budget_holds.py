"""Budget holds on both backends: reserve through the check, commit (by call or by a usage
event), release, expiry, the amounts they add to budgets, and what a replay rebuilds."""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.budgets.events import BudgetHoldCommitted, BudgetHoldExpired, BudgetHoldPlaced
from projections.framework import catch_up, check as rebuild_check, reset
from projections.registry import all_projections
from tests.conftest import usage
from workers.hold_expiry import expire_due


def create(h, headers, **fields):
    body = {"id": "b", "name": "Budget", "limit_usd": 50, "period": "monthly", "on_exceed": "block", **fields}
    response = h.http.post("/api/v1/budgets", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def reserve(h, headers, estimate="1", **body):
    return h.http.post(
        "/api/v1/budgets/check", json={"reserve": True, "estimated_cost_usd": estimate, **body}, headers=headers
    )


def granted(response) -> str:
    assert response.status_code == 201, response.json
    return response.json["hold_id"]


def refused(response) -> dict:
    assert response.status_code == 200, response.json
    assert response.json["allowed"] is False and "hold_id" not in response.json
    return response.json


def commit(h, headers, hold_id, **body):
    return h.http.post(f"/api/v1/budgets/holds/{hold_id}/commit", json=body, headers=headers)


def events_of(h, kind) -> list:
    return [r.event for r in h.store.read() if isinstance(r.event, kind)]


@pytest.fixture
def budget(h, agent):
    create(h, agent)
    h.project()
    return "b"


def test_a_reserve_places_a_hold_on_every_budget_it_falls_under(h, agent, budget):
    response = reserve(h, agent, "2.5", agent_id="bot", ttl_seconds=60)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["allowed"] is True and body["holds"] == [{"budget_id": "b", "held_usd": 2.5}]
    assert body["expires_at"] == "2026-11-20T12:01:00Z"
    hold = h.http.get(f"/api/v1/budgets/holds/{body['hold_id']}", headers=agent).json
    assert hold["state"] == "held" and hold["estimated_cost_usd"] == 2.5 and hold["placed_at"] == "2026-11-20T12:00:00Z"
    h.project()
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert (status["used"], status["held_usd"], status["available_usd"]) == (0, 2.5, 47.5)
    listed = h.http.get("/api/v1/budgets", headers=agent).json["budgets"][0]
    assert (listed["used_usd"], listed["held_usd"], listed["available_usd"]) == (0, 2.5, 47.5)
    plain = h.http.post("/api/v1/budgets/check", json={"estimated_cost_usd": 47.6}, headers=agent).json
    assert plain["allowed"] is False and plain["used_usd"] == 0 and plain["held_usd"] == 2.5 and plain["percentage"] == 5


def test_reserve_input_is_checked(h, agent, budget):
    def status(**body):
        return h.http.post("/api/v1/budgets/check", json=body, headers=agent).status_code

    assert status(reserve=True) == 422
    assert status(reserve=True, estimated_cost_usd=1, ttl_seconds=0) == 422
    assert status(reserve=True, estimated_cost_usd=1, ttl_seconds=3601) == 422
    assert status(estimated_cost_usd=1, ttl_seconds=10) == 422
    assert status(reserve=True, estimated_cost_usd=1, ttl_seconds=3600) == 201
    assert status(reserve=True, estimated_cost_usd=-1) == 422


def test_a_chosen_hold_id_is_idempotent_with_the_same_body_and_a_conflict_with_another(h, agent, budget):
    first = reserve(h, agent, "3", hold_id="call-1")
    again = reserve(h, agent, "3", hold_id="call-1")
    assert first.status_code == again.status_code == 201
    assert again.json["hold_id"] == "call-1" and again.json["holds"] == first.json["holds"]
    assert len(events_of(h, BudgetHoldPlaced)) == 1
    other = reserve(h, agent, "4", hold_id="call-1")
    assert other.status_code == 409 and other.json["error"]["code"] == "HOLD_ID_CONFLICT"


def test_a_refused_reserve_answers_the_blocked_response_and_places_nothing(h, agent, budget):
    for _ in range(50):
        granted(reserve(h, agent))
    count = h.ledger_count()
    answer = refused(reserve(h, agent))
    assert answer == {
        "allowed": False, "action": "block", "budget_id": "b", "budget_name": "Budget", "used_usd": 0,
        "held_usd": 50, "limit_usd": 50, "percentage": 100, "message": "Budget exceeded",
    }
    assert h.ledger_count() == count


def test_committed_holds_free_the_rest_at_once(h, agent, budget):
    holds = [granted(reserve(h, agent)) for _ in range(50)]
    refused(reserve(h, agent))
    for hold_id in holds[:20]:
        response = commit(h, agent, hold_id, actual_cost_usd="0.40")
        assert response.status_code == 200 and response.json["state"] == "committed", response.json
    for _ in range(12):  # no projection has run: the released $12 counts at once
        granted(reserve(h, agent))
    refused(reserve(h, agent))
    h.project()
    refused(reserve(h, agent))
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert (status["used"], status["held_usd"], status["available_usd"]) == (8, 42, 0)
    listed = h.http.get("/api/v1/budgets", headers=agent).json["budgets"][0]
    assert (listed["used_usd"], listed["held_usd"], listed["available_usd"]) == (8, 42, 0)
    granted_after = [h.http.post(f"/api/v1/budgets/holds/{i}/release", headers=agent) for i in holds[20:22]]
    assert all(r.status_code == 200 and r.json["state"] == "released" for r in granted_after)
    granted(reserve(h, agent, "2"))
    refused(reserve(h, agent, "0.01"))


def test_concurrent_reserves_and_commits_of_one_process_never_overbook(h, agent, budget):
    """Reserves and commits of one process waiting on the same period stream are decided in
    batches (group commit): each sees the holds the ones before it placed or settled, so
    however they are batched, 80 reserves of $1 at once against $50 grant exactly 50."""

    def one(_):
        return h.app.test_client().post(
            "/api/v1/budgets/check", json={"reserve": True, "estimated_cost_usd": "1"}, headers=agent
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(80)))
    assert sorted(r.status_code for r in answers) == [200] * 30 + [201] * 50
    holds = [r.json["hold_id"] for r in answers if r.status_code == 201]

    def settle(hold_id):
        return h.app.test_client().post(f"/api/v1/budgets/holds/{hold_id}/commit", json={"actual_cost_usd": "0.50"}, headers=agent)

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(r.status_code == 200 for r in pool.map(settle, holds[:20]))
    for _ in range(10):  # the 20 commits freed $10 at once
        granted(reserve(h, agent))
    refused(reserve(h, agent, "0.01"))


def test_an_actual_above_the_hold_is_recorded_in_full(h, agent, budget):
    hold_id = granted(reserve(h, agent, "1"))
    assert commit(h, agent, hold_id, actual_cost_usd="49.5").json["actual_cost_usd"] == 49.5
    refused(reserve(h, agent, "1"))
    h.project()
    assert h.http.get("/api/v1/budgets/b/status", headers=agent).json["used"] == 49.5
    granted(reserve(h, agent, "0.5"))


def test_commit_release_and_read_answer_what_the_hold_is(h, agent, budget):
    hold_id = granted(reserve(h, agent, "1"))
    assert commit(h, agent, hold_id).status_code == 422
    assert commit(h, agent, hold_id, actual_cost_usd="0.5").status_code == 200
    assert commit(h, agent, hold_id, actual_cost_usd="0.5").status_code == 200  # the same commit again
    again = commit(h, agent, hold_id, actual_cost_usd="0.7")
    assert again.status_code == 409 and again.json["error"]["code"] == "HOLD_COMMITTED"
    assert h.http.post(f"/api/v1/budgets/holds/{hold_id}/release", headers=agent).status_code == 409
    other = granted(reserve(h, agent, "1"))
    for _ in range(2):
        released = h.http.post(f"/api/v1/budgets/holds/{other}/release", headers=agent)
        assert released.status_code == 200 and released.json["state"] == "released"
    assert commit(h, agent, other, actual_cost_usd="1").json["error"]["code"] == "HOLD_RELEASED"
    assert h.http.get("/api/v1/budgets/holds/nope", headers=agent).status_code == 404
    assert len(events_of(h, BudgetHoldCommitted)) == 1


@pytest.mark.parametrize("order", ["usage first", "commit first"])
def test_a_usage_event_with_the_hold_id_and_a_commit_call_commit_once(h, agent, budget, order):
    hold_id = granted(reserve(h, agent, "5"))

    def post_usage():
        assert h.post_events(agent, [usage("u-1", cost_usd="2", hold_id=hold_id)]).status_code in (200, 201, 202)

    def post_commit():
        return commit(h, agent, hold_id, actual_cost_usd="2")

    if order == "usage first":
        post_usage()
        assert post_commit().status_code == 409  # committed by the usage already
    else:
        assert post_commit().status_code == 200
        post_usage()
    commits = events_of(h, BudgetHoldCommitted)
    assert len(commits) == 1 and commits[0].via == ("usage" if order == "usage first" else "call")
    h.project()
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert status["held_usd"] == 0
    assert status["used"] == 2  # the call's spend, counted once


@pytest.mark.parametrize("committed", ["3", "1"])
def test_a_usage_event_after_a_commit_call_replaces_the_commits_figure(h, agent, budget, committed):
    hold_id = granted(reserve(h, agent, "5"))
    assert commit(h, agent, hold_id, actual_cost_usd=committed).status_code == 200
    h.project()
    assert h.http.get("/api/v1/budgets/b/status", headers=agent).json["used"] == float(committed)
    h.post_events(agent, [usage("u-1", cost_usd="2", hold_id=hold_id), usage("u-2", cost_usd="0.5", hold_id=hold_id)])
    h.project()
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert status["used"] == 2.5  # both usages are spend; the commit's figure is replaced by the first
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert summary["estimated_cost_usd"] == 2.5  # the budget and the usage say the same


def test_a_second_usage_event_with_a_committed_holds_id_is_spend_that_refuses_later_reserves(h, agent, budget):
    # the $50 block budget: a $25 hold committed by its usage, then another $25 usage carrying
    # the same id (spend is a fact: recorded in full, the hold committed once)
    hold_id = granted(reserve(h, agent, "25"))
    for event_id in ("u-1", "u-2"):
        assert h.post_events(agent, [usage(event_id, cost_usd="25", hold_id=hold_id)]).status_code in (200, 201, 202)
    assert len(events_of(h, BudgetHoldCommitted)) == 1
    h.project()
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert (status["used"], status["held_usd"]) == (50, 0)
    assert refused(reserve(h, agent, "0.5"))["budget_id"] == "b"


def test_holds_of_a_deleted_budget_do_not_count_for_its_new_incarnation(h, agent, budget, clock):
    hold_id = granted(reserve(h, agent, "20"))
    assert h.http.delete("/api/v1/budgets/b", headers=agent).status_code in (200, 204)
    clock.advance(seconds=1)
    create(h, agent, on_exceed="warn")
    h.project()
    assert h.http.get("/api/v1/budgets/b/status", headers=agent).json["held_usd"] == 0
    listed = {b["id"]: b for b in h.http.get("/api/v1/budgets", headers=agent).json["budgets"]}
    assert listed["b"]["held_usd"] == 0
    assert h.http.get(f"/api/v1/budgets/holds/{hold_id}", headers=agent).json["state"] == "held"


def test_a_hold_covers_block_and_warn_budgets_and_a_refusal_places_none(h, agent):
    create(h, agent, id="block-team", scope="team", scope_id="eng", limit_usd=10)
    create(h, agent, id="warn-org", on_exceed="warn", limit_usd=100)
    h.project()
    hold = reserve(h, agent, "4", team_id="eng")
    assert {(x["budget_id"], x["held_usd"]) for x in hold.json["holds"]} == {("block-team", 4), ("warn-org", 4)}
    count = h.ledger_count()
    assert refused(reserve(h, agent, "7", team_id="eng"))["budget_id"] == "block-team"
    assert h.ledger_count() == count
    h.project()
    listed = {b["id"]: b for b in h.http.get("/api/v1/budgets", headers=agent).json["budgets"]}
    assert listed["block-team"]["held_usd"] == listed["warn-org"]["held_usd"] == 4


def test_a_hold_stops_counting_at_its_expiry_and_the_job_records_it(h, agent, budget, clock):
    hold_id = granted(reserve(h, agent, "50", ttl_seconds=30))
    refused(reserve(h, agent, "1"))
    clock.advance(seconds=30)
    assert h.http.get(f"/api/v1/budgets/holds/{hold_id}", headers=agent).json["state"] == "expired"
    h.project()
    assert h.http.get("/api/v1/budgets/b/status", headers=agent).json["held_usd"] == 0
    assert commit(h, agent, hold_id, actual_cost_usd="1").json["error"]["code"] == "HOLD_EXPIRED"
    later = granted(reserve(h, agent, "1", ttl_seconds=3600))
    assert expire_due(h.services) == 1
    assert expire_due(h.services) == 0  # the read model is behind: the ledger says it is expired already
    h.project()
    assert expire_due(h.services) == 0
    assert [e.hold_id for e in events_of(h, BudgetHoldExpired)] == [hold_id]
    assert h.http.get(f"/api/v1/budgets/holds/{later}", headers=agent).json["state"] == "held"


def test_the_hold_read_model_rebuilds_identically(h, agent, budget, clock):
    holds = [granted(reserve(h, agent, "3", ttl_seconds=60)) for _ in range(6)]
    commit(h, agent, holds[0], actual_cost_usd="2")
    h.http.post(f"/api/v1/budgets/holds/{holds[1]}/release", headers=agent)
    h.post_events(agent, [usage("u-9", cost_usd="1", hold_id=holds[2])])
    clock.advance(seconds=61)
    expire_due(h.services)
    h.project()
    expire_due(h.services)
    projection = next(p for p in all_projections() if p.name == "budget_status")
    reset(h.engine, projection)
    catch_up(h.engine, h.store, projection, batch_size=2)
    shadow = next(p for p in all_projections(prefix="check_") if p.name == "budget_status")
    assert rebuild_check(h.engine, h.store, projection, shadow, batch_size=1000) == []
    assert len(events_of(h, BudgetHoldExpired)) == 3


def test_another_tenants_hold_is_not_found(h, agent, budget):
    hold_id = granted(reserve(h, agent))
    h.tenant("globex")
    stranger = h.agent("globex", "prod")
    assert h.http.get(f"/api/v1/budgets/holds/{hold_id}", headers=stranger).status_code == 404
    assert commit(h, stranger, hold_id, actual_cost_usd="1").status_code == 404
    assert h.http.post(f"/api/v1/budgets/holds/{hold_id}/release", headers=stranger).status_code == 404
    assert h.http.get(f"/api/v1/budgets/holds/{hold_id}", headers=agent).json["state"] == "held"


def test_a_disabled_client_is_refused_by_the_check_at_once(h, agent, budget):
    assert h.http.post("/api/v1/budgets/check", json={}, headers=agent).status_code == 200
    client_id = base64.b64decode(agent["Authorization"].split()[1]).decode().split(":")[0]
    assert h.admin("DELETE", f"/api/v1/admin/clients/{client_id}").status_code == 204
    assert h.http.post("/api/v1/budgets/check", json={}, headers=agent).status_code == 401
    assert reserve(h, agent).status_code == 401


def test_the_hold_endpoints_are_in_the_openapi_document(h):
    spec = h.http.get("/openapi.json").json
    paths = spec["paths"]
    for path in ("/api/v1/budgets/holds/{hold_id}", "/api/v1/budgets/holds/{hold_id}/commit", "/api/v1/budgets/holds/{hold_id}/release"):
        operation = next(iter(paths[path].values()))
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/HoldOut"), (path, schema)
    reserved = paths["/api/v1/budgets/check"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert reserved["$ref"].endswith("/ReservedOut")
    hold = spec["components"]["schemas"]["HoldOut"]["properties"]
    assert {"state", "expires_at", "holds", "actual_cost_usd"} <= set(hold)
    check_body = paths["/api/v1/budgets/check"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    check_body = spec["components"]["schemas"][check_body["$ref"].rsplit("/", 1)[1]]  # the CheckIn component
    assert {"reserve", "ttl_seconds", "hold_id", "estimated_credits"} <= set(check_body["properties"])
