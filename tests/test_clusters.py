"""Scale-out (issue 22): two tenants on two PostgreSQL clusters. The second cluster is a
real server started from the machine's binaries for this session (tests/pg_cluster.py);
the first is the test server every other test uses."""
from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from api import create_app
from runtime.clusters import Clusters, price_book, setup_clusters
from tests.conftest import ADMIN_KEY, IN_CI, Harness, basic, drop_database, make_settings, new_database_url, require_postgres, usage
from tests.pg_cluster import PostgresServer, postgres_bin
from usage_ledger import cli
from workers.clusters import run_cluster_workers
from projections.framework import catch_up
from projections.registry import all_projections


@pytest.fixture(scope="session")
def second_server():
    """A second PostgreSQL server on a free port, for the whole session."""
    require_postgres()
    binaries = postgres_bin()
    if binaries is None:
        if IN_CI:
            pytest.fail("the scale-out tests need PostgreSQL's initdb and pg_ctl")
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on this machine")
    server = PostgresServer(binaries)
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def server_b(second_server):
    """The second server, running (a test that stopped it is followed by a restart)."""
    if not second_server.running():
        second_server.start()
    yield second_server
    if not second_server.running():
        second_server.start()


class TwoClusters:
    """One API app over clusters `a` (the directory's) and `b`, and the test's own
    Services per cluster (like a worker's) to catch the read models up."""

    def __init__(self, url_a: str, url_b: str, clock, **overrides):
        self.env = {"LEDGER_CLUSTERS": f"a={url_a},b={url_b}", "ADMIN_API_KEY": ADMIN_KEY}
        self.settings = make_settings(url_a, clock, ledger_clusters=self.env["LEDGER_CLUSTERS"], **overrides)
        setup_clusters(self.settings)
        self.app = create_app(self.settings)
        self.http = self.app.test_client()
        self.clusters = Clusters(self.settings, writer=True)

    def close(self) -> None:
        self.app.extensions["usage_ledger_clusters"].close()
        self.app.extensions["usage_ledger"].close()
        self.clusters.close()

    def project(self, *names: str) -> None:
        for name in names or self.clusters.names:
            services = self.clusters.services(name)
            for projection in all_projections():
                catch_up(services.engine, services.store, projection)

    def admin(self, method: str, path: str, **kwargs):
        headers = {"X-Admin-API-Key": ADMIN_KEY, **kwargs.pop("headers", {})}
        return self.http.open(path, method=method, headers=headers, **kwargs)

    def tenant(self, tenant_id: str, org: str = "prod", cluster: str | None = None) -> dict:
        body = {"tenant_id": tenant_id, "name": tenant_id, **({"cluster": cluster} if cluster else {})}
        created = self.admin("POST", "/api/v1/admin/tenants", json=body)
        assert created.status_code == 201, created.json
        response = self.admin("POST", f"/api/v1/admin/tenants/{tenant_id}/orgs", json={"org_id": org, "name": org})
        assert response.status_code == 201, response.json
        client = self.admin("POST", "/api/v1/admin/clients", json={"tenant_id": tenant_id, "org_id": org, "name": "agent"})
        assert client.status_code == 201, client.json
        return {"cluster": created.json["cluster"], "headers": basic(client.json["client_id"], client.json["client_secret"])}

    def cli(self, *args: str):
        return CliRunner().invoke(cli.main, list(args), env=self.env)


@pytest.fixture
def two(server_b, clock):
    url_a = new_database_url("postgres", None)
    url_b = server_b.new_database()
    deployment = TwoClusters(url_a, url_b, clock)
    yield deployment
    deployment.close()
    drop_database(url_a)
    if server_b.running():
        _drop_on(server_b, url_b)


