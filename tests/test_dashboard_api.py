"""What the dashboard stands on, without a browser, on both backends: the page at `/`
and its local assets, the session reads it needs (budgets, breakdowns), and the demo data
it shows after `make run`."""
from __future__ import annotations

import re

from api.dashboard import CONTENT_SECURITY_POLICY
from tests.conftest import Harness, make_settings, usage
from tests.processes import ROOT
from workers.demo import DEMO_USER_EMAIL, DEMO_USER_PASSWORD, DEMO_USER_PERMISSIONS, load_demo

BILLING = "permission.billing.manage"


# the page --------------------------------------------------------------------------------
def test_the_page_opens_on_the_login_form_without_a_session(h):
    response = h.http.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-session="no"' in html and 'id="login-form"' in html
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["Cache-Control"] == "no-store"


def test_the_page_opens_on_the_dashboard_with_a_live_session_and_not_after_logout(h, agent):
    browser = h.portal_user("ada@acme.test", permissions=["admin"])
    assert 'data-session="yes"' in browser.get("/").get_data(as_text=True)
    assert browser.post("/api/v1/auth/logout").status_code == 204
    h.http.set_cookie("ul_session", "not-a-session-token")
    assert 'data-session="no"' in h.http.get("/").get_data(as_text=True)


def test_the_page_still_loads_when_the_database_cannot_be_asked(h, monkeypatch):
    """The script then finds out from /api/v1/auth/me and shows the service's error."""
    import api.dashboard

    def unreachable(token):
        raise OSError("database down")

    monkeypatch.setattr(api.dashboard, "find_session", unreachable)
    h.http.set_cookie("ul_session", "some-token")
    response = h.http.get("/")
    assert response.status_code == 200 and 'data-session="unknown"' in response.get_data(as_text=True)


def test_everything_the_page_loads_is_served_locally(h):
    html = h.http.get("/").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if re.match(r"^(https?:)?//", a)]
    for asset in (a.split("?")[0] for a in assets if a.startswith("/dashboard/static/")):
        response = h.http.get(asset)
        assert response.status_code == 200, asset
        response.close()
    licence = h.http.get("/dashboard/static/vendor/chart.js/LICENSE.md")
    assert licence.status_code == 200 and b"MIT License" in licence.data


def test_the_page_knows_whether_docs_access_is_configured_so_it_never_asks_in_vain(h, database_url, clock):
    """Unconfigured, the docs access list answers 503 (which a browser logs as a console
    error): the page learns from its own HTML not to ask."""
    assert 'data-docs-access="unconfigured"' in h.http.get("/").get_data(as_text=True)
    h.tenant("acme", ("prod",))
    assert h.portal_user("ada@acme.test", permissions=["admin"]).get("/api/v1/docs/access").status_code == 503
    configured = Harness(make_settings(
        database_url, clock, cf_api_token="cf-token", cf_account_id="account", cf_access_group_id="group",
    ))
    try:
        assert 'data-docs-access="configured"' in configured.http.get("/").get_data(as_text=True)
    finally:
        configured.close()


def test_the_favicon_is_served_and_named_by_the_page(h):
    html = h.http.get("/").get_data(as_text=True)
    href = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', html).group(1)
    response = h.http.get(href)
    assert response.status_code == 200 and response.mimetype == "image/svg+xml" and b"<svg" in response.data
    response.close()


