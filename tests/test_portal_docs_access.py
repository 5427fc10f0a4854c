"""Docs access (seed 000) against a fake Cloudflare Access API on 127.0.0.1."""
from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY, Harness, make_settings
from tests.fake_cloudflare import ACCOUNT, GROUP, TOKEN

GRANTED = (
    "Access granted to new@reader.test. They will receive a one-time PIN via email "
    "when visiting the protected documentation."
)


@pytest.fixture
def docs(database_url, clock, cloudflare):
    harness = Harness(make_settings(
        database_url, clock, cf_api_token=TOKEN, cf_account_id=ACCOUNT, cf_access_group_id=GROUP,
        cf_api_base_url=cloudflare.base_url, cf_api_timeout_seconds=5,
    ))
    harness.tenant("acme", ("prod",))
    harness.browser = harness.portal_user("root@acme.test", permissions=["admin"])
    yield harness
    harness.close()


def test_list_answers_the_groups_emails(docs):
    response = docs.browser.get("/api/v1/docs/access")
    assert response.status_code == 200
    assert response.json == {"users": ["first@reader.test"], "total": 1}


def test_grant_adds_an_email_rule_and_answers_the_seed_message(docs, cloudflare):
    response = docs.browser.post("/api/v1/docs/access/grant", json={"email": "new@reader.test", "reason": "security review"})
    assert response.status_code == 200
    assert response.json == {"success": True, "message": GRANTED, "email": "new@reader.test"}
    assert cloudflare.emails == ["first@reader.test", "new@reader.test"]
    method, path, body = cloudflare.requests[-1]
    assert (method, path) == ("PUT", f"/client/v4/accounts/{ACCOUNT}/access/groups/{GROUP}")
    assert {"email_domain": {"domain": "axon.test"}} in body["include"]  # other rules are kept
    assert body["name"] == "Protected docs readers"


def test_granting_a_present_email_is_a_successful_no_op(docs, cloudflare):
    response = docs.browser.post("/api/v1/docs/access/grant", json={"email": "First@Reader.test"})
    assert response.status_code == 200 and response.json["success"] is True
    assert [m for m, _, _ in cloudflare.requests] == ["GET"]
    assert cloudflare.emails == ["first@reader.test"]


def test_revoke_removes_the_email_and_answers_the_seed_message(docs, cloudflare):
    assert docs.browser.post("/api/v1/docs/access/grant", json={"email": "new@reader.test"}).status_code == 200
    response = docs.browser.post("/api/v1/docs/access/revoke", json={"email": "new@reader.test"})
    assert response.status_code == 200
    assert response.json == {"success": True, "message": "Access revoked for new@reader.test", "email": "new@reader.test"}
    assert cloudflare.emails == ["first@reader.test"]


def test_an_email_in_the_group_before_any_grant_cannot_be_revoked_by_a_tenant(docs, cloudflare):
    for attempt in ("revoke", "grant", "revoke"):  # granting it first does not make it the tenant's
        assert docs.browser.post(f"/api/v1/docs/access/{attempt}", json={"email": "first@reader.test"}).status_code == 200
    assert cloudflare.emails == ["first@reader.test"]
    assert docs.browser.get("/api/v1/docs/access").json["users"] == ["first@reader.test"]


def test_a_grant_by_one_tenant_survives_an_immediate_revoke_by_another(docs, cloudflare):
    docs.tenant("other", ("main",))
    other = docs.portal_user("root@other.test", permissions=["admin"], tenant_id="other", org_id="main")
    assert docs.browser.post("/api/v1/docs/access/grant", json={"email": "b@reader.test"}).status_code == 200
    # no projection has run: the ownership check reads the ledger itself
    assert other.post("/api/v1/docs/access/revoke", json={"email": "b@reader.test"}).status_code == 200
    assert sorted(cloudflare.emails) == ["b@reader.test", "first@reader.test"]
    assert other.post("/api/v1/docs/access/grant", json={"email": "b@reader.test"}).status_code == 200
    assert docs.browser.post("/api/v1/docs/access/revoke", json={"email": "b@reader.test"}).status_code == 200
    assert cloudflare.emails == ["first@reader.test"]  # the owner's revoke takes effect
    assert other.post("/api/v1/docs/access/grant", json={"email": "b@reader.test"}).status_code == 200
    assert sorted(cloudflare.emails) == ["b@reader.test", "first@reader.test"]  # now the other tenant's