def _drop_on(server: PostgresServer, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{server.url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _summary(two: TwoClusters, headers: dict, **query) -> dict:
    response = two.http.get("/api/v1/usage/summary", headers=headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def test_new_tenants_go_to_the_fewest_tenants_or_the_named_cluster(two):
    assert two.tenant("acme")["cluster"] == "a"  # ties: the first named
    assert two.tenant("globex")["cluster"] == "b"  # b has fewer now
    assert two.tenant("initech", cluster="b")["cluster"] == "b"
    assert two.tenant("umbrella")["cluster"] == "a"
    assert two.clusters.directory.tenants() == {"acme": "a", "globex": "b", "initech": "b", "umbrella": "a"}
    unknown = two.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "x", "name": "x", "cluster": "zz"})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "CLUSTER_NOT_FOUND"
    assert "x" not in two.clusters.directory.tenants()


def test_two_tenants_on_two_clusters_each_see_their_own_ledger_only(two):
    acme = two.tenant("acme", cluster="a")["headers"]
    globex = two.tenant("globex", org="gprod", cluster="b")["headers"]
    first = two.http.post("/api/v1/events", json={"events": [usage("a-1"), usage("a-2")]}, headers=acme)
    other = two.http.post("/api/v1/events", json={"events": [usage("g-1", prompt_tokens=7, completion_tokens=3)]}, headers=globex)
    assert first.status_code == 202 and other.status_code == 202
    # positions are per cluster: each ledger counts its own events only
    store_a, store_b = two.clusters.services("a").store, two.clusters.services("b").store
    assert first.json["position"] == store_a.max_position()
    assert other.json["position"] == store_b.max_position()
    assert store_b.max_position() < store_a.max_position()  # b never saw acme's provisioning or usage
    two.project()
    assert _summary(two, acme)["total_tokens"] == 3000
    assert _summary(two, globex)["total_tokens"] == 10
    # an idempotent retry is a duplicate in its own cluster
    again = two.http.post("/api/v1/events", json={"events": [usage("a-1")]}, headers=acme)
    assert again.json["duplicates"] == 1 and again.json["accepted"] == 0
    # isolation: a client cannot reach the other tenant's org, on whatever cluster it lives
    crossed = two.http.get("/api/v1/usage/summary", headers={**acme, "X-Org-ID": "gprod"})
    assert crossed.status_code == 403
    admin_b = two.http.get(
        "/api/v1/usage/summary", headers={"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "globex", "X-Org-ID": "gprod"}
    )
    assert admin_b.status_code == 200 and admin_b.json["total_tokens"] == 10


def test_read_your_writes_with_a_worker_per_cluster(server_b, clock):
    url_a, url_b = new_database_url("postgres", None), server_b.new_database()
    two = TwoClusters(url_a, url_b, clock, session_consistency=True, read_wait_seconds=10.0)
    stop = threading.Event()
    workers = threading.Thread(target=run_cluster_workers, args=(two.settings, (), stop), daemon=True)
    try:
        acme = two.tenant("acme", cluster="a")["headers"]
        globex = two.tenant("globex", cluster="b")["headers"]
        workers.start()
        for n in range(3):
            for headers, prefix in ((acme, "a"), (globex, "g")):
                posted = two.http.post("/api/v1/events", json={"events": [usage(f"{prefix}-{n}")]}, headers=headers)
                assert posted.status_code == 202
                # the very next read sees the write (session consistency, then min_position)
                assert _summary(two, headers)["total_llm_requests"] == n + 1
                assert _summary(two, headers, min_position=posted.json["position"])["total_llm_requests"] == n + 1
    finally:
        stop.set()
        workers.join(timeout=60)
        two.close()
        drop_database(url_a)
        _drop_on(server_b, url_b)


def test_each_cluster_verifies_and_rebuilds_on_its_own(two):
    acme = two.tenant("acme", cluster="a")["headers"]
    globex = two.tenant("globex", cluster="b")["headers"]
    two.http.post("/api/v1/events", json={"events": [usage("a-1")]}, headers=acme)
    two.http.post("/api/v1/events", json={"events": [usage("g-1")]}, headers=globex)
    two.project()
    result = two.cli("verify")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["intact"] and set(report["clusters"]) == {"a", "b"}
    assert all(r["intact"] for r in report["clusters"].values())
    only_b = two.cli("verify", "--cluster", "b")
    assert only_b.exit_code == 0 and set(json.loads(only_b.stdout)["clusters"]) == {"b"}
    check = two.cli("rebuild", "--check")
    assert check.exit_code == 0, check.output
    assert all(o["identical"] for o in json.loads(check.stdout)["clusters"].values())
    unknown = two.cli("verify", "--cluster", "zz")
    assert unknown.exit_code == 2 and "CLUSTER_NOT_FOUND" in unknown.output  # verify: 2 is a usage error


def test_a_stopped_cluster_answers_503_for_its_tenants_only_and_loses_nothing(two, server_b):
    acme = two.tenant("acme", cluster="a")["headers"]
    globex = two.tenant("globex", org="gprod", cluster="b")["headers"]
    acked = two.http.post("/api/v1/events", json={"events": [usage("g-1"), usage("g-2")]}, headers=globex)
    assert acked.status_code == 202
    server_b.stop()
    two.app.extensions["usage_ledger_clusters"].forget_health()
    down = two.http.post("/api/v1/events", json={"events": [usage("g-3")]}, headers=globex)
    assert down.status_code == 503, down.json
    assert down.json["error"]["code"] == "CLUSTER_UNAVAILABLE" and down.json["error"]["cluster"] == "b"
    assert int(down.headers["Retry-After"]) > 0
    assert two.http.get("/api/v1/usage/summary", headers=globex).status_code == 503
    # fan-out reads answer with what they have and name the missing cluster
    two.project("a")
    audit = two.admin("GET", "/api/v1/admin/audit-log")
    assert audit.status_code == 200, audit.json
    assert audit.json["partial"] is True and audit.json["missing_clusters"] == ["b"]
    assert {e["cluster"] for e in audit.json["entries"]} == {"a"}
    nodes = two.admin("GET", "/api/v1/admin/nodes/status?org_id=prod")
    assert nodes.status_code == 200 and nodes.json["partial"] is True and nodes.json["missing_clusters"] == ["b"]
    # the other cluster's tenant keeps working
    fine = two.http.post("/api/v1/events", json={"events": [usage("a-1")]}, headers=acme)
    assert fine.status_code == 202
    two.project("a")
    assert _summary(two, acme)["total_llm_requests"] == 1
    server_b.start()
    two.app.extensions["usage_ledger_clusters"].forget_health()
    two.clusters.forget_health()
    two.project()
    assert _summary(two, globex)["total_llm_requests"] == 2  # both acknowledged events, nothing else
    # the restart cut every pooled connection: the first request to meet a cut one may answer
    # 503, and then the pools drop all their broken connections (ledger/store, projections/db),
    # so the client's one retry succeeds
    for _ in range(2):
        retried = two.http.post("/api/v1/events", json={"events": [usage("g-3")]}, headers=globex)
        if retried.status_code != 503:
            break
    assert retried.status_code == 202 and retried.json["accepted"] == 1, retried.json


def test_without_ledger_clusters_the_one_cluster_is_default(h):
    response = h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "acme", "name": "Acme"})
    assert response.status_code == 201 and response.json["cluster"] == "default"
    elsewhere = h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "b", "name": "B", "cluster": "b"})
    assert elsewhere.status_code == 404 and elsewhere.json["error"]["code"] == "CLUSTER_NOT_FOUND"
    assert "usage_ledger_clusters" not in h.app.extensions


