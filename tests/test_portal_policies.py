"""Policies: admin create / update / delete, portal export as JSON and formula-safe CSV."""
from __future__ import annotations

import csv
import io

from tests.conftest import ADMIN_KEY


def create(h, **fields):
    body = {"tenant_id": "acme", "org_id": "prod", "name": "Block PII", "rules": {"pii": ["ssn", "iban"]}, **fields}
    return h.admin("POST", "/api/v1/admin/policies", json=body)


def test_creating_a_policy_answers_201_with_its_id(h, agent):
    response = create(h, policy_id="pii-block")
    assert response.status_code == 201
    assert response.json["policy_id"] == "pii-block"
    assert create(h).json["policy_id"].startswith("pol_")


def test_a_duplicate_policy_id_answers_409(h, agent):
    create(h, policy_id="p1")
    assert create(h, policy_id="p1").status_code == 409


def test_invalid_policies_answer_422(h, agent):
    assert create(h, action="explode").status_code == 422
    assert create(h, name="").status_code == 422
    assert create(h, rules=["not", "an", "object"]).status_code == 422
    assert create(h, category="Not A Slug").status_code == 422


def test_export_lists_the_orgs_policies_with_defaults(h, agent):
    create(h, policy_id="p1", description="no personal data")
    h.project()
    response = h.portal_user().get("/api/v1/policies/export")
    assert response.status_code == 200
    assert response.json["total"] == 1
    (policy,) = response.json["policies"]
    assert policy == {
        "policy_id": "p1", "name": "Block PII", "description": "no personal data", "category": "general",
        "action": "block", "enabled": True, "revision": 1, "rules": {"pii": ["ssn", "iban"]},
        "created_at": "2026-11-20T12:00:00Z", "updated_at": "2026-11-20T12:00:00Z",
    }


def test_updating_a_policy_changes_only_the_given_fields(h, agent, clock):
    create(h, policy_id="p1")
    clock.advance(minutes=10)
    response = h.admin("PUT", "/api/v1/admin/policies/p1", json={"tenant_id": "acme", "enabled": False, "action": "warn"})
    assert response.status_code == 200
    h.project()
    (policy,) = h.portal_user().get("/api/v1/policies/export").json["policies"]
    assert (policy["enabled"], policy["action"], policy["name"], policy["revision"]) == (False, "warn", "Block PII", 2)
    assert policy["updated_at"] == "2026-11-20T12:10:00Z"


def test_deleting_a_policy_answers_204_and_it_leaves_the_export(h, agent):
    create(h, policy_id="p1")
    assert h.admin("DELETE", "/api/v1/admin/policies/p1?tenant_id=acme").status_code == 204
    assert h.admin("DELETE", "/api/v1/admin/policies/p1?tenant_id=acme").status_code == 404
    h.project()
    assert h.portal_user().get("/api/v1/policies/export").json["total"] == 0


def test_unknown_or_foreign_policies_answer_404(h, agent):
    h.tenant("globex", ("prod",))
    create(h, tenant_id="globex", policy_id="theirs")
    assert h.admin("PUT", "/api/v1/admin/policies/theirs", json={"tenant_id": "acme", "enabled": False}).status_code == 404
    assert h.admin("DELETE", "/api/v1/admin/policies/theirs?tenant_id=acme").status_code == 404
    h.project()
    assert h.portal_user().get("/api/v1/policies/export").json["total"] == 0


def test_csv_export_is_an_attachment_safe_from_formula_injection(h, agent):
    create(h, policy_id="p1", name="=HYPERLINK(\"http://evil\")", description="+1 cmd")
    h.project()
    response = h.portal_user().get("/api/v1/policies/export?format=csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == "attachment; filename=policies.csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["policy_id", "name", "description"]
    assert rows[1][1] == "'=HYPERLINK(\"http://evil\")" and rows[1][2] == "'+1 cmd"


def test_keys_need_read_policies_to_export(h, agent):
    create(h, policy_id="p1")
    browser = h.portal_user()
    default_key = browser.post("/api/v1/keys", json={"name": "k"}).json["key"]  # read:policies by default
    usage_key = browser.post("/api/v1/keys", json={"name": "u", "scopes": ["read:usage"]}).json["key"]
    h.project()
    assert h.http.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {default_key}"}).json["total"] == 1
    denied = h.http.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {usage_key}"})
    assert denied.status_code == 403 and denied.json["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert h.http.get("/api/v1/policies/export").status_code == 401


def test_policy_admin_routes_need_the_admin_key(h, agent):
    response = h.http.post("/api/v1/admin/policies", json={"tenant_id": "acme", "org_id": "prod", "name": "x"})
    assert response.status_code == 401
    headers = {"X-Admin-API-Key": ADMIN_KEY}
    assert h.http.delete("/api/v1/admin/policies/x?tenant_id=acme", headers=headers).status_code == 404
