"""Portal API keys, exactly as seed 000 states them."""
from __future__ import annotations

import hashlib
import re

from tests.conftest import ADMIN_KEY, usage


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def new_key(browser, **body):
    response = browser.post("/api/v1/keys", json={"name": "billing-analytics-job", **body})
    assert response.status_code == 201, response.json
    return response.json


def test_create_answers_201_with_the_key_shown_once(h, agent):
    browser = h.portal_user()
    created = browser.post(
        "/api/v1/keys", json={"name": "billing-analytics-job", "scopes": ["read:policies", "write:logs"], "expires_in_days": 90}
    )
    assert created.status_code == 201
    body = created.json
    assert re.fullmatch(r"ulk_[a-z0-9]{8}_[A-Za-z0-9_-]{20,}", body["key"])
    assert body["key_prefix"] == body["key"][4:12]
    assert body["name"] == "billing-analytics-job"
    assert body["scopes"] == ["read:policies", "write:logs"]
    assert body["expires_at"] == "2027-02-18T12:00:00Z"  # NOW + 90 days
    h.project()
    listed = browser.get("/api/v1/keys").json["keys"][0]
    fetched = browser.get(f"/api/v1/keys/{body['id']}").json
    assert "key" not in listed and "key" not in fetched
    assert fetched["key_prefix"] == body["key_prefix"]


def test_without_scopes_a_key_gets_read_policies_and_write_logs(h, agent):
    browser = h.portal_user()
    assert new_key(browser)["scopes"] == ["read:policies", "write:logs"]


def test_nullable_timestamps_are_omitted_when_unset(h, agent):
    browser = h.portal_user()
    created = new_key(browser)
    assert "expires_at" not in created
    h.project()
    fetched = browser.get(f"/api/v1/keys/{created['id']}").json
    assert set(fetched) == {"id", "name", "key_prefix", "scopes", "created_at"}


def test_neither_the_key_nor_its_sha256_is_stored_in_the_clear(h, agent):
    browser = h.portal_user()
    created = new_key(browser)
    everything = b"".join(n.state for n in h.store.read_window(0, h.store.max_position()))
    assert created["key"].encode() not in everything
    assert hashlib.sha256(created["key"].encode()).hexdigest().encode() not in everything
    assert b'"key_sha256":"enc1:' in everything
    assert browser.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200


def test_unknown_scopes_answer_422(h, agent):
    browser = h.portal_user()
    response = browser.post("/api/v1/keys", json={"name": "x", "scopes": ["read:everything"]})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "INVALID_SCOPES"


def test_expires_in_days_out_of_range_answers_422(h, agent):
    browser = h.portal_user()
    assert browser.post("/api/v1/keys", json={"name": "x", "expires_in_days": 0}).status_code == 422
    assert browser.post("/api/v1/keys", json={"name": "x", "expires_in_days": 3651}).status_code == 422


def test_a_name_is_required(h, agent):
    browser = h.portal_user()
    assert browser.post("/api/v1/keys", json={"scopes": ["read:usage"]}).status_code == 422


def test_the_platform_wide_scope_needs_the_permission(h, agent):
    plain = h.portal_user("ada@acme.test")
    assert plain.post("/api/v1/keys", json={"name": "x", "scopes": ["usage:platform_wide"]}).status_code == 403
    h.project()
    (denied,) = h.admin("GET", "/api/v1/admin/audit-log?action=API_KEY_CREATE").json["entries"]
    assert denied["outcome"] == "denied" and denied["details"]["scopes"] == ["usage:platform_wide"]
    wide = h.portal_user("wu@acme.test", permissions=["usage:platform_wide"])
    assert wide.post("/api/v1/keys", json={"name": "x", "scopes": ["usage:platform_wide"]}).status_code == 201


def test_list_shows_the_orgs_keys_newest_first(h, agent, clock):
    browser = h.portal_user()
    first = new_key(browser, name="first")
    clock.advance(minutes=1)
    second = new_key(browser, name="second")
    h.project()
    listed = browser.get("/api/v1/keys").json
    assert listed["total"] == 2
    assert [k["id"] for k in listed["keys"]] == [second["id"], first["id"]]


def test_delete_answers_204_and_the_key_shows_revoked_at(h, agent, clock):
    browser = h.portal_user()
    created = new_key(browser)
    clock.advance(minutes=5)
    response = browser.delete(f"/api/v1/keys/{created['id']}")
    assert response.status_code == 204
    assert response.data == b""
    h.project()
    assert browser.get(f"/api/v1/keys/{created['id']}").json["revoked_at"] == "2026-11-20T12:05:00Z"


def test_a_key_revoked_twice_answers_404_the_second_time(h, agent):
    browser = h.portal_user()
    created = new_key(browser)
    assert browser.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    assert browser.delete(f"/api/v1/keys/{created['id']}").status_code == 404


def test_an_unknown_key_answers_404(h, agent):
    browser = h.portal_user()
    h.project()
    assert browser.get("/api/v1/keys/key_0000000000000000").status_code == 404
    assert browser.delete("/api/v1/keys/key_0000000000000000").status_code == 404