def test_price_overrides_reach_every_cluster_and_one_that_was_down_when_it_returns(two, server_b):
    two.tenant("acme", cluster="a")
    two.tenant("globex", cluster="b")
    rate = two.admin("PUT", "/api/v1/admin/credit-rates", json={"resource_type": "app_compute", "credits_per_unit": "0.05"})
    assert rate.status_code == 200 and "X-Clusters-Pending" not in rate.headers
    books = {name: price_book(services) for name, services in two.clusters}
    assert books["a"] == books["b"] and len(books["a"]) == 1
    server_b.stop()
    two.app.extensions["usage_ledger_clusters"].forget_health()
    price = two.admin("PUT", "/api/v1/admin/pricing", json={
        "provider": "openai", "model": "gpt-4o", "input_per_1k": "0.01", "output_per_1k": "0.02",
        "effective_from": "2026-11-01T00:00:00Z",
    })
    assert price.status_code == 200, price.json
    assert price.headers["X-Clusters-Pending"] == "b"  # a has it; b will when it is back
    check = two.cli("check-price-books")
    assert check.exit_code == 1 and json.loads(check.stdout)["missing_clusters"] == ["b"]
    server_b.start()
    two.clusters.forget_health()
    differing = two.cli("check-price-books")
    assert differing.exit_code == 1 and json.loads(differing.stdout)["differing"] == ["b"]
    delivered = two.cli("check-price-books", "--deliver")
    assert delivered.exit_code == 0, delivered.output
    report = json.loads(delivered.stdout)
    assert report["delivered"] == {"b": 1} and report["consistent"] and report["pending"] == 0
    assert price_book(two.clusters.services("b")) == price_book(two.clusters.services("a"))
    assert len(price_book(two.clusters.services("b"))) == 2