def test_the_vendored_chart_js_is_the_version_the_makefile_names():
    vendored = (ROOT / "api/static/dashboard/vendor/chart.js/chart.umd.min.js").read_text()[:200]
    pinned = re.search(r"^CHARTJS_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert f"Chart.js v{pinned}\n" in vendored


# session reads for the dashboard --------------------------------------------------------
def test_a_billing_manager_reads_budgets_and_their_status_with_a_session(h, agent):
    assert h.http.post("/api/v1/budgets", json={"id": "b1", "name": "Org", "limit_usd": 1, "period": "monthly"}, headers=agent).status_code == 201
    assert h.post_events(agent, [usage("u1", cost_usd=1.5)]).status_code == 202
    projected = h.project()
    billing = h.portal_user("billing@acme.test", permissions=[BILLING])
    listed = billing.get("/api/v1/budgets")
    assert listed.status_code == 200 and [b["id"] for b in listed.json["budgets"]] == ["b1"]
    assert billing.get("/api/v1/budgets/b1").json["name"] == "Org"
    status = billing.get("/api/v1/budgets/b1/status")
    assert status.status_code == 200 and status.json["status"] == "exceeded" and status.json["used"] == 1.5
    assert int(status.headers["X-Ledger-Position"]) >= projected
    assert billing.get("/api/v1/budgets/b1/alerts").status_code == 200


def test_budget_reads_need_the_billing_permission_and_writes_stay_with_clients(h, agent):
    assert h.http.post("/api/v1/budgets", json={"id": "b1", "name": "Org", "limit_usd": 1, "period": "monthly"}, headers=agent).status_code == 201
    h.project()
    reader = h.portal_user("reader@acme.test", permissions=["admin"])
    for path in ("/api/v1/budgets", "/api/v1/budgets/b1", "/api/v1/budgets/b1/status", "/api/v1/budgets/b1/alerts"):
        response = reader.get(path)
        assert response.status_code == 403 and response.json["error"]["code"] == "PERMISSION_DENIED", path
    billing = h.portal_user("billing@acme.test", permissions=[BILLING])
    created = billing.post("/api/v1/budgets", json={"id": "b2", "name": "No", "limit_usd": 1, "period": "monthly"})
    assert created.status_code == 401
    assert billing.put("/api/v1/budgets/b1", json={"limit_usd": 5}).status_code == 401
    assert billing.delete("/api/v1/budgets/b1").status_code == 401


def test_another_tenants_budget_is_not_found_for_a_session(h, agent):
    h.tenant("globex", ("main",))
    globex = h.agent("globex", "main")
    assert h.http.post("/api/v1/budgets", json={"id": "theirs", "name": "T", "limit_usd": 1, "period": "monthly"}, headers=globex).status_code == 201
    h.project()
    billing = h.portal_user("billing@acme.test", permissions=[BILLING])
    assert billing.get("/api/v1/budgets/theirs/status").status_code == 404
    assert billing.get("/api/v1/budgets?tenant_id=globex").json["budgets"] == []


def test_a_session_reads_the_cost_breakdown_as_a_client_does(h, agent):
    assert h.post_events(agent, [usage("u1"), usage("u2", llm_model="gpt-4o-mini", cost_usd=0.25)]).status_code == 202
    h.project()
    user = h.portal_user("ada@acme.test")
    as_user = user.get("/api/v1/usage/breakdown?group_by=model&start=2026-11-20&end=2026-11-20")
    as_client = h.http.get("/api/v1/usage/breakdown?group_by=model&start=2026-11-20&end=2026-11-20", headers=agent)
    assert as_user.status_code == 200 and as_user.json == as_client.json
    assert {r["key"] for r in as_user.json["breakdown"]} == {"gpt-4o", "gpt-4o-mini"}


# demo data -------------------------------------------------------------------------------
def test_the_demo_has_a_portal_admin_a_licence_nodes_and_budgets_in_every_state(h):
    loaded = load_demo(h.settings, days=3, events_per_day=40)
    assert (loaded["portal_user"], loaded["portal_password"]) == (DEMO_USER_EMAIL, DEMO_USER_PASSWORD)
    h.project()
    browser = h.login(DEMO_USER_EMAIL, DEMO_USER_PASSWORD)
    me = browser.get("/api/v1/auth/me").json
    assert (me["tenant_id"], me["org_id"]) == ("acme", "acme-prod") and sorted(me["permissions"]) == sorted(DEMO_USER_PERMISSIONS)
    licence = browser.get("/api/v1/license/status").json
    assert licence["tier"] == "Enterprise" and licence["status"] == "ACTIVE" and licence["nodes_used"] == 7
    statuses = {b["id"]: browser.get(f"/api/v1/budgets/{b['id']}/status").json["status"] for b in browser.get("/api/v1/budgets").json["budgets"]}
    assert statuses == {
        "acme-prod-monthly": "ok", "support-bot-monthly": "exceeded", "code-reviewer-monthly": "warning",
        "sales-dashboard-credits": "ok",
    }
    assert browser.get("/api/usage").json["creditPool"]["included"] == 250000


def test_loading_the_demo_twice_creates_nothing_twice(h):
    load_demo(h.settings, days=2, events_per_day=20)
    h.project()
    before = h.admin("GET", "/api/v1/admin/audit-log?limit=500").json["entries"]
    load_demo(h.settings, days=2, events_per_day=20)
    h.project()
    after = h.admin("GET", "/api/v1/admin/audit-log?limit=500").json["entries"]
    assert len(after) == len(before)  # no second user, licence or budget, and no failed attempt
    browser = h.login(DEMO_USER_EMAIL, DEMO_USER_PASSWORD)
    assert len(browser.get("/api/v1/budgets").json["budgets"]) == 4
