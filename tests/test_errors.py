"""Every error is JSON with the right status; never a stack trace or an HTML page."""
from __future__ import annotations

from api import create_app
from ledger.settings import Settings


def test_unknown_route_is_json_404(h):
    response = h.http.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "NOT_FOUND"


def test_wrong_method_is_json_405(h):
    response = h.http.delete("/api/v1/usage/summary")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_an_unexpected_failure_is_json_500_without_a_trace(h, agent, monkeypatch):
    import projections.usage_queries

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(projections.usage_queries, "summary", broken)
    response = h.http.get("/api/v1/usage/summary", headers=agent)
    assert response.status_code == 500
    assert response.json == {"error": {"code": "INTERNAL_ERROR", "message": "An unexpected error occurred"}}
    assert b"secret internals" not in response.data and b"Traceback" not in response.data


def test_admin_routes_answer_503_when_no_admin_key_is_configured(h):
    h.app.extensions["usage_ledger"].settings.admin_api_key = None
    response = h.http.post("/api/v1/admin/tenants", json={"tenant_id": "t", "name": "t"})
    assert response.status_code == 503
    assert response.json["error"]["code"] == "ADMIN_API_NOT_CONFIGURED"


def test_admin_routes_refuse_a_wrong_key_and_agent_credentials(h, agent):
    wrong = h.http.post("/api/v1/admin/tenants", json={"tenant_id": "t", "name": "t"}, headers={"X-Admin-API-Key": "nope"})
    assert wrong.status_code == 401
    as_agent = h.http.post("/api/v1/admin/tenants", json={"tenant_id": "t", "name": "t"}, headers=agent)
    assert as_agent.status_code == 401


def test_provisioning_validates_and_refuses_duplicates(h):
    assert h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "t1"}).status_code == 422
    assert h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "bad id!", "name": "x"}).status_code == 422
    assert h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "t1", "name": "x"}).status_code == 201
    duplicate = h.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "t1", "name": "x"})
    assert duplicate.status_code == 409 and duplicate.json["error"]["code"] == "TENANT_EXISTS"
    missing = h.admin("POST", "/api/v1/admin/tenants/nope/orgs", json={"org_id": "o", "name": "o"})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "TENANT_NOT_FOUND"
    client = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": "t1", "org_id": "none", "name": "c"})
    assert client.status_code == 404
    assert h.admin("POST", "/api/v1/admin/clients/nope/rotate").status_code == 404
    assert h.admin("POST", "/api/v1/admin/tenants", data="not json", headers={"Content-Type": "application/json"}).status_code in (400, 422)


def test_a_database_that_is_down_answers_503_with_retry_after(tmp_path):
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/nowhere", admin_api_key="k", db_pool_timeout=1)
    app = create_app(settings)
    http = app.test_client()
    response = http.post("/api/v1/admin/tenants", json={"tenant_id": "t", "name": "t"}, headers={"X-Admin-API-Key": "k"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json["error"]["code"] == "DATABASE_UNAVAILABLE"
    readyz = http.get("/readyz")
    assert readyz.status_code == 503 and readyz.json["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert http.get("/healthz").status_code == 200


def test_deployment_config_defaults_to_saas(h):
    assert h.http.get("/api/v1/deployment/config").json == {
        "mode": "saas", "tenant_isolation": True, "show_node_usage": False,
        "show_platform_metrics": False, "show_deployments": False,
    }
    h.app.extensions["usage_ledger"].settings.deployment_mode = "invpc"
    assert h.http.get("/api/v1/deployment/config").json == {
        "mode": "invpc", "tenant_isolation": False, "show_node_usage": True,
        "show_platform_metrics": True, "show_deployments": True,
    }


def test_unknown_deployment_mode_falls_back_to_saas():
    assert Settings.from_env({"DEPLOYMENT_MODE": "weird"}).deployment_mode == "saas"
    assert Settings.from_env({}).deployment_mode == "saas"
    assert Settings.from_env({"DEPLOYMENT_MODE": "INVPC"}).deployment_mode == "invpc"


def test_openapi_and_docs_are_served(h):
    spec = h.http.get("/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/events" in spec.json["paths"] and "/api/v1/usage/summary" in spec.json["paths"]
    docs = h.http.get("/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()
    assert h.http.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_metrics_are_prometheus_text(h, agent):
    h.post_events(agent, {"event_id": "m-1", "event_type": "api_call", "occurred_at": "2026-11-20T11:00:00Z"})
    body = h.http.get("/metrics").get_data(as_text=True)
    assert "usage_ledger_position" in body
    assert 'usage_ledger_projection_lag{projection="usage_rollups"} ' in body


def agent_headers(h):
    h.tenant("acme")
    return h.agent()


import pytest  # noqa: E402


@pytest.fixture
def agent(h):
    return agent_headers(h)
