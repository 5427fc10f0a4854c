"""Login throttling per account and per client address, kept in the database, and failed
credentials written to the ledger at most once per subject per window, with a count."""
from __future__ import annotations

from dataclasses import replace

from api import create_app
from tests.conftest import PASSWORD, basic


def _login(http, email="ada@acme.test", password="wrong password", **kwargs):
    return http.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)


def _failed_events(h, start: int, action: str) -> list:
    return [n for n in h.store.read_window(start, h.store.max_position())
            if n.topic == "AccessAttempted" and f'"action":"{action}"'.encode() in n.state]


def test_fifty_rapid_wrong_passwords_are_throttled_and_barely_grow_the_ledger(h, agent):
    h.user("ada@acme.test")
    start = h.store.max_position()
    statuses = [_login(h.http).status_code for _ in range(50)]
    assert 429 in statuses[:10], statuses
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert h.store.max_position() - start <= 3
    (event,) = _failed_events(h, start, "USER_LOGIN")
    assert b'"failures":1' in event.state


def test_the_right_password_is_refused_while_locked_out_and_back_off_doubles(h, agent, clock):
    h.user("ada@acme.test")
    for _ in range(5):
        assert _login(h.http).status_code == 401
    locked = _login(h.http, password=PASSWORD)
    assert locked.status_code == 429 and locked.json["error"]["code"] == "TOO_MANY_ATTEMPTS"
    assert locked.headers["Retry-After"] == "60"
    clock.advance(seconds=61)
    for _ in range(5):
        assert _login(h.http).status_code == 401
    assert _login(h.http, password=PASSWORD).headers["Retry-After"] == "120"  # doubled
    clock.advance(seconds=121)
    assert _login(h.http, password=PASSWORD).status_code == 200
    start = h.store.max_position()
    clock.advance(minutes=16)
    assert _login(h.http).status_code == 401  # a new window: one event with the failures since the last
    (event,) = _failed_events(h, start, "USER_LOGIN")
    assert b'"failures":' in event.state


def test_the_lockout_is_shared_by_every_api_process(h, agent):
    h.user("ada@acme.test")
    other = create_app(h.settings).test_client()
    for _ in range(5):
        assert _login(h.http).status_code == 401
    assert _login(other, password=PASSWORD).status_code == 429


def test_one_address_trying_many_accounts_is_throttled(h, agent):
    statuses = [_login(h.http, email=f"user{i}@acme.test").status_code for i in range(25)]
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    assert _login(h.http, email="user99@acme.test", environ_base=elsewhere).status_code == 401
    # X-Forwarded-For is not believed from an untrusted peer
    spoofed = {"X-Forwarded-For": "198.51.100.1"}
    assert _login(h.http, email="user98@acme.test", headers=spoofed).status_code == 429


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(h, agent):
    app = create_app(replace(h.settings, trusted_proxies=("127.0.0.0/8",)))
    http = app.test_client()
    for i in range(20):
        assert _login(http, email=f"u{i}@acme.test", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 401
    assert _login(http, email="u-x@acme.test", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert _login(http, email="u-y@acme.test", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 401
    # the client's own claim before the proxy's is not trusted: the rightmost untrusted hop counts
    assert _login(http, email="u-z@acme.test", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}).status_code == 429


def test_failed_admin_key_client_secret_and_revoked_key_attempts_are_audited_collapsed(h, agent):
    client_id = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "a"}).json["client_id"]
    browser = h.portal_user("ada@acme.test")
    key = browser.post("/api/v1/keys", json={"name": "k"}).json
    assert browser.delete(f"/api/v1/keys/{key['id']}").status_code == 204
    start = h.store.max_position()
    for _ in range(20):
        assert h.http.get("/api/v1/admin/audit-log", headers={"X-Admin-API-Key": "wrong"}).status_code == 401
        assert h.post_events(basic(client_id, "wrong secret"), []).status_code == 401
        assert h.http.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401
    for action in ("ADMIN_KEY_AUTH", "CLIENT_AUTH", "API_KEY_AUTH"):
        assert len(_failed_events(h, start, action)) == 1, action
    assert h.store.max_position() - start == 3
    (revoked,) = _failed_events(h, start, "API_KEY_AUTH")
    assert b"KEY_REVOKED" in revoked.state and b'"tenant_id":"acme"' in revoked.state