def test_fan_out_reads_cover_every_cluster(two):
    two.tenant("acme", cluster="a")
    globex = two.tenant("globex", org="gprod", cluster="b")["headers"]
    beat = two.http.post("/api/v1/heartbeats", json={"instance_id": "n-1", "instance_type": "agent"}, headers=globex)
    assert beat.status_code in (200, 201, 202), beat.json
    two.project()
    audit = two.admin("GET", "/api/v1/admin/audit-log?limit=500")
    assert audit.status_code == 200 and audit.json["partial"] is False
    tenants = {(e["cluster"], e["tenant_id"]) for e in audit.json["entries"]}
    assert ("a", "acme") in tenants and ("b", "globex") in tenants
    assert not {t for c, t in tenants if c == "a"} & {"globex"}
    one = two.admin("GET", "/api/v1/admin/audit-log?tenant_id=globex")
    assert one.status_code == 200 and {e["tenant_id"] for e in one.json["entries"]} == {"globex"}
    assert "partial" not in one.json  # one tenant: one cluster, read as always
    nodes = two.admin("GET", "/api/v1/admin/nodes/status?org_id=gprod")
    assert nodes.status_code == 200 and nodes.json["partial"] is False
    assert nodes.json["tenant_id"] == "globex" and nodes.json["total"] == 1
    users = two.admin("GET", "/api/v1/admin/users?tenant_id=globex")
    assert users.status_code == 200 and users.json["total"] == 0


