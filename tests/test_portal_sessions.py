"""Portal users and sessions (SPEC.md §2): login, logout, me, permissions, the CSRF rule."""
from __future__ import annotations

from tests.conftest import PASSWORD, PortalSession, usage


def test_a_new_user_is_created_with_201_and_no_password_in_the_answer(h, agent):
    response = h.user("ada@acme.test", permissions=["admin"])
    assert response.status_code == 201
    assert response.json["email"] == "ada@acme.test"
    assert response.json["permissions"] == ["admin"]
    assert "password" not in response.json and "password_hash" not in response.json


def test_a_duplicate_email_answers_409(h, agent):
    h.user("ada@acme.test")
    response = h.admin("POST", "/api/v1/admin/users", json={
        "tenant_id": "acme", "org_id": "prod", "email": "ADA@acme.test", "password": PASSWORD, "permissions": [],
    })
    assert response.status_code == 409
    assert response.json["error"]["code"] == "USER_EXISTS"


def test_an_unknown_permission_answers_422(h, agent):
    response = h.admin("POST", "/api/v1/admin/users", json={
        "tenant_id": "acme", "org_id": "prod", "email": "bob@acme.test", "password": PASSWORD, "permissions": ["root"],
    })
    assert response.status_code == 422
    assert response.json["error"]["code"] == "INVALID_PERMISSIONS"


def test_a_user_of_an_unknown_org_answers_404(h, agent):
    response = h.admin("POST", "/api/v1/admin/users", json={
        "tenant_id": "acme", "org_id": "nowhere", "email": "bob@acme.test", "password": PASSWORD,
    })
    assert response.status_code == 404


def test_creating_users_needs_the_admin_key(h, agent):
    response = h.http.post("/api/v1/admin/users", json={
        "tenant_id": "acme", "org_id": "prod", "email": "bob@acme.test", "password": PASSWORD,
    })
    assert response.status_code == 401


