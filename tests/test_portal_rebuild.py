"""Portal read models are disposable: a replay from position 0 equals the live tables,
whatever batch sizes the live projectors happened to use."""
from __future__ import annotations

from projections.framework import catch_up, check, reset
from projections.registry import all_projections
from tests.conftest import usage

PORTAL = ("users", "api_keys", "licenses", "node_status", "policies", "docs_access", "admin_audit")


def test_a_replay_equals_the_live_portal_read_models(h, agent, clock):
    browser = h.portal_user("root@acme.test", permissions=["admin"])
    key = browser.post("/api/v1/keys", json={"name": "k", "scopes": ["read:usage"]}).json
    h.http.get("/api/v1/usage/summary", headers={"Authorization": f"Bearer {key['key']}"})
    h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": "prod", "tier": "Plus", "nodes_total": 3, "expires_at": "2027-01-01T00:00:00Z",
    })
    h.admin("POST", "/api/v1/admin/policies", json={"tenant_id": "acme", "org_id": "prod", "policy_id": "p1", "name": "P"})
    h.admin("PUT", "/api/v1/admin/policies/p1", json={"tenant_id": "acme", "enabled": False})
    h.post_events(agent, [usage("e-1")])
    browser.post("/api/v1/events/e-1/void", json={"reason": "x"})
    for second in range(0, 90, 30):
        for node in ("a-1", "a-2"):
            h.http.post("/api/v1/heartbeats", headers=agent, json={"instance_id": node, "instance_type": "agent", "hostname": f"{node}-{second}"})
        clock.advance(seconds=30)
    browser.delete(f"/api/v1/keys/{key['id']}")
    browser.delete(f"/api/v1/keys/{key['id']}")
    live = {p.name: p for p in all_projections() if p.name in PORTAL}
    for projection in live.values():  # live tables built in small batches
        reset(h.engine, projection)
        catch_up(h.engine, h.store, projection, batch_size=3)
    shadows = {p.name: p for p in all_projections(prefix="check_")}
    for name, projection in live.items():
        assert check(h.engine, h.store, projection, shadows[name], batch_size=1000) == [], name