def test_moving_a_tenant_under_live_ingest_counts_every_acknowledged_event_once(two):
    acme = two.tenant("acme", cluster="a")["headers"]
    two.tenant("globex", org="gprod", cluster="b")
    history = two.http.post("/api/v1/events", json={"events": [usage(f"old-{n}") for n in range(20)]}, headers=acme)
    assert history.status_code == 202
    acked = {f"old-{n}" for n in range(20)}
    refused: list[tuple[str, str]] = []
    unexpected: list = []
    stop = threading.Event()
    enough = threading.Event()
    moved = threading.Event()
    after_move: set[str] = set()

    def ingest() -> None:  # an agent that retries what it was refused, as clients do
        client = two.app.test_client()
        n = 0
        while not stop.is_set():
            event_id = f"live-{n}"
            response = client.post("/api/v1/events", json={"events": [usage(event_id)]}, headers=acme)
            if response.status_code == 202:
                acked.add(event_id)
                if moved.is_set():
                    after_move.add(event_id)
                n += 1
                if n >= 30:
                    enough.set()
                if len(after_move) >= 10:
                    stop.set()
            elif response.status_code == 503:
                refused.append((response.json["error"]["code"], response.headers.get("Retry-After")))
                stop.wait(0.05)
            else:
                unexpected.append((response.status_code, response.json))
                stop.set()

    agent = threading.Thread(target=ingest, daemon=True)
    agent.start()
    assert enough.wait(60)
    result = two.cli("move-tenant", "acme", "--to", "b", "--grace", "0.5")
    moved.set()
    agent.join(timeout=60)
    stop.set()
    assert result.exit_code == 0, result.output
    assert not unexpected, unexpected
    report = json.loads(result.stdout)
    assert report["from_cluster"] == "a" and report["to_cluster"] == "b"
    assert two.clusters.directory.cluster_of("acme") == "b"
    assert refused and {code for code, _ in refused} == {"TENANT_MOVING"}  # only during the switch
    assert all(after and int(after) > 0 for _, after in refused)
    two.project()
    target = _summary(two, acme)  # routed to b now
    assert target["total_llm_requests"] == len(acked)  # every acknowledged event, exactly once
    # the source froze at the switch: the target holds all of it, plus what came after
    from datetime import datetime, timezone

    from projections import usage_queries as q

    with two.clusters.services("a").engine.connect() as conn:
        source = q.summary(conn, q.Scope("acme", "prod"), datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert source["total_llm_requests"] == len(acked - after_move)
    assert target["total_llm_requests"] == source["total_llm_requests"] + len(after_move)
    assert target["total_tokens"] == 1500 * len(acked)
    # an acknowledged event retried after the move is a duplicate in the target
    again = two.http.post("/api/v1/events", json={"events": [usage("old-3")]}, headers=acme)
    assert again.status_code == 202 and again.json["duplicates"] == 1
    verify = two.cli("verify")
    assert verify.exit_code == 0, verify.output


def test_a_move_waits_for_the_writes_in_flight_and_gives_up_without_switching(two):
    acme = two.tenant("acme", cluster="a")["headers"]
    assert two.http.post("/api/v1/events", json={"events": [usage("w-0")]}, headers=acme).status_code == 202
    directory = two.clusters.directory
    assert directory.writes_in_flight("acme") == 0  # a request's lease ends with it
    slow = directory.begin_write("acme")  # a write past the directory check, not answered yet
    result = two.cli("move-tenant", "acme", "--to", "b", "--grace", "0.3")
    assert result.exit_code != 0 and "MOVE_WRITES_IN_FLIGHT" in result.output, result.output
    assert directory.entry("acme") == ("a", False)  # nothing switched, writes accepted again
    assert two.http.post("/api/v1/events", json={"events": [usage("w-1")]}, headers=acme).status_code == 202
    directory.end_write(slow)
    result = two.cli("move-tenant", "acme", "--to", "b", "--grace", "0.3")
    assert result.exit_code == 0, result.output
    assert directory.cluster_of("acme") == "b"


def test_a_command_line_write_holds_a_lease_and_is_refused_while_its_tenant_moves(two):
    two.tenant("acme", cluster="b")
    directory = two.clusters.directory
    directory.set_moving("acme", True)
    refused = two.cli("create-org", "acme", "ops", "--name", "Ops")
    assert refused.exit_code == 1 and refused.output.strip() == (
        "error: tenant acme is being moved to another cluster; retry when the move is done"
    ), refused.output
    assert not two.clusters.services("b").ledger.identity.org_exists("acme", "ops")
    assert directory.writes_in_flight("acme") == 0  # its lease ended with it
    directory.set_moving("acme", False)
    created = two.cli("create-org", "acme", "ops", "--name", "Ops")
    assert created.exit_code == 0, created.output
    assert two.clusters.services("b").ledger.identity.org_exists("acme", "ops")  # the tenant's own cluster
    assert not two.clusters.services("a").ledger.identity.org_exists("acme", "ops")
    assert directory.writes_in_flight("acme") == 0


def test_sync_license_from_the_command_line_syncs_the_licences_of_every_cluster(two):
    from tests.fakes import FakeServer, as_json

    def answer(method, path, headers, body):
        key = path.rsplit("/", 1)[-1]
        return 200, as_json({"license_key": key, "tier": "Enterprise", "nodes_total": 10, "credits_included": 500,
                             "expires_at": "2027-06-30T00:00:00Z", "status": "active"})

    manager = FakeServer(answer)
    try:
        for tenant, cluster in (("acme", "a"), ("globex", "b")):
            two.tenant(tenant, cluster=cluster)
            issued = two.admin("POST", "/api/v1/admin/licenses", json={
                "tenant_id": tenant, "org_id": "prod", "tier": "Enterprise", "nodes_total": 10,
                "expires_at": "2027-12-31T00:00:00Z", "license_key": f"LIC-{tenant}",
            })
            assert issued.status_code == 201, issued.json
        two.project()
        result = CliRunner().invoke(cli.main, ["sync-license"], env={**two.env, "LICENSE_MANAGER_URL": manager.url})
        assert result.exit_code == 0, result.output
        synced = {(o["tenant_id"], o["license_key"], o["ok"]) for o in json.loads(result.output)["synced"]}
        assert synced == {("acme", "LIC-acme", True), ("globex", "LIC-globex", True)}
    finally:
        manager.stop()


class ClusteredHarness(Harness):
    """tests/conftest.py's Harness over two clusters: the same helpers, so suites written
    for one cluster run unchanged with tenants on two."""

    def __init__(self, settings):
        setup_clusters(settings)
        self.settings = settings
        self.app = create_app(settings)
        self.http = self.app.test_client()
        self.clusters = Clusters(settings, writer=True)
        self.services = self.clusters.services(self.clusters.first)
        self.store, self.engine = self.services.store, self.services.engine

    def close(self) -> None:
        self.app.extensions["usage_ledger_clusters"].close()
        self.app.extensions["usage_ledger"].close()
        self.clusters.close()

    def project(self) -> int:
        return min(catch_up(s.engine, s.store, p) for _, s in self.clusters for p in all_projections())


@pytest.fixture
def clustered_world(server_b, clock, cloudflare):
    from tests.fake_cloudflare import ACCOUNT, GROUP, TOKEN
    from tests.security_support import two_tenants
    import tests.test_tenant_isolation as isolation

    url_a, url_b = new_database_url("postgres", None), server_b.new_database()
    h = ClusteredHarness(make_settings(
        url_a, clock, ledger_clusters=f"a={url_a},b={url_b}", deployment_mode="invpc", cf_api_token=TOKEN,
        cf_account_id=ACCOUNT, cf_access_group_id=GROUP, cf_api_base_url=cloudflare.base_url, cf_api_timeout_seconds=5,
    ))
    try:
        alpha, beta, facts = two_tenants(h, docs_reader=isolation.DOCS_READER)
        facts["client_id"] = alpha.client_id
        yield h, alpha, beta, facts
    finally:
        h.close()
        drop_database(url_a)
        _drop_on(server_b, url_b)


def test_the_cross_tenant_matrix_holds_with_the_tenants_on_two_clusters(clustered_world):
    import tests.test_tenant_isolation as isolation

    h, _alpha, beta, _facts = clustered_world
    assert h.clusters.directory.tenants() == {"alpha-t": "a", "beta-t": "b"}  # placed by the fewest-tenants rule
    try:
        isolation.test_another_tenant_gets_404_or_nothing_of_alphas_on_every_endpoint(clustered_world)
    except AssertionError as error:
        # audit entry ids are positions, and positions are per cluster: alpha's entry 1 is on
        # cluster a, and beta's own entry 1 on b is what beta is served (checked below)
        text = str(error).split("\nassert")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        other = [line for line in lines if "/api/v1/admin/audit-log/" not in line]
        assert not other, "\n".join(other)
    own = isolation.call(h, beta, "user", "GET", "/api/v1/admin/audit-log/1")
    assert own.status_code == 200 and own.json["tenant_id"] == "beta-t"



def _license_manager():
    from tests.fakes import FakeServer, as_json

    def answer(method, path, headers, body):
        return 200, as_json({"license_key": path.rsplit("/", 1)[-1], "tier": "Enterprise", "nodes_total": 10,
                             "credits_included": 500, "expires_at": "2027-06-30T00:00:00Z", "status": "active"})

    return FakeServer(answer)


@pytest.fixture
def two_consistent(server_b, clock):
    """Two clusters with session consistency on, as deployed (a short read wait), and a
    License Manager."""
    manager = _license_manager()
    url_a = new_database_url("postgres", None)
    url_b = server_b.new_database()
    deployment = TwoClusters(url_a, url_b, clock, session_consistency=True, read_wait_seconds=0.5,
                             license_manager_url=manager.url)
    yield deployment
    deployment.close()
    manager.stop()
    drop_database(url_a)
    if server_b.running():
        _drop_on(server_b, url_b)


def test_a_fan_out_waits_on_each_clusters_own_marks_and_the_sync_route_syncs_every_cluster(two_consistent):
    """The admin key's marks and the read-model positions a request has read are one
    cluster's: a fan-out read must not wait on another cluster for them (that position may
    never come there), and the admin sync route syncs the licences of every cluster."""
    two = two_consistent
    two.tenant("globex", cluster="b")
    two.tenant("acme", cluster="a")
    for n in range(12):  # the admin key's mark on cluster a is far beyond cluster b's head
        created = two.admin("POST", "/api/v1/admin/tenants/acme/orgs", json={"org_id": f"o{n}", "name": f"o{n}"})
        assert created.status_code == 201, created.json
    for tenant in ("acme", "globex"):
        issued = two.admin("POST", "/api/v1/admin/licenses", json={
            "tenant_id": tenant, "org_id": "prod", "tier": "Enterprise", "nodes_total": 10,
            "expires_at": "2027-12-31T00:00:00Z", "license_key": f"LIC-{tenant}",
        })
        assert issued.status_code == 201, issued.json
    two.project()
    audit = two.admin("GET", "/api/v1/admin/audit-log?limit=500")
    assert audit.status_code == 200, audit.json
    assert audit.json["partial"] is False and set(audit.json["positions"]) == {"a", "b"}

    synced = two.admin("POST", "/api/v1/admin/licenses/sync", json={})
    assert synced.status_code == 200, synced.json
    assert {(o["tenant_id"], o["license_key"], o["ok"]) for o in synced.json["synced"]} == {
        ("acme", "LIC-acme", True), ("globex", "LIC-globex", True)}
    assert synced.json["partial"] is False