def test_login_sets_an_httponly_samesite_strict_cookie(h, agent):
    h.user("ada@acme.test")
    response = h.http.post("/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("ul_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert response.json["email"] == "ada@acme.test" and response.json["org_id"] == "prod"


def test_a_wrong_password_and_an_unknown_email_answer_the_same_401(h, agent):
    h.user("ada@acme.test")
    wrong = h.http.post("/api/v1/auth/login", json={"email": "ada@acme.test", "password": "not the password"})
    unknown = h.http.post("/api/v1/auth/login", json={"email": "nobody@acme.test", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert "Set-Cookie" not in wrong.headers


def test_the_password_is_stored_with_a_slow_kdf_never_in_clear(h, agent):
    h.user("ada@acme.test")
    from ledger.application import Ledger
    from ledger.identity.commands import user_stream

    from ledger.identity.credentials import unseal

    (created,) = h.store.stream(user_stream("ada@acme.test"))
    assert created.event.password_hash.startswith("enc1:")  # sealed: the ledger shows no hash
    stored = unseal(created.event.password_hash, h.settings.secret_pepper, "password_hash")
    assert stored.startswith("scrypt$16384$")
    assert PASSWORD not in stored
    assert Ledger(h.store, h.settings).identity.find_user("ada@acme.test").email == "ada@acme.test"


def test_me_answers_the_logged_in_user(h, agent):
    browser = h.portal_user("ada@acme.test", permissions=["permission.billing.manage"])
    response = browser.get("/api/v1/auth/me")
    assert response.status_code == 200
    assert response.json["email"] == "ada@acme.test"
    assert response.json["tenant_id"] == "acme"
    assert response.json["permissions"] == ["permission.billing.manage"]


def test_me_without_a_session_answers_401(h, agent):
    assert h.http.get("/api/v1/auth/me").status_code == 401
    h.http.set_cookie("ul_session", "forged-token", domain="localhost")
    assert h.http.get("/api/v1/auth/me").status_code == 401


def test_logout_ends_the_session_for_every_process(h, agent):
    browser = h.portal_user("ada@acme.test")
    stolen = h.http.get_cookie("ul_session") or browser.client.get_cookie("ul_session")
    response = browser.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert browser.get("/api/v1/auth/me").status_code == 401
    # the same token replayed from another client (another worker process) is refused too
    other = h.app.test_client()
    other.set_cookie("ul_session", stolen.value, domain="localhost")
    assert other.get("/api/v1/auth/me").status_code == 401


def test_a_session_survives_in_another_app_instance(h, agent, settings):
    from api import create_app

    browser = h.portal_user("ada@acme.test")
    token = browser.client.get_cookie("ul_session").value
    second = create_app(settings)  # another gunicorn worker: nothing shared in memory
    try:
        client = second.test_client()
        client.set_cookie("ul_session", token, domain="localhost")
        assert client.get("/api/v1/auth/me").json["email"] == "ada@acme.test"
    finally:
        second.extensions["usage_ledger"].close()


def test_a_session_expires_after_its_ttl(h, agent, clock):
    browser = h.portal_user("ada@acme.test")
    clock.advance(hours=11, minutes=59)
    assert browser.get("/api/v1/auth/me").status_code == 200
    clock.advance(minutes=1)
    assert browser.get("/api/v1/auth/me").status_code == 401


def test_changed_permissions_apply_to_the_next_request(h, agent):
    browser = h.portal_user("ada@acme.test")
    response = h.admin("PUT", "/api/v1/admin/users/ada@acme.test/permissions", json={"permissions": ["admin"]})
    assert response.status_code == 200 and response.json["permissions"] == ["admin"]
    assert browser.get("/api/v1/auth/me").json["permissions"] == ["admin"]


def test_changing_permissions_of_an_unknown_user_answers_404(h, agent):
    response = h.admin("PUT", "/api/v1/admin/users/ghost@acme.test/permissions", json={"permissions": []})
    assert response.status_code == 404


def test_cookie_writes_without_x_requested_with_are_refused(h, agent):
    browser = h.portal_user("ada@acme.test")
    response = browser.client.post("/api/v1/keys", json={"name": "ci"})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "CSRF_CHECK_FAILED"
    h.project()
    assert browser.get("/api/v1/keys").json["total"] == 0


def test_cookie_writes_without_a_json_body_are_refused(h, agent):
    browser = h.portal_user("ada@acme.test")
    response = browser.client.post(
        "/api/v1/keys", data={"name": "ci"}, headers={"X-Requested-With": "XMLHttpRequest"}
    )
    assert response.status_code == 403
    assert response.json["error"]["code"] == "CSRF_CHECK_FAILED"


def test_cookie_writes_with_json_and_x_requested_with_pass(h, agent):
    browser = h.portal_user("ada@acme.test")
    assert browser.post("/api/v1/keys", json={"name": "ci"}).status_code == 201


def test_logout_is_a_write_and_follows_the_csrf_rule(h, agent):
    browser = h.portal_user("ada@acme.test")
    assert browser.client.post("/api/v1/auth/logout").status_code == 403
    assert browser.get("/api/v1/auth/me").status_code == 200


def test_usage_endpoints_accept_a_session(h, agent):
    h.post_events(agent, [usage("e-1"), usage("e-2")])
    h.project()
    browser = h.portal_user("ada@acme.test")
    response = browser.get("/api/v1/usage/summary")
    assert response.status_code == 200
    assert response.json["total_llm_requests"] == 2


def test_a_session_only_sees_its_own_org(h, agent):
    h.post_events(agent, [usage("e-1")])
    h.project()
    browser = h.portal_user("rae@acme.test", org_id="research")
    assert browser.get("/api/v1/usage/summary").json["total_events"] == 0


def test_portal_session_helper_is_a_real_browser_session(h, agent):
    browser = h.portal_user("ada@acme.test")
    assert isinstance(browser, PortalSession)
    assert browser.client.get_cookie("ul_session") is not None


def test_admins_list_a_tenants_users_with_their_last_login(h, agent, clock):
    h.user("ada@acme.test", permissions=["admin"])
    h.user("bob@acme.test")
    clock.advance(minutes=3)
    h.login("ada@acme.test")
    h.tenant("globex")
    h.user("eve@globex.test", tenant_id="globex")
    h.project()
    body = h.admin("GET", "/api/v1/admin/users?tenant_id=acme").json
    assert body["total"] == 2
    assert [(u["email"], u["last_login_at"]) for u in body["users"]] == [
        ("ada@acme.test", "2026-11-20T12:03:00Z"), ("bob@acme.test", None),
    ]
    assert "password_hash" not in str(body)
    assert h.http.get("/api/v1/admin/users?tenant_id=acme").status_code == 401
