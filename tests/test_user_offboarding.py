"""Access that can be taken away: disabling users, password resets and changes, and API
keys bound to what their creator may do."""
from __future__ import annotations

from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new password"


def _key(browser, *scopes) -> dict:
    answer = browser.post("/api/v1/keys", json={"name": "k", "scopes": list(scopes)})
    assert answer.status_code == 201, answer.json
    return answer.json


def _bearer(key: dict) -> dict:
    return {"Authorization": f"Bearer {key['key']}"}


def test_disabling_ends_sessions_and_silences_the_users_keys_until_enabled(h, agent):
    browser = h.portal_user("ada@acme.test", permissions=["read:ledger"])
    other_browser = h.login("ada@acme.test")
    key = _key(browser, "read:policies")
    assert h.http.get("/api/v1/policies/export", headers=_bearer(key)).status_code == 200

    disabled = h.admin("POST", "/api/v1/admin/users/ada@acme.test/disable")
    assert disabled.status_code == 200 and disabled.json["disabled"] is True
    for session in (browser, other_browser):
        assert session.get("/api/v1/auth/me").json["error"]["code"] == "SESSION_INVALID"
    refused = h.http.get("/api/v1/policies/export", headers=_bearer(key))
    assert refused.status_code == 401 and refused.json["error"]["code"] == "KEY_CREATOR_DISABLED"
    login = h.http.post("/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD})
    assert login.status_code == 401 and login.json["error"]["code"] == "USER_DISABLED"
    assert h.admin("POST", "/api/v1/admin/users/ada@acme.test/disable").status_code == 409

    assert h.admin("POST", "/api/v1/admin/users/ada@acme.test/enable").json["disabled"] is False
    assert h.http.get("/api/v1/policies/export", headers=_bearer(key)).status_code == 200
    assert browser.get("/api/v1/auth/me").status_code == 401  # ended sessions stay ended
    assert h.login("ada@acme.test").get("/api/v1/auth/me").status_code == 200
    assert h.admin("POST", "/api/v1/admin/users/nobody@acme.test/disable").status_code == 404
    assert h.http.post("/api/v1/admin/users/ada@acme.test/disable").status_code == 401  # admin key only


def test_an_admin_reset_ends_every_session_and_sets_the_new_password(h, agent):
    browser = h.portal_user("ada@acme.test")
    reset = h.admin("PUT", "/api/v1/admin/users/ada@acme.test/password", json={"password": NEW_PASSWORD})
    assert reset.status_code == 200, reset.json
    assert "password" not in reset.json
    assert browser.get("/api/v1/auth/me").status_code == 401
    assert h.http.post("/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD}).status_code == 401
    assert h.login("ada@acme.test", NEW_PASSWORD).get("/api/v1/auth/me").status_code == 200
    short = h.admin("PUT", "/api/v1/admin/users/ada@acme.test/password", json={"password": "short"})
    assert short.status_code == 422


def test_a_user_changes_their_own_password_and_keeps_working_in_this_browser(h, agent):
    browser = h.portal_user("ada@acme.test")
    elsewhere = h.login("ada@acme.test")
    wrong = browser.post("/api/v1/auth/password", json={"current_password": "not it at all", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "INVALID_CREDENTIALS"
    changed = browser.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 200, changed.json
    assert "ul_session=" in changed.headers["Set-Cookie"]
    assert browser.get("/api/v1/auth/me").status_code == 200  # the new cookie
    assert elsewhere.get("/api/v1/auth/me").status_code == 401  # every other session ended
    assert h.login("ada@acme.test", NEW_PASSWORD)
    assert h.http.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}).status_code == 401


def test_scopes_need_the_creators_permission_and_follow_it_at_use(h, agent):
    plain = h.portal_user("plain@acme.test")
    for scope in ("read:audit", "read:ledger", "usage:platform_wide"):
        refused = plain.post("/api/v1/keys", json={"name": "k", "scopes": [scope]})
        assert refused.status_code == 403 and refused.json["error"]["code"] == "SCOPE_NOT_ALLOWED", scope
    auditor = h.portal_user("aud@acme.test", permissions=["read:ledger"])
    key = _key(auditor, "read:ledger", "read:policies")
    assert h.http.get("/api/v1/ledger", headers=_bearer(key)).status_code == 200
    boss = h.portal_user("boss@acme.test", permissions=["admin"])
    assert _key(boss, "read:audit", "read:ledger", "usage:platform_wide")["scopes"] == ["read:audit", "read:ledger", "usage:platform_wide"]
    assert h.admin("POST", "/api/v1/keys", json={"name": "k", "scopes": ["read:ledger"]},
                   headers={"X-Tenant-ID": "acme", "X-Org-ID": "prod"}).status_code == 201

    h.admin("PUT", "/api/v1/admin/users/aud@acme.test/permissions", json={"permissions": []})
    lost = h.http.get("/api/v1/ledger", headers=_bearer(key))
    assert lost.status_code == 403 and lost.json["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert h.http.get("/api/v1/policies/export", headers=_bearer(key)).status_code == 200  # the rest still works
    h.admin("PUT", "/api/v1/admin/users/aud@acme.test/permissions", json={"permissions": ["read:ledger"]})
    assert h.http.get("/api/v1/ledger", headers=_bearer(key)).status_code == 200


def test_revoking_someone_elses_key_needs_admin(h, agent):
    owner = h.portal_user("owner@acme.test")
    plain = h.portal_user("plain@acme.test")
    boss = h.portal_user("boss@acme.test", permissions=["admin"])
    first, second, mine = _key(owner), _key(owner), _key(plain)
    refused = plain.delete(f"/api/v1/keys/{first['id']}")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "PERMISSION_DENIED"
    assert plain.delete(f"/api/v1/keys/{mine['id']}").status_code == 204
    assert boss.delete(f"/api/v1/keys/{first['id']}").status_code == 204
    assert h.admin("DELETE", f"/api/v1/keys/{second['id']}", headers={"X-Tenant-ID": "acme", "X-Org-ID": "prod"}).status_code == 204
