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

from api import consistency
from ledger.settings import Settings
from ledger.store import COPY_THRESHOLD, NewEvent, StreamConflict, also_in_appends, reset_also_in_appends, stream_id
from projections.consistency_marks import consistency_marks, marks_of, prune, raise_marks, raise_marks_statement
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


def test_marks_every_read_model_has_passed_are_pruned(h):
    agent = h.agent()
    assert h.post_events(agent, [usage("p-1")]).status_code == 202
    with h.engine.begin() as conn:
        assert prune(conn) == 0  # not projected yet: the writer's mark still makes reads wait
    h.project()
    with h.engine.begin() as conn:
        raise_marks(conn, ["client:ahead"], h.store.max_position() + 1)
        assert prune(conn) >= 1
        assert [k for k, in conn.execute(select(consistency_marks.c.mark_key))] == ["client:ahead"]
    assert h.http.get("/api/v1/usage/summary", headers=agent).status_code == 200


@pytest.mark.parametrize("count", [1, COPY_THRESHOLD])  # an insert, and on PostgreSQL a COPY
def test_statements_also_run_in_an_append_commit_with_it_and_not_without_it(h, count):
    h.post_events(h.agent(), [usage("seed")])
    template = h.store.read()[-1].event
    events = [NewEvent(stream_id("also", str(count), str(i)), 1, template) for i in range(count)]
    token = also_in_appends(lambda position, placeholder: [raise_marks_statement(["client:also"], position, placeholder)])
    try:
        positions = h.store.append(events)
        with h.engine.connect() as conn:
            assert marks_of(conn, ["client:also"]) == {"client:also": positions[-1]}
        with h.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM consistency_marks")
        with pytest.raises(StreamConflict):
            h.store.append(events)  # every version taken: nothing appended, no mark
    finally:
        reset_also_in_appends(token)
    h.store.append([NewEvent(stream_id("also", str(count), "after"), 1, template)])  # no longer in this context
    with h.engine.connect() as conn:
        assert marks_of(conn, ["client:also"]) == {}


def test_a_writes_marks_commit_with_its_append_not_in_a_second_transaction(h, monkeypatch):
    agent = h.agent()
    monkeypatch.setattr(consistency, "raise_marks", lambda *_: pytest.fail("a second transaction raised the marks"))
    accepted = h.post_events(agent, [usage("one-commit")])
    assert accepted.status_code == 202
    with h.engine.connect() as conn:
        marks = conn.execute(select(consistency_marks)).all()
    assert [position for key, position in marks if key.startswith("client:")] == [accepted.json["position"]]


def test_the_setting_reads_from_the_environment():
    assert Settings.from_env({}).session_consistency is True
    assert Settings.from_env({"SESSION_CONSISTENCY": "false"}).session_consistency is False
    assert Settings.from_env({"SESSION_CONSISTENCY": "0"}).session_consistency is False


# across processes, PostgreSQL ----------------------------------------------------------------
PROCESS_BOUND = 5.0  # READ_WAIT_SECONDS of the API processes
ROUNDS = 20


