"""Heartbeats and node status (seed 000): invpc-only portal views, thresholds by the
injected clock, the admin view in any mode."""
from __future__ import annotations

import pytest

from tests.conftest import Harness, make_settings


@pytest.fixture
def invpc(database_url, clock):
    harness = Harness(make_settings(database_url, clock, deployment_mode="invpc"))
    harness.tenant("acme", ("prod", "research"))
    harness.agent_headers = harness.agent("acme", "prod")
    yield harness
    harness.close()


def beat(h, headers, instance_id, instance_type="agent", **extra):
    response = h.http.post(
        "/api/v1/heartbeats", json={"instance_id": instance_id, "instance_type": instance_type, **extra}, headers=headers
    )
    assert response.status_code == 202, response.json
    return response


def licence(h, nodes_total, org_id="prod"):
    response = h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": org_id, "tier": "Enterprise", "nodes_total": nodes_total,
        "expires_at": "2027-11-20T12:00:00Z",
    })
    assert response.status_code == 201


def test_a_heartbeat_answers_202_with_its_position(h, agent):
    response = beat(h, agent, "agent-a-01")
    assert response.json["position"] == h.store.max_position()
    assert response.headers["X-Ledger-Position"] == str(response.json["position"])


@pytest.mark.parametrize(
    "body",
    [
        {"instance_type": "agent"},
        {"instance_id": "a-1"},
        {"instance_id": "a-1", "instance_type": "database"},
        {"instance_id": "has space", "instance_type": "agent"},
        {"instance_id": "a-1", "instance_type": "agent", "port": 70000},
        {"instance_id": "a-1", "instance_type": "agent", "host_info": ["not", "an", "object"]},
        {"instance_id": "a-1", "instance_type": "agent", "surprise": 1},
    ],
)
def test_an_invalid_heartbeat_answers_422(h, agent, body):
    before = h.ledger_count()
    assert h.http.post("/api/v1/heartbeats", json=body, headers=agent).status_code == 422
    assert h.ledger_count() == before


def test_heartbeats_need_client_credentials(h, agent):
    assert h.http.post("/api/v1/heartbeats", json={"instance_id": "a", "instance_type": "agent"}).status_code == 401


def test_in_saas_node_views_answer_403_with_their_codes(h, agent):
    browser = h.portal_user()
    nodes = browser.get("/api/v1/nodes")
    assert nodes.status_code == 403 and nodes.json["error"]["code"] == "NODE_METRICS_UNAVAILABLE"
    status = browser.get("/api/v1/nodes/status")
    assert status.status_code == 403 and status.json["error"]["code"] == "NODE_STATUS_UNAVAILABLE"


def test_active_nodes_are_listed_with_hostname_port_and_host_info(invpc):
    h = invpc
    beat(h, h.agent_headers, "agent-a-01", hostname="ip-10-0-0-5", port=8080, host_info={"os": "linux", "cpus": 4})
    beat(h, h.agent_headers, "orch-01", "orchestrator")
    h.project()
    body = h.portal_user().get("/api/v1/nodes").json
    assert body["total_active"] == 2
    assert body["by_type"] == {"agent": 1, "orchestrator": 1}
    node = next(n for n in body["nodes"] if n["instance_id"] == "agent-a-01")
    assert node == {
        "instance_id": "agent-a-01", "instance_type": "agent", "last_seen": "2026-11-20T12:00:00Z",
        "first_seen": "2026-11-20T12:00:00Z", "hostname": "ip-10-0-0-5", "port": 8080,
        "host_info": {"os": "linux", "cpus": 4},
    }


def test_a_later_heartbeat_moves_last_seen_and_keeps_known_details(invpc, clock):
    h = invpc
    beat(h, h.agent_headers, "a-1", hostname="box-1", port=9000)
    clock.advance(seconds=30)
    beat(h, h.agent_headers, "a-1")
    h.project()
    (node,) = h.portal_user().get("/api/v1/nodes").json["nodes"]
    assert node["last_seen"] == "2026-11-20T12:00:30Z" and node["first_seen"] == "2026-11-20T12:00:00Z"
    assert (node["hostname"], node["port"]) == ("box-1", 9000)


def test_a_node_is_active_for_exactly_five_minutes(invpc, clock):
    h = invpc
    beat(h, h.agent_headers, "a-1")
    browser = h.portal_user()
    h.project()
    clock.advance(seconds=300)
    assert browser.get("/api/v1/nodes").json["total_active"] == 1
    clock.advance(seconds=1)
    assert browser.get("/api/v1/nodes").json["total_active"] == 0


