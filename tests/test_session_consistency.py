"""Session consistency: every principal reads its own writes, and its tenant's configuration
changes, with no position header, through any API process.

The first half runs in-process on both backends, with no projector running: a read that
must wait for a write answers 503 NOT_CAUGHT_UP within the bound, a read that must not
wait answers at once. The second half runs the real processes on PostgreSQL: two
`usage-ledger api` instances on different ports and one worker; every write goes through
the first and is read at once through the second.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from ledger.settings import Settings
from projections.consistency_marks import consistency_marks, marks_of, raise_marks
from projections.registry import setup_database
from tests.conftest import ADMIN_KEY, PASSWORD, Harness, basic, make_settings, usage
from tests.fakes import FakeServer, as_json
from tests.processes import free_port, start_cli, stop, wait_until

BOUND = 0.3  # read_wait_seconds of the in-process apps


@pytest.fixture
def h(database_url, clock):
    harness = Harness(make_settings(database_url, clock, session_consistency=True, read_wait_seconds=BOUND))
    harness.tenant("acme", ("prod", "research"))
    harness.project()
    yield harness
    harness.close()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def create_key(browser) -> dict:
    response = browser.post("/api/v1/keys", json={"name": "ci"})
    assert response.status_code == 201, response.json
    return response.json


# in-process, both backends ----------------------------------------------------------------
def test_an_own_write_not_yet_projected_answers_503_within_the_bound_then_its_result(h):
    browser = h.portal_user()
    h.project()
    key = create_key(browser)
    response, took = timed(lambda: browser.get(f"/api/v1/keys/{key['id']}"))
    assert response.status_code == 503 and response.json["error"]["code"] == "NOT_CAUGHT_UP"
    assert response.headers["Retry-After"]
    assert BOUND <= took < BOUND + 2
    h.project()
    response = browser.get(f"/api/v1/keys/{key['id']}")
    assert response.status_code == 200 and response.json["name"] == "ci"
    assert int(response.headers["X-Ledger-Position"]) >= key["position"]


def test_a_configuration_change_is_waited_for_by_every_principal_of_the_tenant(h):
    browser = h.portal_user()
    h.project()
    assert browser.get("/api/v1/license/status").status_code == 404  # nothing to wait for
    issued = h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": "prod", "tier": "Enterprise", "nodes_total": 5, "expires_at": "2027-12-31T00:00:00Z",
    })
    assert issued.status_code == 201
    assert browser.get("/api/v1/license/status").json["error"]["code"] == "NOT_CAUGHT_UP"
    h.project()
    assert browser.get("/api/v1/license/status").json["status"] == "ACTIVE"


def test_a_tenant_configuration_change_is_not_waited_for_by_other_tenants(h):
    h.tenant("globex")
    h.user("bob@globex.test", tenant_id="globex", org_id="prod")
    ada, bob = h.portal_user(), h.login("bob@globex.test")
    h.project()
    create_key(ada)  # acme's configuration changed; globex has nothing to wait for
    response, took = timed(lambda: bob.get("/api/v1/keys"))
    assert response.status_code == 200 and took < BOUND


def test_usage_is_waited_for_only_by_its_writer(h):
    writer, other = h.agent("acme", "prod"), h.agent("acme", "prod")
    h.project()
    before = h.http.get("/api/v1/usage/summary", headers=other)
    accepted = h.post_events(writer, [usage(f"e-{i}") for i in range(1000)])
    assert accepted.status_code == 202
    # the other agent's summary and budgets do not wait for the writer's usage
    for path in ("/api/v1/usage/summary", "/api/v1/budgets"):
        response, took = timed(lambda: h.http.get(path, headers=other))
        assert response.status_code == 200 and took < BOUND
        assert int(response.headers["X-Ledger-Position"]) < accepted.json["position"]
    assert h.http.get("/api/v1/usage/summary", headers=other).json == before.json
    # the writer's own summary does
    assert h.http.get("/api/v1/usage/summary", headers=writer).json["error"]["code"] == "NOT_CAUGHT_UP"
    h.project()
    assert h.http.get("/api/v1/usage/summary", headers=writer).json["total_llm_requests"] == 1000


def test_a_budget_created_by_one_agent_is_waited_for_by_another_agents_check(h):
    first, second = h.agent("acme", "prod"), h.agent("acme", "prod")
    h.project()
    body = {"id": "cap", "name": "cap", "limit_usd": 1, "period": "monthly", "on_exceed": "block"}
    assert h.http.post("/api/v1/budgets", json=body, headers=first).status_code == 201
    check = {"estimated_cost_usd": 5}
    assert h.http.post("/api/v1/budgets/check", json=check, headers=second).json["error"]["code"] == "NOT_CAUGHT_UP"
    h.project()
    decision = h.http.post("/api/v1/budgets/check", json=check, headers=second).json
    assert decision["allowed"] is False


def test_min_position_beyond_the_ledger_head_answers_422_at_once(h):
    agent = h.agent()
    head = h.store.max_position()
    response, took = timed(lambda: h.http.get(f"/api/v1/usage/summary?min_position={head + 1}", headers=agent))
    assert response.status_code == 422 and response.json["error"]["code"] == "POSITION_AHEAD_OF_LEDGER"
    assert took < BOUND
    response = h.http.get("/api/v1/budgets", headers={**agent, "X-Min-Ledger-Position": str(head + 1000)})
    assert response.json["error"]["code"] == "POSITION_AHEAD_OF_LEDGER"
    check = h.http.post(f"/api/v1/budgets/check?min_position={head + 1}", json={"estimated_cost_usd": 1}, headers=agent)
    assert check.json["error"]["code"] == "POSITION_AHEAD_OF_LEDGER"
    h.project()
    assert h.http.get(f"/api/v1/usage/summary?min_position={head}", headers=agent).status_code == 200


def test_switched_off_reads_answer_at_once_from_what_is_projected(database_url, clock):
    h = Harness(make_settings(database_url, clock, session_consistency=False, read_wait_seconds=BOUND))
    try:
        h.tenant("acme")
        browser = h.portal_user()
        h.project()
        key = create_key(browser)
        response, took = timed(lambda: browser.get(f"/api/v1/keys/{key['id']}"))
        assert response.status_code == 404 and took < BOUND
        with h.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM consistency_marks").scalar() == 0
    finally:
        h.close()


def test_a_mark_keeps_the_highest_position_written(h):
    with h.engine.begin() as conn:
        raise_marks(conn, ["client:a", "config:acme"], 40)
    with h.engine.begin() as conn:
        raise_marks(conn, ["client:a"], 12)  # a request that committed earlier answers later
    with h.engine.begin() as conn:
        raise_marks(conn, ["config:acme"], 41)
    with h.engine.connect() as conn:
        assert marks_of(conn, ["client:a", "config:acme", "client:b"]) == {"client:a": 40, "config:acme": 41}


def test_one_mark_per_principal_however_many_requests(h):
    agent = h.agent()
    for i in range(3):
        assert h.post_events(agent, [usage(f"m-{i}")]).status_code == 202
    with h.engine.connect() as conn:
        rows = conn.execute(select(consistency_marks).where(consistency_marks.c.mark_key.startswith("client:"))).all()
    assert [position for _, position in rows] == [h.store.max_position()]


def test_the_setting_reads_from_the_environment():
    assert Settings.from_env({}).session_consistency is True
    assert Settings.from_env({"SESSION_CONSISTENCY": "false"}).session_consistency is False
    assert Settings.from_env({"SESSION_CONSISTENCY": "0"}).session_consistency is False
