"""Two tenants with data in every read model, for the security suite (issue 10).

Tenant alpha owns the data; tenant beta owns credentials of every kind and a little data of
its own, so that beta's reads answer 200 (and the check that they hold nothing of alpha's
can fail). Every secret of alpha's contains the marker "alpha-secret" (or its token count
424242 / its cost 13.371337), and every id of alpha's starts with "alpha".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from projections.admin_audit import AdminAuditProjection
from tests.conftest import ADMIN_KEY, Harness, PortalSession, basic, usage

SCOPES_ALL = ["read:usage", "read:policies", "write:logs", "read:audit", "read:ledger"]
PERMISSIONS_ALL = ["admin", "permission.billing.manage", "permission.tenant.superuser", "usage:platform_wide"]
SECRET_MARKERS = ("alpha-secret", "alpha secret", "424242", "13.371337")
LICENSE = {"tier": "Enterprise", "nodes_total": 10, "expires_at": "2027-06-30T00:00:00Z"}


@dataclass
class Tenant:
    tenant_id: str
    org_id: str
    client: dict = field(default_factory=dict)
    client_id: str = ""
    key: str = ""
    key_id: str = ""
    browser: PortalSession | None = None

    def admin_headers(self, org_id: str | None = None) -> dict:
        return {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": self.tenant_id, "X-Org-ID": org_id or self.org_id}

    def credentials(self) -> dict[str, tuple[str, dict]]:
        """Every way this tenant can call the API: (kind, headers); kind "user" uses the browser."""
        return {
            "client": ("http", self.client),
            "client+alpha-org": ("http", {**self.client, "X-Org-ID": "alpha-org"}),
            "key": ("http", {"Authorization": f"Bearer {self.key}"}),
            "user": ("browser", {}),
            "admin-for-tenant": ("http", self.admin_headers()),
            "admin-for-tenant+alpha-org": ("http", self.admin_headers("alpha-org")),
        }


def call(h: Harness, tenant: Tenant, credential: str, method: str, path: str, body=None):
    how, headers = tenant.credentials()[credential]
    if how == "browser":
        headers = {"X-Requested-With": "XMLHttpRequest"}
        return tenant.browser.client.open(path, method=method, json=body, headers=headers)
    return h.http.open(path, method=method, json=body, headers=headers)


def _client(h: Harness, tenant_id: str, org_id: str) -> tuple[dict, str]:
    response = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": tenant_id, "org_id": org_id, "name": "agent"})
    assert response.status_code == 201, response.json
    return basic(response.json["client_id"], response.json["client_secret"]), response.json["client_id"]


def _ok(response, status=(200, 201, 202, 204)):
    assert response.status_code in status, (response.status_code, response.get_json(silent=True))
    return response


def two_tenants(h: Harness, docs_reader: str | None = None) -> tuple[Tenant, Tenant, dict]:
    """Provision alpha (with data everywhere) and beta (with credentials of every kind).
    Returns (alpha, beta, facts about alpha's data)."""
    alpha, beta = Tenant("alpha-t", "alpha-org"), Tenant("beta-t", "beta-org")
    facts: dict = {}
    for t in (alpha, beta):
        h.tenant(t.tenant_id, (t.org_id,))
        t.client, t.client_id = _client(h, t.tenant_id, t.org_id)
        email = f"root@{t.tenant_id}.test"
        h.user(email, permissions=PERMISSIONS_ALL, tenant_id=t.tenant_id, org_id=t.org_id)
        t.browser = h.login(email)
        created = _ok(t.browser.post("/api/v1/keys", json={"name": f"{t.tenant_id}-key", "scopes": SCOPES_ALL}))
        t.key, t.key_id = created.json["key"], created.json["id"]
        _ok(h.admin("POST", "/api/v1/admin/licenses", json={"tenant_id": t.tenant_id, "org_id": t.org_id, **LICENSE}))
    # alpha's data in every read model
    secret_key = _ok(alpha.browser.post("/api/v1/keys", json={"name": "alpha-secret-key", "scopes": ["read:usage"]}))
    facts["secret_key_id"] = secret_key.json["id"]
    events = [
        usage(
            "alpha-evt-1", llm_model="alpha-secret-model", prompt_tokens=424242, completion_tokens=0,
            cost_usd="13.371337", operation="rag_query", knowledge_base_id="alpha-secret-kb",
            app_id="alpha-secret-app", user_id="alpha-secret-user", team_id="alpha-secret-team",
            agent_id="alpha-secret-agent", workflow_id="alpha-secret-flow", http_path="/alpha-secret-path",
            instance_id="alpha-secret-node", metadata={"note": "alpha-secret-meta"},
        ),
        usage("alpha-evt-2", llm_model="alpha-secret-model", prompt_tokens=424242, completion_tokens=0),
        {"event_id": "alpha-evt-3", "event_type": "api_call", "occurred_at": "2026-11-20T11:00:00Z",
         "http_method": "post", "http_path": "/alpha-secret-tool", "http_status_code": 200},
        {"event_id": "alpha-evt-4", "event_type": "app_compute", "occurred_at": "2026-11-20T11:00:00Z",
         "resource_type": "app_compute", "quantity": 424242, "app_id": "alpha-secret-app"},
    ]
    _ok(h.post_events(alpha.client, events))
    _ok(h.http.post("/api/v1/heartbeats", headers=alpha.client, json={
        "instance_id": "alpha-node", "instance_type": "agent", "hostname": "alpha-secret-host", "port": 8443,
        "host_info": {"os": "alpha-secret-os"},
    }))
    _ok(h.admin("POST", "/api/v1/admin/policies", json={
        "tenant_id": alpha.tenant_id, "org_id": alpha.org_id, "policy_id": "alpha-policy",
        "name": "Alpha Secret Policy", "rules": {"deny": "alpha-secret-rule"},
    }))
    _ok(h.admin("POST", "/api/v1/admin/entities", json={
        "tenant_id": alpha.tenant_id, "entity_id": "alpha-secret-app", "entity_type": "app", "name": "Alpha Secret App",
    }))
    _ok(h.http.post("/api/v1/budgets", headers=alpha.client, json={
        "id": "alpha-budget", "name": "Alpha Secret Budget", "limit_usd": 1, "period": "monthly", "on_exceed": "block",
    }))
    _ok(h.http.post("/api/v1/budgets", headers=alpha.client, json={
        "id": "alpha-app-budget", "name": "Alpha Secret App Budget", "scope": "app", "scope_id": "alpha-secret-app",
        "unit": "credits", "limit_credits": 5, "period": "monthly",
    }))
    _ok(alpha.browser.post("/api/v1/events/alpha-evt-2/amend", json={"reason": "alpha-secret-fix", "fields": {"completion_tokens": 1}}))
    if docs_reader:
        _ok(alpha.browser.post("/api/v1/docs/access/grant", json={"email": docs_reader, "reason": "alpha-secret-reason"}))
    # beta's own: one event, one node, one budget, so that its reads have something to show
    _ok(h.post_events(beta.client, [usage("beta-evt-1", llm_model="beta-model")]))
    _ok(h.http.post("/api/v1/heartbeats", headers=beta.client, json={"instance_id": "beta-node", "instance_type": "agent"}))
    _ok(h.http.post("/api/v1/budgets", headers=beta.client, json={
        "id": "beta-budget", "name": "Beta Budget", "limit_usd": 1000, "period": "monthly",
    }))
    h.project()
    _ok(h.http.post("/api/v1/budgets/check", headers=alpha.client, json={
        "reserve": True, "estimated_cost_usd": "0.5", "hold_id": "alpha-hold-1", "app_id": "alpha-secret-app",
    }))
    facts["hold_id"] = "alpha-hold-1"
    h.project()
    table = AdminAuditProjection().log
    with h.engine.connect() as conn:
        facts["audit_entry_id"] = conn.execute(
            select(table.c.position).where(table.c.tenant_id == alpha.tenant_id).limit(1)
        ).scalar_one()
    return alpha, beta, facts
