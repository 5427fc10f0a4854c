"""Licences (seed 000): admin issue / replace / revoke and GET /api/v1/license/status,
every field computed at its boundaries with the injected clock."""
from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY


def issue(h, tenant_id="acme", org_id="prod", **terms):
    body = {"tenant_id": tenant_id, "org_id": org_id, "tier": "Enterprise", "nodes_total": 10,
            "expires_at": "2027-11-20T12:00:00Z", **terms}
    return h.admin("POST", "/api/v1/admin/licenses", json=body)


def beat(h, agent, instance_id, instance_type="agent"):
    response = h.http.post("/api/v1/heartbeats", json={"instance_id": instance_id, "instance_type": instance_type}, headers=agent)
    assert response.status_code == 202, response.json


def status(h, browser, **params):
    h.project()
    return browser.get("/api/v1/license/status", query_string=params)


def test_issuing_a_licence_answers_201(h, agent):
    response = issue(h, credits_included="50000", license_key="LK-123")
    assert response.status_code == 201
    assert response.json["org_id"] == "prod"


def test_issuing_a_second_licence_answers_409(h, agent):
    issue(h)
    response = issue(h)
    assert response.status_code == 409 and response.json["error"]["code"] == "LICENSE_EXISTS"


@pytest.mark.parametrize(
    "field,value",
    [("tier", "Gold"), ("nodes_total", 0), ("nodes_total", "10"), ("expires_at", "2027-01-01T00:00:00"), ("credits_included", -1),
     ("credits_included", 10**9), ("credits_included", "10000000000"), ("credits_included", "0.0000000001")],
)
def test_invalid_terms_answer_422(h, agent, field, value):
    assert issue(h, **{field: value}).status_code == 422


def test_a_licence_for_an_unknown_org_answers_404(h, agent):
    assert issue(h, org_id="nowhere").status_code == 404


def test_licence_admin_routes_need_the_admin_key(h, agent):
    response = h.http.post("/api/v1/admin/licenses", json={"tenant_id": "acme", "org_id": "prod"})
    assert response.status_code in (401, 422)
    assert h.http.delete("/api/v1/admin/licenses/prod?tenant_id=acme").status_code == 401


def test_status_shows_tier_nodes_percentage_status_and_expiry(h, agent):
    issue(h, tier="Professional", nodes_total=4)
    beat(h, agent, "agent-a-01")
    beat(h, agent, "orch-01", "orchestrator")
    browser = h.portal_user()
    response = status(h, browser)
    assert response.status_code == 200
    assert response.json == {
        "org_id": "prod",
        "tier": "Professional",
        "nodes_total": 4,
        "nodes_used": 2,
        "usage_percentage": 50,
        "status": "ACTIVE",
        "expires_at": "2027-11-20T12:00:00Z",
    }


def test_without_a_licence_status_answers_404(h, agent):
    browser = h.portal_user()
    assert status(h, browser).status_code == 404


def test_nodes_used_counts_nodes_seen_within_five_minutes(h, agent, clock):
    issue(h)
    beat(h, agent, "old")
    clock.advance(seconds=1)
    beat(h, agent, "new")
    browser = h.portal_user()
    clock.advance(seconds=299)  # "old" was seen exactly 300 s ago: still active
    assert status(h, browser).json["nodes_used"] == 2
    clock.advance(seconds=1)  # 301 s: no longer
    assert status(h, browser).json["nodes_used"] == 1


def test_the_same_node_beating_twice_counts_once(h, agent):
    issue(h)
    beat(h, agent, "a-1")
    beat(h, agent, "a-1")
    assert status(h, h.portal_user()).json["nodes_used"] == 1


def test_usage_percentage_has_two_decimals(h, agent):
    issue(h, nodes_total=3)
    beat(h, agent, "a-1")
    assert status(h, h.portal_user()).json["usage_percentage"] == 33.33


@pytest.mark.parametrize(
    "expires_at,expected",
    [
        ("2026-12-20T12:00:01Z", "ACTIVE"),  # 30 days and 1 second left
        ("2026-12-20T12:00:00Z", "EXPIRING_SOON"),  # exactly 30 days left
        ("2026-11-20T12:00:01Z", "EXPIRING_SOON"),  # one second left
        ("2026-11-20T12:00:00Z", "EXPIRED"),  # expires now
        ("2026-01-01T00:00:00Z", "EXPIRED"),
    ],
)
def test_status_follows_the_expiry_boundaries(h, agent, expires_at, expected):
    issue(h, expires_at=expires_at)
    assert status(h, h.portal_user()).json["status"] == expected