def call(base: str, method: str, path: str, body=None, headers=None):
    """(status, headers, JSON body) of one request, as any HTTP client would send it."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status, answered = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, answered = error.read(), error.code, error.headers
    return status, answered, json.loads(raw) if raw else None


class Deployment:
    """Two API instances and one worker on one PostgreSQL database."""

    def __init__(self, database_url: str, license_manager_url: str):
        self.database_url = database_url
        self.first, self.second = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
        env = dict(ADMIN_API_KEY=ADMIN_KEY, READ_WAIT_SECONDS=str(PROCESS_BOUND), LICENSE_MANAGER_URL=license_manager_url)
        self.apis = [
            start_cli(database_url, "api", "--port", base.rsplit(":", 1)[1], "--workers", "1", **env)
            for base in (self.first, self.second)
        ]
        self.worker = self.start_worker()
        for base in (self.first, self.second):
            wait_until(lambda: self._up(base), 60, f"the API at {base}")

    def start_worker(self):
        return start_cli(self.database_url, "work")

    @staticmethod
    def _up(base: str) -> bool:
        try:
            return call(base, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    def admin(self, base: str, method: str, path: str, body=None):
        return call(base, method, path, body, {"X-Admin-API-Key": ADMIN_KEY})

    def login(self, base: str, email: str) -> dict:
        """The headers a browser sends after logging in (cookie and the CSRF header)."""
        request = urllib.request.Request(base + "/api/v1/auth/login", method="POST",
                                         data=json.dumps({"email": email, "password": PASSWORD}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        return {"Cookie": cookie, "X-Requested-With": "XMLHttpRequest"}

    def close(self) -> None:
        for process in [*self.apis, self.worker]:
            stop(process)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    from tests.conftest import drop_database, new_database_url

    url = new_database_url("postgres", tmp_path_factory.mktemp("session"))
    setup_database(Settings(database_url=url))
    license_manager = FakeServer(lambda method, path, headers, body: (200, as_json({
        "license_key": path.rsplit("/", 1)[-1], "tier": "Enterprise", "nodes_total": 10, "credits_included": 1000,
        "expires_at": "2027-06-30T00:00:00Z", "status": "active"})))
    deployment = Deployment(url, license_manager.url)
    try:
        d = deployment
        assert d.admin(d.first, "POST", "/api/v1/admin/tenants", {"tenant_id": "acme", "name": "Acme"})[0] == 201
        for org in ["prod", *(f"org-{i}" for i in range(2 * ROUNDS))]:
            assert d.admin(d.first, "POST", "/api/v1/admin/tenants/acme/orgs", {"org_id": org, "name": org})[0] == 201
        yield deployment
    finally:
        deployment.close()
        license_manager.stop()
        drop_database(url)


def new_agent(d: Deployment, org: str = "prod") -> dict:
    status, _, body = d.admin(d.first, "POST", "/api/v1/admin/clients", {"tenant_id": "acme", "org_id": org, "name": "agent"})
    assert status == 201, body
    return basic(body["client_id"], body["client_secret"])


def new_user(d: Deployment, email: str, org: str = "prod", permissions=()) -> None:
    status, _, body = d.admin(d.first, "POST", "/api/v1/admin/users", {
        "tenant_id": "acme", "org_id": org, "email": email, "password": PASSWORD, "permissions": list(permissions)})
    assert status == 201, body


def licence(org: str, key: str | None = None) -> dict:
    return {"tenant_id": "acme", "org_id": org, "tier": "Enterprise", "nodes_total": 10,
            "expires_at": "2027-12-31T00:00:00Z", **({"license_key": key} if key else {})}


def recent_usage(event_id: str) -> dict:
    at = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return usage(event_id, occurred_at=at)


def test_a_key_created_through_one_process_is_read_through_another(deployment):
    d = deployment
    new_user(d, "keys@acme.test")
    session = d.login(d.first, "keys@acme.test")
    for i in range(ROUNDS):
        status, _, created = call(d.first, "POST", "/api/v1/keys", {"name": f"k{i}"}, session)
        assert status == 201, created
        status, headers, key = call(d.second, "GET", f"/api/v1/keys/{created['id']}", headers=session)
        assert (status, key["name"]) == (200, f"k{i}"), key
        assert int(headers["X-Ledger-Position"]) >= created["position"]


def test_a_licence_issued_with_the_admin_key_is_active_for_the_orgs_portal_session(deployment):
    d = deployment
    for i in range(ROUNDS):
        org = f"org-{i}"
        new_user(d, f"owner-{i}@acme.test", org)
        session = d.login(d.first, f"owner-{i}@acme.test")
        assert d.admin(d.first, "POST", "/api/v1/admin/licenses", licence(org))[0] == 201
        status, _, report = call(d.second, "GET", "/api/v1/license/status", headers=session)
        assert (status, report.get("status")) == (200, "ACTIVE"), report


def test_a_policy_created_is_in_the_export_at_once(deployment):
    d = deployment
    new_user(d, "policies@acme.test")
    session = d.login(d.second, "policies@acme.test")
    for i in range(ROUNDS):
        status, _, _ = d.admin(d.first, "POST", "/api/v1/admin/policies", {
            "tenant_id": "acme", "org_id": "prod", "policy_id": f"p{i}", "name": f"Policy {i}", "rules": {"pii": ["ssn"]}})
        assert status == 201
        status, _, exported = call(d.second, "GET", "/api/v1/policies/export", headers=session)
        assert status == 200 and f"p{i}" in {p["policy_id"] for p in exported["policies"]}


def test_a_licence_issued_is_synced_by_sync_now_at_once(deployment):
    d = deployment
    for i in range(ROUNDS):
        org, key = f"org-{ROUNDS + i}", f"LIC-{i}"
        assert d.admin(d.first, "POST", "/api/v1/admin/licenses", licence(org, key))[0] == 201
        status, _, body = d.admin(d.second, "POST", "/api/v1/admin/licenses/sync")
        assert status == 200, body
        outcome = {o["license_key"]: o for o in body["synced"]}.get(key)
        assert outcome is not None and outcome["ok"], body


def test_ingest_then_summary_through_another_process(deployment):
    d = deployment
    agent = new_agent(d)
    for i in range(ROUNDS):
        status, _, accepted = call(d.first, "POST", "/api/v1/events", {"events": [recent_usage(f"s-{i}")]}, agent)
        assert status == 202, accepted
        status, _, summary = call(d.second, "GET", "/api/v1/usage/summary", headers=agent)
        assert status == 200 and summary["total_llm_requests"] == i + 1, summary


def test_a_budget_created_by_one_agent_is_read_by_another_at_once(deployment):
    d = deployment
    creator, reader = new_agent(d), new_agent(d)
    for i in range(ROUNDS):
        body = {"id": f"b{i}", "name": f"b{i}", "limit_usd": 10, "period": "monthly"}
        status, _, created = call(d.first, "POST", "/api/v1/budgets", body, creator)
        assert status == 201, created
        status, _, state = call(d.second, "GET", f"/api/v1/budgets/b{i}/status", headers=reader)
        assert (status, state.get("status")) == (200, "ok"), state


def test_a_user_created_logs_in_through_another_process(deployment):
    d = deployment
    for i in range(ROUNDS):
        new_user(d, f"new-{i}@acme.test")
        status, _, me = call(d.second, "GET", "/api/v1/auth/me", headers=d.login(d.second, f"new-{i}@acme.test"))
        assert (status, me["email"]) == (200, f"new-{i}@acme.test")


def test_one_agents_burst_does_not_hold_another_agents_reads(deployment):
    d = deployment
    burst, reader = new_agent(d, "org-1"), new_agent(d, "org-2")  # one org each: the summary is the org's
    status, _, own = call(d.first, "POST", "/api/v1/events", {"events": [recent_usage("mine")]}, reader)
    assert status == 202
    head = {"position": own["position"]}
    done = threading.Event()

    def ingest():
        try:
            for batch in range(50):
                events = [recent_usage(f"burst-{batch}-{i}") for i in range(1000)]
                status, _, body = call(d.first, "POST", "/api/v1/events", {"events": events}, burst)
                assert status == 202, body
                head["position"] = body["position"]
        finally:
            done.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    reads = []
    try:
        while not done.is_set():
            a_position = head["position"]
            started = time.monotonic()
            status, headers, summary = call(d.second, "GET", "/api/v1/usage/summary", headers=reader)
            took = time.monotonic() - started
            assert status == 200 and summary["total_llm_requests"] == 1, summary  # its own write, not the burst
            reads.append((took, a_position, int(headers["X-Ledger-Position"])))
    finally:
        writer.join()
    assert head["position"] > own["position"] + 49_000
    assert len(reads) >= 3
    assert max(took for took, _, _ in reads) < PROCESS_BOUND / 2, reads
    assert any(reflected < a_position for _, a_position, reflected in reads), reads  # it did not wait for A


def test_with_the_worker_stopped_an_own_write_read_answers_503_within_the_bound(deployment):
    d = deployment
    new_user(d, "stopped@acme.test")
    session = d.login(d.first, "stopped@acme.test")
    stop(d.worker)
    try:
        status, _, created = call(d.first, "POST", "/api/v1/keys", {"name": "late"}, session)
        assert status == 201
        started = time.monotonic()
        status, headers, body = call(d.second, "GET", f"/api/v1/keys/{created['id']}", headers=session)
        took = time.monotonic() - started
        assert (status, body["error"]["code"]) == (503, "NOT_CAUGHT_UP")
        assert headers["Retry-After"]
        assert PROCESS_BOUND - 0.5 <= took < PROCESS_BOUND + 3
    finally:
        d.worker = d.start_worker()
    status, _, key = call(d.second, "GET", f"/api/v1/keys/{created['id']}", headers=session)
    assert (status, key["name"]) == (200, "late")


def test_min_position_beyond_the_head_answers_422_through_a_process(deployment):
    d = deployment
    agent = new_agent(d)
    status, _, accepted = call(d.first, "POST", "/api/v1/events", {"events": [recent_usage("ahead")]}, agent)
    status, _, body = call(d.second, "GET", f"/api/v1/usage/summary?min_position={accepted['position'] + 10**9}", headers=agent)
    assert (status, body["error"]["code"]) == (422, "POSITION_AHEAD_OF_LEDGER")


@pytest.mark.parametrize(
    "path, configuration",
    [
        ("/api/v1/events", False),  # JSON and CloudEvents
        ("/v1/traces", False),  # OTLP
        ("/api/v1/integrations/litellm", False),
        ("/api/v1/events/e-1/void", False),
        ("/api/v1/events/e-1/amend", False),
        ("/api/v1/heartbeats", False),
        ("/api/v1/budgets", True),
        ("/api/v1/keys", True),
        ("/api/v1/budgets/check", None),  # a reserve: holds are read from the ledger
        ("/api/v1/budgets/holds/h-1/commit", None),
        ("/api/v1/budgets/holds/h-1/release", None),
    ],
)
def test_every_usage_ingest_raises_only_its_writers_mark(h, path, configuration):
    """Usage from any ingest format is waited for by its writer only; configuration changes
    by every principal of the tenant (api/consistency.py USAGE_WRITES)."""
    from api.auth import Principal

    with h.app.test_request_context(path, method="POST"):
        consistency.g.principal = Principal("client", "acme", "prod", "agent", client_id="c-1")
        keys = consistency._mark_keys()
    if configuration is None:
        assert keys == []
    else:
        assert keys[0] == "client:c-1"
        assert ("config:acme" in keys) is configuration


def test_appends_of_two_principals_written_in_one_group_raise_each_its_own_mark(h):
    """Group commit (ledger/group_commit.py): one request's thread may write another's
    append; each append's marks are still made from its own request."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_group_commit import _Held

    agents = [h.agent("acme", "prod") for _ in range(3)]
    ids = [basic_id(a) for a in agents]
    store = h.app.extensions["usage_ledger"].store
    held = _Held(store, waiting=2)

    def post(index: int):
        return h.app.test_client().post("/api/v1/events", json={"events": [usage(f"g-{index}")]}, headers=agents[index])

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, 0)
        assert held.leading.wait(30)
        responses = [first] + [pool.submit(post, i) for i in (1, 2)]
        positions = [r.result().json["position"] for r in responses]
    assert held.calls == [1, 2]  # the second and third went in one transaction, written by one thread
    with h.engine.connect() as conn:
        marks = marks_of(conn, [f"client:{i}" for i in ids])
    assert marks == {f"client:{i}": p for i, p in zip(ids, positions)}


def basic_id(headers: dict) -> str:
    import base64

    return base64.b64decode(headers["Authorization"].split()[1]).decode().split(":", 1)[0]