@pytest.mark.parametrize(
    "agents,orchestrators,status,percentage",
    [
        (7, 0, "OK", 70),
        (7, 1, "CAUTION", 80),  # 80 % exactly
        (8, 0, "CAUTION", 80),
        (8, 1, "WARNING", 90),  # 90 % exactly
        (9, 1, "WARNING", 100),  # at the maximum: not yet a violation
        (10, 1, "VIOLATION", 110),
    ],
)
def test_node_status_thresholds(invpc, agents, orchestrators, status, percentage):
    h = invpc
    licence(h, 10)
    for i in range(agents):
        beat(h, h.agent_headers, f"agent-{i}")
    for i in range(orchestrators):
        beat(h, h.agent_headers, f"orch-{i}", "orchestrator")
    h.project()
    body = h.portal_user().get("/api/v1/nodes/status").json
    assert body == {
        "agents": agents, "orchestrators": orchestrators, "total": agents + orchestrators,
        "max_allowed": 10, "percentage": percentage, "status": status,
    }


def test_node_status_moves_back_to_ok_when_nodes_go_quiet(invpc, clock):
    h = invpc
    licence(h, 10)
    for i in range(9):
        beat(h, h.agent_headers, f"agent-{i}")
    clock.advance(seconds=200)
    beat(h, h.agent_headers, "late")
    h.project()
    browser = h.portal_user()
    assert browser.get("/api/v1/nodes/status").json["status"] == "WARNING"
    clock.advance(seconds=101)  # the first nine are now 301 s old
    assert browser.get("/api/v1/nodes/status").json["status"] == "OK"


def test_without_a_licence_any_active_node_is_a_violation(invpc):
    h = invpc
    h.project()
    browser = h.portal_user()
    assert browser.get("/api/v1/nodes/status").json["status"] == "OK"
    beat(h, h.agent_headers, "a-1")
    h.project()
    body = browser.get("/api/v1/nodes/status").json
    assert (body["max_allowed"], body["status"]) == (0, "VIOLATION")


def test_nodes_of_another_org_or_tenant_are_not_visible(invpc):
    h = invpc
    beat(h, h.agent_headers, "a-1")
    h.tenant("globex")
    h.project()
    foreign = h.portal_user("eve@globex.test", tenant_id="globex")
    assert foreign.get("/api/v1/nodes").json["total_active"] == 0
    assert foreign.get("/api/v1/nodes/a-1").status_code == 404
    neighbour = h.portal_user("rae@acme.test", org_id="research")
    assert neighbour.get("/api/v1/nodes/a-1").status_code == 404
    assert h.portal_user().get("/api/v1/nodes/a-1").json["instance_id"] == "a-1"


def test_the_admin_node_status_works_in_saas_too(h, agent):
    licence(h, 5)
    beat(h, agent, "a-1")
    beat(h, agent, "a-2")
    beat(h, agent, "a-3")
    beat(h, agent, "a-4")
    h.project()
    response = h.admin("GET", "/api/v1/admin/nodes/status?org_id=prod")
    assert response.status_code == 200
    assert response.json == {
        "tenant_id": "acme", "org_id": "prod", "agents": 4, "orchestrators": 0, "total": 4,
        "max_allowed": 5, "percentage": 80, "status": "CAUTION",
    }


def test_the_admin_node_status_asks_for_the_tenant_when_the_org_id_is_shared(h, agent):
    h.tenant("globex", ("prod",))
    beat(h, agent, "a-1")
    beat(h, h.agent("globex", "prod"), "g-1")
    h.project()
    assert h.admin("GET", "/api/v1/admin/nodes/status?org_id=prod").status_code == 422
    assert h.admin("GET", "/api/v1/admin/nodes/status?org_id=prod&tenant_id=globex").json["total"] == 1


def test_the_admin_node_status_needs_the_admin_key(h, agent):
    assert h.http.get("/api/v1/admin/nodes/status?org_id=prod").status_code == 401
    assert h.http.get("/api/v1/admin/nodes/status?org_id=prod", headers={"X-Admin-API-Key": "wrong"}).status_code == 401


def test_node_views_accept_keys_with_read_usage(invpc):
    h = invpc
    browser = h.portal_user()
    reader = browser.post("/api/v1/keys", json={"name": "r", "scopes": ["read:usage"]}).json["key"]
    other = browser.post("/api/v1/keys", json={"name": "o"}).json["key"]
    h.project()
    assert h.http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert h.http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert h.http.get("/api/v1/nodes").status_code == 401


def test_min_position_waits_for_the_node_read_model(invpc):
    h = invpc
    position = beat(h, h.agent_headers, "a-1").json["position"]
    browser = h.portal_user()
    h.settings.read_wait_seconds = 0.05
    response = browser.get(f"/api/v1/nodes?min_position={position}")
    assert response.status_code == 503
    h.project()
    assert browser.get(f"/api/v1/nodes?min_position={position}").json["total_active"] == 1
