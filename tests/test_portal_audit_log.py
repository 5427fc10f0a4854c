"""The admin audit log: every admin-relevant action and failed attempt, filtered,
paginated, tenant-scoped for portal admins, never a secret or a hash."""
from __future__ import annotations

import base64
import json

from tests.conftest import PASSWORD, usage

ADMIN_HEADERS = {"X-Admin-API-Key": "test-admin-key", "X-Tenant-ID": "acme", "X-Org-ID": "prod"}


def log(h, query: str = "", browser=None):
    h.project()
    path = f"/api/v1/admin/audit-log{'?' + query if query else ''}"
    response = browser.get(path) if browser else h.admin("GET", path)
    assert response.status_code == 200, response.json
    return response.json["entries"]


def test_key_create_and_revoke_are_logged_with_id_name_scopes_and_outcome(h, agent):
    browser = h.portal_user()
    created = browser.post("/api/v1/keys", json={"name": "ci-job", "scopes": ["read:usage"]}).json
    browser.delete(f"/api/v1/keys/{created['id']}")
    revoke, create = log(h, "action=API_KEY_REVOKE") + log(h, "action=API_KEY_CREATE")
    assert (create["target"], create["outcome"], create["actor"]) == (created["id"], "success", "user:ada@acme.test")
    assert create["details"]["name"] == "ci-job" and create["details"]["scopes"] == ["read:usage"]
    assert create["details"]["key_id"] == created["id"]
    assert (revoke["target"], revoke["outcome"]) == (created["id"], "success")
    assert revoke["details"] == {"key_id": created["id"], "name": "ci-job", "scopes": ["read:usage"]}


def test_failed_key_attempts_are_logged_too(h, agent):
    browser = h.portal_user()
    created = browser.post("/api/v1/keys", json={"name": "ci-job"}).json
    browser.delete(f"/api/v1/keys/{created['id']}")
    browser.delete(f"/api/v1/keys/{created['id']}")  # already revoked
    browser.delete("/api/v1/keys/key_unknown")  # unknown
    browser.post("/api/v1/keys", json={"name": "bad", "scopes": ["root"]})  # invalid scopes
    failures = log(h, "outcome=failure")
    assert [(e["action"], e["target"]) for e in failures] == [
        ("API_KEY_CREATE", "bad"),
        ("API_KEY_REVOKE", "key_unknown"),
        ("API_KEY_REVOKE", created["id"]),
    ]
    assert failures[0]["details"] == {"name": "bad", "scopes": ["root"]}
    assert "INVALID_SCOPES" in failures[0]["reason"]
    assert failures[2]["details"]["name"] == "ci-job"


def test_no_key_hash_password_or_secret_ever_reaches_the_log(h, agent):
    browser = h.portal_user()
    created = browser.post("/api/v1/keys", json={"name": "ci-job"}).json
    client = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "gw"}).json
    h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": "prod", "tier": "Plus", "nodes_total": 3,
        "expires_at": "2027-01-01T00:00:00Z", "license_key": "LK-SECRET-1",
    })
    text = json.dumps(log(h, "limit=500"))
    from ledger.keys.rules import sha256_hex

    for secret in (created["key"], sha256_hex(created["key"]), client["client_secret"], PASSWORD, "scrypt$", "LK-SECRET-1"):
        assert secret not in text
    assert "secret_hash" not in text and "password_hash" not in text and "key_sha256" not in text


def test_clients_users_licences_policies_and_corrections_are_covered(h, agent):
    h.user("ada@acme.test")
    h.admin("PUT", "/api/v1/admin/users/ada@acme.test/permissions", json={"permissions": ["admin"]})
    h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": "prod", "tier": "Plus", "nodes_total": 3, "expires_at": "2027-01-01T00:00:00Z",
    })
    h.admin("DELETE", "/api/v1/admin/licenses/prod?tenant_id=acme")
    h.admin("POST", "/api/v1/admin/policies", json={"tenant_id": "acme", "org_id": "prod", "policy_id": "p1", "name": "P"})
    h.post_events(agent, [usage("e-1")])
    h.http.post("/api/v1/events/e-1/void", json={"reason": "test"}, headers=ADMIN_HEADERS)
    h.login("ada@acme.test")
    actions = {e["action"] for e in log(h, "limit=500")}
    assert {
        "TENANT_CREATE", "ORG_CREATE", "CLIENT_CREATE", "USER_CREATE", "USER_PERMISSIONS_CHANGE", "USER_LOGIN",
        "LICENSE_ISSUE", "LICENSE_REVOKE", "POLICY_CREATE", "USAGE_VOID",
    } <= actions
    (void,) = log(h, "action=USAGE_VOID")
    assert (void["target"], void["reason"], void["actor"]) == ("e-1", "test", "admin")


def test_a_failed_login_is_logged_for_the_users_tenant(h, agent):
    h.user("ada@acme.test")
    h.http.post("/api/v1/auth/login", json={"email": "ada@acme.test", "password": "wrong password"})
    (entry,) = log(h, "action=USER_LOGIN")
    assert (entry["outcome"], entry["target"], entry["tenant_id"]) == ("failure", "ada@acme.test", "acme")


