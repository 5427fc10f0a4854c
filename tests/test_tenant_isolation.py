"""Cross-tenant matrix (issue 10, case 10): for every endpoint with an id or a scope, tenant
beta's credentials of every kind (agent client, client with alpha's org in X-Org-ID, API key
with every scope, portal admin session, admin key for beta's tenant and for alpha's org) get
404 or an answer with none of tenant alpha's data, and beta's writes change nothing alpha sees.

The matrix is keyed by Flask endpoint and checked against the app's url_map: a new endpoint
without a matrix row (or a reasoned place in NO_TENANT_DATA / OPERATOR_ONLY) fails the suite.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import pytest

from tests.conftest import Harness, make_settings
from tests.fake_cloudflare import ACCOUNT, GROUP, TOKEN
from tests.security_support import SECRET_MARKERS, call, two_tenants

BETA_CREDENTIALS = ("client", "client+alpha-org", "key", "user", "admin-for-tenant", "admin-for-tenant+alpha-org")
TENANT_CREDENTIALS = tuple(c for c in BETA_CREDENTIALS if not c.startswith("admin"))  # the admin key is global there
DOCS_READER = "reader@alpha-secret.test"


@dataclass(frozen=True)
class Probe:
    method: str
    path: str  # formatted with the facts of alpha's data
    body: dict | None = None
    foreign_id: bool = False  # names one of alpha's ids: never 2xx, and some credential gets 404
    credentials: tuple[str, ...] = BETA_CREDENTIALS
    some_success: bool = True  # scope probes: some beta credential is served (so the check can fail)
    check: Callable[[dict], None] | None = None  # more about a 2xx answer
    echo: str = ""  # a value of alpha's that beta itself sent and the answer may repeat
    scan_text: bool = True  # False where beta's own events may quote alpha's ids (checked by `check`)


def _beta_events_only(body: dict) -> None:
    assert body["events"] and {e["tenant_id"] for e in body["events"]} == {"beta-t"}, body
    assert all(e["position"] > 0 and "entry_hash" in e for e in body["events"])


def _allowed_only(body: dict) -> None:
    assert body == {"allowed": True}, body


def _accepted_as_new(body: dict) -> None:
    assert body["accepted"] + body["duplicates"] == 1, body  # never 409: alpha's ids are not beta's


# endpoint -> probes. Paths with {...} are filled from alpha's data.
MATRIX: dict[str, list[Probe]] = {
    # usage reads (seed 000)
    "usage.get_usage": [
        Probe("GET", "/api/v1/usage?granularity=raw"),
        Probe("GET", "/api/v1/usage?granularity=raw&format=csv"),
        Probe("GET", "/api/v1/usage?granularity=hourly"),
        Probe("GET", "/api/v1/usage?granularity=daily&format=csv"),
        Probe("GET", "/api/v1/usage?granularity=raw&client_id={client_id}"),
        Probe("GET", "/api/v1/usage?granularity=raw&platform_wide=true"),
    ],
    "usage.get_summary": [
        Probe("GET", "/api/v1/usage/summary"),
        Probe("GET", "/api/v1/usage/summary?platform_wide=true"),
    ],
    "usage.export_usage": [Probe("GET", "/api/v1/export/usage"), Probe("GET", "/api/v1/export/usage?days=365")],
    "usage_analytics.usage_breakdown": [
        Probe("GET", f"/api/v1/usage/breakdown?group_by={g}") for g in ("model", "agent", "team", "user", "workflow", "day")
    ],
    "usage_analytics.usage_records": [
        Probe("GET", "/api/v1/usage/records"),
        Probe("GET", "/api/v1/usage/records?client_id={client_id}&model=alpha-secret-model"),
    ],
    # axon (seed 001)
    "axon.axon_usage": [Probe("GET", "/v1/axon/usage?days=365")],
    "axon.axon_audit": [Probe("GET", "/v1/axon/audit"), Probe("GET", "/v1/axon/audit?filter[knowledge_base_id]=alpha-secret-kb")],
    # credits (seed 003)
    "credits.usage": [Probe("GET", "/api/usage"), Probe("GET", "/api/usage?startDate=2026-01-01&endDate=2026-12-31")],
    "credits.monthly": [Probe("GET", "/api/usage/monthly?months=24")],
    "credits.top_consumers": [Probe("GET", "/api/usage/top-consumers?days=365&limit=50")],
    # ingest, heartbeats, corrections
    "events.post_events": [
        Probe("POST", "/api/v1/events", {"event_id": "alpha-evt-3", "event_type": "api_call",
                                          "occurred_at": "2026-11-20T11:30:00Z"}, check=_accepted_as_new),
    ],
    "otlp.export_traces": [
        Probe("POST", "/v1/traces", {"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "chat", "endTimeUnixNano": "1795174200000000000",
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "3"}}]}]}]}]}),
    ],
    "litellm.post_litellm": [
        Probe("POST", "/api/v1/integrations/litellm", [{"id": "alpha-evt-5", "endTime": 1795174200, "model": "gpt-4o",
                                                        "prompt_tokens": 1, "completion_tokens": 1}], check=_accepted_as_new),
    ],
    "nodes.heartbeat": [Probe("POST", "/api/v1/heartbeats", {"instance_id": "alpha-node", "instance_type": "orchestrator"})],
    "corrections.void": [Probe("POST", "/api/v1/events/alpha-evt-1/void", {"reason": "x"}, foreign_id=True)],
    "corrections.amend": [
        Probe("POST", "/api/v1/events/alpha-evt-1/amend", {"reason": "x", "fields": {"prompt_tokens": 1}}, foreign_id=True)
    ],
    # keys
    "keys.list_keys": [Probe("GET", "/api/v1/keys")],
    "keys.create_key": [Probe("POST", "/api/v1/keys", {"name": "beta-made"})],
    "keys.get_key": [Probe("GET", "/api/v1/keys/{secret_key_id}", foreign_id=True)],
    "keys.revoke_key": [Probe("DELETE", "/api/v1/keys/{secret_key_id}", foreign_id=True)],
    # licence and nodes (In-VPC)
    "licenses.license_status_view": [
        Probe("GET", "/api/v1/license/status"),
        Probe("GET", "/api/v1/license/status?org_id=alpha-org", foreign_id=True),
    ],
    "nodes.nodes": [Probe("GET", "/api/v1/nodes")],
    "nodes.nodes_status": [Probe("GET", "/api/v1/nodes/status")],
    "nodes.node": [Probe("GET", "/api/v1/nodes/alpha-node", foreign_id=True)],
    # policies
    "policies.export_policies": [Probe("GET", "/api/v1/policies/export"), Probe("GET", "/api/v1/policies/export?format=csv")],
    # budgets (seed 002)
    "budgets.list_budgets": [
        Probe("GET", "/api/v1/budgets"),
        Probe("GET", "/api/v1/budgets?tenant_id=alpha-t"),
        Probe("GET", "/api/v1/budgets?tenant_id=alpha-t&org_id=alpha-org"),
        Probe("GET", "/api/v1/budgets?org_id=alpha-org"),
    ],
    "budgets.create_budget": [
        Probe("POST", "/api/v1/budgets", {"id": "alpha-budget", "name": "beta's", "limit_usd": 5, "period": "daily"},
              echo="alpha-budget"),
    ],
    "budgets.get_budget": [Probe("GET", "/api/v1/budgets/alpha-app-budget", foreign_id=True)],
    "budgets.update_budget": [Probe("PUT", "/api/v1/budgets/alpha-app-budget", {"name": "taken"}, foreign_id=True)],
    "budgets.delete_budget": [Probe("DELETE", "/api/v1/budgets/alpha-app-budget", foreign_id=True)],
    "budgets.budget_status": [Probe("GET", "/api/v1/budgets/alpha-app-budget/status", foreign_id=True)],
    "budgets.budget_alerts": [Probe("GET", "/api/v1/budgets/alpha-app-budget/alerts", foreign_id=True)],
    "budgets.rotate_webhook_secret": [
        Probe("POST", "/api/v1/budgets/alpha-app-budget/webhook-secret/rotate", foreign_id=True)
    ],
    "budget_holds.get_hold": [Probe("GET", "/api/v1/budgets/holds/{hold_id}", foreign_id=True)],
    "budget_holds.commit_hold": [
        Probe("POST", "/api/v1/budgets/holds/{hold_id}/commit", {"actual_cost_usd": 1}, foreign_id=True)
    ],
    "budget_holds.release_hold": [Probe("POST", "/api/v1/budgets/holds/{hold_id}/release", foreign_id=True)],
    "budgets.check_budgets": [
        Probe("POST", "/api/v1/budgets/check", {"estimated_cost_usd": 5}, check=_allowed_only),
        Probe("POST", "/api/v1/budgets/check", {"org_id": "alpha-org", "app_id": "alpha-secret-app"}, foreign_id=True),
    ],
    # admin audit log: a portal admin sees their own tenant (the admin key sees every tenant: operator)
    "audit_log.audit_log": [
        Probe("GET", "/api/v1/admin/audit-log", credentials=TENANT_CREDENTIALS),
        Probe("GET", "/api/v1/admin/audit-log?tenant_id=alpha-t&limit=500", credentials=TENANT_CREDENTIALS),
    ],
    "audit_log.audit_entry": [
        Probe("GET", "/api/v1/admin/audit-log/{audit_entry_id}", foreign_id=True, credentials=TENANT_CREDENTIALS)
    ],
    # docs access: the Access group is deployment-wide, but what one tenant granted is its own
    "docs_access.list_access": [Probe("GET", "/api/v1/docs/access")],
    "docs_access.grant": [
        Probe("POST", "/api/v1/docs/access/grant", {"email": "reader@beta.test"}),
        Probe("POST", "/api/v1/docs/access/grant", {"email": DOCS_READER}, echo=DOCS_READER),
    ],
    # answered like an absent e-mail (a no-op); the snapshot below proves alpha's reader stays
    "docs_access.revoke": [Probe("POST", "/api/v1/docs/access/revoke", {"email": DOCS_READER}, echo=DOCS_READER)],
    # sessions: only ever the caller's own
    "auth.me": [Probe("GET", "/api/v1/auth/me")],
    # the ledger API: a read:ledger key reads its own tenant's events (beta's events quote the
    # ids beta itself sent, so the check is on each event's tenant); other credentials are refused
    "auditors.read_ledger": [
        Probe("GET", "/api/v1/ledger?limit=1000", credentials=TENANT_CREDENTIALS, check=_beta_events_only, scan_text=False)
    ],
    "auditors.read_checkpoints": [Probe("GET", "/api/v1/ledger/checkpoints", credentials=TENANT_CREDENTIALS, some_success=False)],
}

# Endpoints that hold no tenant's data at all.
NO_TENANT_DATA = {
    "ops.healthz": "liveness",
    "ops.readyz": "projection positions and parked-error counts of the deployment",
    "ops.metrics": "deployment-wide gauges",
    "ops.deployment_config": "the deployment mode",
    "api-docs.openapi_json": "the OpenAPI document",
    "api-docs.openapi_swagger_ui": "the docs page",
    "swagger_assets": "static files",
    "static": "static files",
    "auditors.public_key": "the checkpoint public key",
    "pricing.get_pricing": "the price table is global (default list prices and operator overrides)",
    "credits.resource_types": "the resource-type registry is code",
    "auth.login": "answers the credentials' own user only",
    "auth.logout": "ends the caller's own session only",
    "auth.change_password": "changes the caller's own password only",
    "dashboard.dashboard_page": "the page shell holds no data; its script reads the JSON API above",
    "dashboard.static": "the dashboard's static files",
}

# The operator's routes: X-Admin-API-Key only, deployment-wide by design; every tenant
# credential is refused there (tests/test_auth_limits.py checks each of them).
OPERATOR_ONLY = {
    "admin.create_tenant", "admin.create_org", "admin.create_client", "admin.rotate_client", "admin.disable_client",
    "admin_users.create_user", "admin_users.change_permissions", "admin_users.list_users",
    "admin_users.disable_user", "admin_users.enable_user", "admin_users.reset_password",
    "licenses.issue_license", "licenses.replace_license", "licenses.revoke_license",
    "policies.create_policy", "policies.update_policy", "policies.delete_policy",
    "admin_pricing.set_price", "admin_pricing.price_history",
    "credit_admin.put_credit_rate", "credit_admin.get_credit_rates", "credit_admin.post_entity",
    "credit_admin.sync_licenses_now", "nodes.admin_nodes_status", "ops.admin_health",
}


def test_every_endpoint_has_a_place_in_the_matrix(tmp_path, clock):
    from api import create_app

    app = create_app(make_settings(f"sqlite:///{tmp_path}/x.db", clock))
    try:
        endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    finally:
        app.extensions["usage_ledger"].close()
    placed = set(MATRIX) | set(NO_TENANT_DATA) | OPERATOR_ONLY
    assert endpoints - placed == set(), "endpoints without a cross-tenant matrix row"
    assert placed - endpoints == set(), "matrix rows for endpoints that no longer exist"
    assert not (set(MATRIX) & set(NO_TENANT_DATA)) and not (set(MATRIX) & OPERATOR_ONLY)


@pytest.fixture
def world(database_url, clock, cloudflare):
    h = Harness(make_settings(
        database_url, clock, deployment_mode="invpc", cf_api_token=TOKEN, cf_account_id=ACCOUNT,
        cf_access_group_id=GROUP, cf_api_base_url=cloudflare.base_url, cf_api_timeout_seconds=5,
    ))
    alpha, beta, facts = two_tenants(h, docs_reader=DOCS_READER)
    facts["client_id"] = alpha.client_id
    yield h, alpha, beta, facts
    h.close()


ALPHA_VIEWS = (
    ("client", "/api/v1/usage/summary"),
    ("client", "/api/v1/usage?granularity=raw"),
    ("client", "/api/v1/budgets"),
    ("client", "/api/v1/budgets/alpha-app-budget/status"),
    ("client", "/api/v1/usage/records"),
    ("user", "/api/v1/keys"),
    ("user", "/api/v1/nodes"),
    ("user", "/api/v1/license/status"),
    ("user", "/api/v1/policies/export"),
    ("user", "/api/usage"),
    ("user", "/api/v1/docs/access"),
    ("key", "/v1/axon/audit"),
)


def _alpha_sees(h, alpha) -> dict:
    seen = {}
    for credential, path in ALPHA_VIEWS:
        response = call(h, alpha, credential, "GET", path)
        assert response.status_code == 200, (path, response.json)
        seen[path] = _without_positions(response.json)
    return seen


def _without_positions(value):
    if isinstance(value, dict):
        return {k: _without_positions(v) for k, v in value.items() if k != "position"}
    if isinstance(value, list):
        return [_without_positions(v) for v in value]
    return value


def _text(response) -> str:
    return response.get_data(as_text=True).lower()


def test_another_tenant_gets_404_or_nothing_of_alphas_on_every_endpoint(world):
    h, alpha, beta, facts = world
    _alpha_sees(h, alpha)  # alpha's key is used once: its last_used_at settles
    h.project()
    before = _alpha_sees(h, alpha)
    assert "alpha-secret" in json.dumps(before).lower() and "424242" in json.dumps(before)  # the markers are there to find

    failures: list[str] = []
    calls = 0
    for endpoint, probes in MATRIX.items():
        for probe in probes:
            path = probe.path.format(**facts)
            statuses = {}
            for credential in probe.credentials:
                response = call(h, beta, credential, probe.method, path, probe.body)
                calls += 1
                statuses[credential] = response.status_code
                where = f"{endpoint} {probe.method} {path} as beta {credential} → {response.status_code}"
                text = _text(response)
                if probe.echo:
                    text = text.replace(probe.echo, "")
                if response.status_code >= 500:
                    failures.append(f"{where}: server error {text[:200]}")
                    continue
                leaked = [m for m in SECRET_MARKERS if m in text] if probe.scan_text else []
                if probe.scan_text and response.status_code < 300 and "alpha" in text:
                    leaked.append("alpha")
                if leaked:
                    failures.append(f"{where}: shows alpha's data {leaked}: {text[:300]}")
                if probe.foreign_id and response.status_code < 300:
                    failures.append(f"{where}: served alpha's id")
                if probe.check and response.status_code < 300 and response.is_json:
                    try:
                        probe.check(response.json)
                    except AssertionError as error:
                        failures.append(f"{where}: {error}")
            if probe.foreign_id and 404 not in statuses.values():
                failures.append(f"{endpoint} {path}: no beta credential got as far as 404 {statuses}")
            if not probe.foreign_id and probe.some_success and not any(s < 300 for s in statuses.values()):
                failures.append(f"{endpoint} {path}: no beta credential was served, so nothing was checked {statuses}")
    h.project()
    after = _alpha_sees(h, alpha)
    for path in before:
        if before[path] != after[path]:
            failures.append(f"beta's calls changed what alpha sees at {path}: {before[path]} → {after[path]}")
    assert calls > 200
    assert not failures, "\n".join(failures)