def test_over_limit_starts_above_the_licensed_nodes(h, agent):
    issue(h, nodes_total=2)
    browser = h.portal_user()
    beat(h, agent, "a-1")
    beat(h, agent, "a-2")
    response = status(h, browser).json
    assert (response["status"], response["usage_percentage"]) == ("ACTIVE", 100)
    beat(h, agent, "a-3")
    response = status(h, browser).json
    assert (response["status"], response["usage_percentage"]) == ("OVER_LIMIT", 150)


def test_expired_wins_over_over_limit_and_over_limit_over_expiring_soon(h, agent):
    issue(h, nodes_total=1, expires_at="2026-11-25T00:00:00Z")
    beat(h, agent, "a-1")
    beat(h, agent, "a-2")
    browser = h.portal_user()
    assert status(h, browser).json["status"] == "OVER_LIMIT"
    h.admin("PUT", "/api/v1/admin/licenses/prod", json={"tenant_id": "acme", "tier": "Developer", "nodes_total": 1, "expires_at": "2026-11-20T11:00:00Z"})
    assert status(h, browser).json["status"] == "EXPIRED"


def test_replacing_a_licence_changes_its_terms(h, agent):
    issue(h)
    response = h.admin("PUT", "/api/v1/admin/licenses/prod", json={
        "tenant_id": "acme", "tier": "Plus", "nodes_total": 50, "expires_at": "2028-01-01T00:00:00+01:00",
    })
    assert response.status_code == 200
    body = status(h, h.portal_user()).json
    assert (body["tier"], body["nodes_total"], body["expires_at"]) == ("Plus", 50, "2027-12-31T23:00:00Z")


def test_replacing_a_missing_licence_answers_404(h, agent):
    response = h.admin("PUT", "/api/v1/admin/licenses/prod", json={
        "tenant_id": "acme", "tier": "Plus", "nodes_total": 5, "expires_at": "2028-01-01T00:00:00Z",
    })
    assert response.status_code == 404


def test_revoking_a_licence_answers_204_and_status_404_after(h, agent):
    issue(h)
    browser = h.portal_user()
    assert status(h, browser).status_code == 200
    assert h.admin("DELETE", "/api/v1/admin/licenses/prod?tenant_id=acme").status_code == 204
    assert status(h, browser).status_code == 404
    assert h.admin("DELETE", "/api/v1/admin/licenses/prod?tenant_id=acme").status_code == 404


def test_a_revoked_licence_can_be_issued_again(h, agent):
    issue(h)
    h.admin("DELETE", "/api/v1/admin/licenses/prod?tenant_id=acme")
    assert issue(h, tier="Developer").status_code == 201
    assert status(h, h.portal_user()).json["tier"] == "Developer"


def test_another_tenants_licence_is_not_found(h, agent):
    h.tenant("globex", ("globex-prod",))
    issue(h, tenant_id="globex", org_id="globex-prod")
    admin = h.portal_user("root@acme.test", permissions=["admin"])
    assert status(h, admin, org_id="globex-prod").status_code == 404
    # and the admin key cannot reach it through the wrong tenant either
    assert h.admin("DELETE", "/api/v1/admin/licenses/globex-prod?tenant_id=acme").status_code == 404


def test_another_org_of_the_tenant_needs_admin_or_superuser(h, agent):
    issue(h, org_id="research")
    plain = h.portal_user("ada@acme.test")
    assert status(h, plain, org_id="research").status_code == 403
    admin = h.portal_user("root@acme.test", permissions=["permission.tenant.superuser"])
    assert status(h, admin, org_id="research").json["org_id"] == "research"


def test_agents_and_keys_can_read_licence_status(h, agent):
    issue(h)
    h.project()
    assert h.http.get("/api/v1/license/status", headers=agent).status_code == 200
    key = h.portal_user().post("/api/v1/keys", json={"name": "k"}).json["key"]
    assert h.http.get("/api/v1/license/status", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert h.http.get("/api/v1/license/status").status_code == 401


def test_admin_key_names_the_org_for_licence_status(h, agent):
    issue(h)
    h.project()
    headers = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
    assert h.http.get("/api/v1/license/status", headers=headers).json["tier"] == "Enterprise"