def test_filters_by_actor_outcome_and_time(h, agent, clock):
    h.user("ada@acme.test")
    clock.advance(days=1)
    h.user("bob@acme.test")
    entries = log(h, "action=USER_CREATE&since=2026-11-21")
    assert [e["target"] for e in entries] == ["bob@acme.test"]
    entries = log(h, "action=USER_CREATE&until=2026-11-20")
    assert [e["target"] for e in entries] == ["ada@acme.test"]
    assert log(h, "actor=admin&action=USER_CREATE&outcome=failure") == []
    assert h.admin("GET", "/api/v1/admin/audit-log?since=yesterday").status_code == 422
    assert h.admin("GET", "/api/v1/admin/audit-log?outcome=maybe").status_code == 422


def test_pages_follow_next_cursor_newest_first(h, agent):
    for i in range(5):
        h.user(f"user{i}@acme.test")
    h.project()
    first = h.admin("GET", "/api/v1/admin/audit-log?action=USER_CREATE&limit=2").json
    assert [e["target"] for e in first["entries"]] == ["user4@acme.test", "user3@acme.test"]
    second = h.admin("GET", f"/api/v1/admin/audit-log?action=USER_CREATE&limit=2&cursor={first['next_cursor']}").json
    third = h.admin("GET", f"/api/v1/admin/audit-log?action=USER_CREATE&limit=2&cursor={second['next_cursor']}").json
    assert [e["target"] for e in second["entries"] + third["entries"]] == ["user2@acme.test", "user1@acme.test", "user0@acme.test"]
    assert third["next_cursor"] is None


def test_a_portal_admin_sees_only_their_tenant(h, agent):
    h.tenant("globex")
    h.user("eve@globex.test", tenant_id="globex")
    admin = h.portal_user("root@acme.test", permissions=["admin"])
    entries = log(h, "limit=500", browser=admin)
    assert entries and {e["tenant_id"] for e in entries} == {"acme"}
    assert log(h, "tenant_id=globex", browser=admin) == log(h, "limit=500", browser=admin)  # tenant_id is ignored
    foreign = next(e for e in log(h, "tenant_id=globex") if e["action"] == "USER_CREATE")
    assert admin.get(f"/api/v1/admin/audit-log/{foreign['id']}").status_code == 404
    assert h.admin("GET", f"/api/v1/admin/audit-log/{foreign['id']}").json["target"] == "eve@globex.test"


def test_the_audit_log_needs_the_admin_key_or_a_portal_admin(h, agent):
    assert h.http.get("/api/v1/admin/audit-log").status_code == 401
    plain = h.portal_user("ada@acme.test")
    assert plain.get("/api/v1/admin/audit-log").status_code == 403
    refused = plain.post("/api/v1/keys", json={"name": "k", "scopes": ["read:audit"]})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "SCOPE_NOT_ALLOWED"
    auditor = h.portal_user("aud@acme.test", permissions=["read:audit"])
    key = auditor.post("/api/v1/keys", json={"name": "k", "scopes": ["read:audit"]}).json["key"]
    assert h.http.get("/api/v1/admin/audit-log", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_an_unknown_entry_answers_404(h, agent):
    h.project()
    assert h.admin("GET", "/api/v1/admin/audit-log/999999").status_code == 404


def test_a_new_event_type_is_audited_by_adding_one_line(h, agent):
    from ledger.licensing.events import HeartbeatReceived
    from projections import admin_audit

    before = admin_audit.AdminAuditProjection().version
    admin_audit.AUDITED_EVENTS[HeartbeatReceived] = "NODE_HEARTBEAT"
    try:
        projection = admin_audit.AdminAuditProjection()
        assert "HeartbeatReceived" in projection.topics and projection.version != before
    finally:
        del admin_audit.AUDITED_EVENTS[HeartbeatReceived]


def test_budget_writes_and_refusals_are_in_the_audit_log_with_their_author(h, agent):
    author = {**agent, "X-User-ID": "fin@acme.test"}
    body = {"id": "b-1", "name": "Monthly", "limit_usd": 100, "period": "monthly"}
    assert h.http.post("/api/v1/budgets", json=body, headers=author).status_code == 201
    assert h.http.put("/api/v1/budgets/b-1", json={"limit_usd": 200}, headers=author).status_code == 200
    assert h.http.post("/api/v1/budgets", json=body, headers=author).status_code == 409
    assert h.http.delete("/api/v1/budgets/b-1", headers=author).status_code == 204
    client = "client:" + base64.b64decode(agent["Authorization"][6:]).decode().partition(":")[0]
    assert log(h, "actor=user:fin@acme.test") == []  # the client acted; the user is only asserted
    entries = [e for e in log(h, f"actor={client}") if e["action"].startswith("BUDGET")]
    assert {e["details"]["on_behalf_of"] for e in entries} == {"fin@acme.test"}
    assert [(e["action"], e["target"], e["outcome"]) for e in reversed(entries)] == [
        ("BUDGET_CREATE", "b-1", "success"),
        ("BUDGET_UPDATE", "b-1", "success"),
        ("BUDGET_CREATE", "b-1", "failure"),
        ("BUDGET_DELETE", "b-1", "success"),
    ]
    assert entries[-1]["details"]["limit"] == "100"