def test_a_cloudflare_error_answers_502_with_its_message_and_nothing_is_granted(docs, cloudflare):
    cloudflare.fail_puts = (500, "access.api.error.internal")
    before = docs.ledger_count()
    response = docs.browser.post("/api/v1/docs/access/grant", json={"email": "new@reader.test"})
    assert response.status_code == 502
    assert response.json["error"]["message"] == "access.api.error.internal"
    assert cloudflare.emails == ["first@reader.test"]
    docs.project()
    log = docs.admin("GET", "/api/v1/admin/audit-log?action=DOCS_ACCESS_GRANT").json["entries"]
    assert [(e["outcome"], e["target"]) for e in log] == [("failure", "new@reader.test")]
    assert docs.ledger_count() == before + 1  # the failed attempt only, no DocsAccessGranted


def test_a_cloudflare_error_on_list_answers_502(docs, cloudflare):
    cloudflare.fail_next = (429, "rate limited")
    response = docs.browser.get("/api/v1/docs/access")
    assert response.status_code == 502 and response.json["error"]["message"] == "rate limited"


def test_a_wrong_cloudflare_token_answers_502(database_url, clock, cloudflare):
    h = Harness(make_settings(
        database_url, clock, cf_api_token="wrong", cf_account_id=ACCOUNT, cf_access_group_id=GROUP,
        cf_api_base_url=cloudflare.base_url,
    ))
    try:
        h.tenant("acme", ("prod",))
        response = h.portal_user(permissions=["admin"]).get("/api/v1/docs/access")
        assert response.status_code == 502
        assert response.json["error"]["message"] == "Authentication error"
    finally:
        h.close()


def test_an_unreachable_cloudflare_answers_502(database_url, clock, cloudflare):
    base = cloudflare.base_url
    cloudflare.close()  # nothing listens on that port any more
    h = Harness(make_settings(
        database_url, clock, cf_api_token=TOKEN, cf_account_id=ACCOUNT, cf_access_group_id=GROUP, cf_api_base_url=base,
    ))
    try:
        h.tenant("acme", ("prod",))
        response = h.portal_user(permissions=["admin"]).post("/api/v1/docs/access/grant", json={"email": "x@reader.test"})
        assert response.status_code == 502
        assert response.json["error"]["code"] == "CLOUDFLARE_UNREACHABLE"
    finally:
        h.close()


@pytest.mark.parametrize("missing", ["cf_api_token", "cf_account_id", "cf_access_group_id"])
def test_any_missing_setting_answers_503_not_configured(database_url, clock, cloudflare, missing):
    configured = dict(cf_api_token=TOKEN, cf_account_id=ACCOUNT, cf_access_group_id=GROUP, cf_api_base_url=cloudflare.base_url)
    configured[missing] = None
    h = Harness(make_settings(database_url, clock, **configured))
    try:
        h.tenant("acme", ("prod",))
        browser = h.portal_user(permissions=["admin"])
        for response in (
            browser.get("/api/v1/docs/access"),
            browser.post("/api/v1/docs/access/grant", json={"email": "x@reader.test"}),
            browser.post("/api/v1/docs/access/revoke", json={"email": "x@reader.test"}),
        ):
            assert response.status_code == 503
            assert response.json["error"]["message"] == "Documentation access management is not configured"
        assert cloudflare.requests == []
    finally:
        h.close()


def test_api_keys_and_the_admin_key_are_not_accepted(docs, cloudflare):
    key = docs.browser.post("/api/v1/keys", json={"name": "k", "scopes": ["read:usage"]}).json["key"]
    assert docs.http.get("/api/v1/docs/access", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    admin = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
    assert docs.http.get("/api/v1/docs/access", headers=admin).status_code == 401
    assert docs.http.post("/api/v1/docs/access/grant", json={"email": "x@reader.test"}, headers=admin).status_code == 401
    assert cloudflare.requests == []


def test_managing_docs_access_needs_the_admin_permission(docs, cloudflare):
    plain = docs.portal_user("ada@acme.test")
    assert plain.get("/api/v1/docs/access").status_code == 403
    assert plain.post("/api/v1/docs/access/grant", json={"email": "x@reader.test"}).status_code == 403
    assert cloudflare.requests == []


def test_an_invalid_email_answers_422(docs, cloudflare):
    assert docs.browser.post("/api/v1/docs/access/grant", json={"email": "not an email"}).status_code == 422
    assert docs.browser.post("/api/v1/docs/access/grant", json={}).status_code == 422


def test_grants_and_revokes_show_in_the_audit_log(docs):
    docs.browser.post("/api/v1/docs/access/grant", json={"email": "new@reader.test", "reason": "security review"})
    docs.browser.post("/api/v1/docs/access/revoke", json={"email": "new@reader.test"})
    docs.project()
    entries = docs.admin("GET", "/api/v1/admin/audit-log?actor=user:root@acme.test").json["entries"]
    assert [(e["action"], e["target"], e["outcome"]) for e in entries[:2]] == [
        ("DOCS_ACCESS_REVOKE", "new@reader.test", "success"),
        ("DOCS_ACCESS_GRANT", "new@reader.test", "success"),
    ]
    assert entries[1]["reason"] == "security review"