def test_another_tenants_key_is_not_found(h, agent):
    mine = h.portal_user("ada@acme.test")
    created = new_key(mine)
    h.tenant("globex")
    theirs = h.portal_user("eve@globex.test", tenant_id="globex")
    h.project()
    assert theirs.get(f"/api/v1/keys/{created['id']}").status_code == 404
    assert theirs.delete(f"/api/v1/keys/{created['id']}").status_code == 404
    assert theirs.get("/api/v1/keys").json["total"] == 0
    assert mine.get(f"/api/v1/keys/{created['id']}").json.get("revoked_at") is None


def test_keys_of_another_org_of_the_same_tenant_are_not_found(h, agent):
    created = new_key(h.portal_user("ada@acme.test"))
    other = h.portal_user("rae@acme.test", org_id="research")
    h.project()
    assert other.get(f"/api/v1/keys/{created['id']}").status_code == 404


def test_a_key_reads_usage_with_read_usage_only(h, agent):
    h.post_events(agent, [usage("e-1")])
    browser = h.portal_user()
    reader = new_key(browser, scopes=["read:usage"])["key"]
    writer = new_key(browser)["key"]
    h.project()
    assert h.http.get("/api/v1/usage/summary", headers=bearer(reader)).json["total_llm_requests"] == 1
    denied = h.http.get("/api/v1/usage/summary", headers=bearer(writer))
    assert denied.status_code == 403 and denied.json["error"]["code"] == "INSUFFICIENT_SCOPE"


def test_a_key_with_write_logs_may_post_usage_events(h, agent):
    browser = h.portal_user()
    writer = new_key(browser)["key"]
    reader = new_key(browser, scopes=["read:usage"])["key"]
    assert h.post_events(bearer(writer), [usage("from-key")]).status_code == 202
    assert h.post_events(bearer(reader), [usage("from-reader")]).status_code == 403


def test_a_revoked_key_answers_401(h, agent):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"])
    browser.delete(f"/api/v1/keys/{created['id']}")
    response = h.http.get("/api/v1/usage/summary", headers=bearer(created["key"]))
    assert response.status_code == 401


def test_an_expired_key_answers_401(h, agent, clock):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"], expires_in_days=1)
    clock.advance(hours=23, minutes=59)
    assert h.http.get("/api/v1/usage/summary", headers=bearer(created["key"])).status_code == 200
    clock.advance(minutes=1)
    assert h.http.get("/api/v1/usage/summary", headers=bearer(created["key"])).status_code == 401


def test_a_wrong_secret_with_a_real_prefix_answers_401(h, agent):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"])
    forged = created["key"][:13] + "x" * 43
    assert h.http.get("/api/v1/usage/summary", headers=bearer(forged)).status_code == 401
    assert h.http.get("/api/v1/usage/summary", headers=bearer("not-a-key")).status_code == 401


def test_last_used_at_is_recorded_at_most_once_a_minute(h, agent, clock):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"])
    before = h.ledger_count()
    for _ in range(3):
        h.http.get("/api/v1/usage/summary", headers=bearer(created["key"]))
        clock.advance(seconds=20)
    assert h.ledger_count() == before + 1  # 12:00:00 only; 12:00:20 and 12:00:40 are within the minute
    h.project()
    assert browser.get(f"/api/v1/keys/{created['id']}").json["last_used_at"] == "2026-11-20T12:00:00Z"
    h.http.get("/api/v1/usage/summary", headers=bearer(created["key"]))  # 12:01:00
    h.project()
    assert browser.get(f"/api/v1/keys/{created['id']}").json["last_used_at"] == "2026-11-20T12:01:00Z"


def test_a_revoked_keys_last_used_at_does_not_change(h, agent, clock):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"])
    h.http.get("/api/v1/usage/summary", headers=bearer(created["key"]))
    browser.delete(f"/api/v1/keys/{created['id']}")
    clock.advance(minutes=5)
    assert h.http.get("/api/v1/usage/summary", headers=bearer(created["key"])).status_code == 401
    h.project()
    assert browser.get(f"/api/v1/keys/{created['id']}").json["last_used_at"] == "2026-11-20T12:00:00Z"


def test_keys_cannot_manage_keys(h, agent):
    browser = h.portal_user()
    created = new_key(browser, scopes=["read:usage"])
    response = h.http.post("/api/v1/keys", json={"name": "escalate"}, headers=bearer(created["key"]))
    assert response.status_code == 401


def test_the_admin_key_manages_keys_of_the_org_it_names(h, agent):
    headers = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
    response = h.http.post("/api/v1/keys", json={"name": "ops"}, headers=headers)
    assert response.status_code == 201
    h.project()
    assert h.portal_user().get("/api/v1/keys").json["total"] == 1


def test_keys_need_credentials(h, agent):
    assert h.http.get("/api/v1/keys").status_code == 401
    assert h.http.post("/api/v1/keys", json={"name": "x"}).status_code == 401
