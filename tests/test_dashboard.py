"""The admin dashboard in a real browser: Debian's Chromium driven by Playwright, against
the real processes (`cli demo`, `cli work`, `cli api`) on a fresh SQLite database.

Two API processes share the database and the workers: an In-VPC one with Cloudflare Access
(a local fake) and an unreachable License Manager configured, and a SaaS one with neither.
Every page fails its test on a browser console error or an uncaught page error; the few
HTTP errors a test provokes on purpose are named, by URL and status, in that test.
Screenshots go to tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import IN_CI
from tests.fake_cloudflare import ACCOUNT, GROUP, TOKEN, FakeCloudflare
from tests.processes import ROOT, free_port, run_cli, start_cli, stop, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
LAPTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}
ADMIN_KEY = "dashboard-test-admin"
EMAIL = "admin@acme.example"
PASSWORD = "demo-password-change-me"
AGENT = "Basic " + base64.b64encode(b"demo-agent:demo-secret-change-me").decode()
TENANT_HEADERS = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "acme-prod"}


def _require_browser() -> None:
    """With CI=true the browser tests must run; elsewhere they may skip without Chromium."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (apt-get install chromium; `make test` installs it)")
    if missing:
        message = "dashboard browser tests need " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


# HTTP from the test's side -------------------------------------------------------------
def http(method: str, url: str, body: dict | None = None, **headers) -> tuple[int, dict | None]:
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None
    except OSError:
        return 0, None


def get(url: str, **headers) -> dict:
    status, body = http("GET", url, **headers)
    assert status == 200, (url, status, body)
    return body


# the service -----------------------------------------------------------------------------
class Service:
    def __init__(self, invpc: str, saas: str, cloudflare: FakeCloudflare, demo_position: int):
        self.invpc = invpc
        self.saas = saas
        self.cloudflare = cloudflare
        self.demo_position = demo_position

    def caught_up(self) -> bool:
        status, body = http("GET", f"{self.invpc}/readyz", **{"X-Admin-API-Key": ADMIN_KEY})  # details need the admin key
        if status != 200:
            return False
        head = body["ledger_position"]
        return all(p["position"] >= head for p in body["projections"].values())


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    _require_browser()
    database_url = f"sqlite:///{tmp_path_factory.mktemp('dashboard')}/dashboard.db"
    demo = run_cli(database_url, "demo", "--days", "20", "--per-day", "40", timeout=180)
    assert demo.returncode == 0, demo.stderr
    loaded = json.loads(demo.stdout.strip().splitlines()[-1])
    assert loaded["portal_user"] == EMAIL and loaded["portal_password"] == PASSWORD
    cloudflare = FakeCloudflare()
    unreachable = free_port()  # nothing listens there: the License Manager is unreachable
    invpc_port, saas_port = free_port(), free_port()
    processes = [
        start_cli(database_url, "work", ADMIN_API_KEY=ADMIN_KEY),
        start_cli(
            database_url, "api", "--port", str(invpc_port), "--workers", "1",
            ADMIN_API_KEY=ADMIN_KEY, DEPLOYMENT_MODE="invpc",
            CF_API_TOKEN=TOKEN, CF_ACCOUNT_ID=ACCOUNT, CF_ACCESS_GROUP_ID=GROUP, CF_API_BASE_URL=cloudflare.base_url,
            LICENSE_MANAGER_URL=f"http://127.0.0.1:{unreachable}", LICENSE_MANAGER_TOKEN="lm-test-token",
        ),
        start_cli(database_url, "api", "--port", str(saas_port), "--workers", "1", ADMIN_API_KEY=ADMIN_KEY, DEPLOYMENT_MODE="saas"),
    ]
    try:
        svc = Service(f"http://127.0.0.1:{invpc_port}", f"http://127.0.0.1:{saas_port}", cloudflare, loaded["position"])
        for base in (svc.invpc, svc.saas):
            wait_until(lambda: http("GET", f"{base}/healthz")[0] == 200, 60, f"the API at {base}")
        wait_until(svc.caught_up, 60, "the workers to project the demo data")
        yield svc
    finally:
        for process in processes:
            stop(process)
        cloudflare.close()


# the browser -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(service):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """One page in its own browser context, recording console errors and page errors."""

    def __init__(self, browser, viewport: dict):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors: list[tuple[str, str]] = []  # (message, url)
        self.expected: list[tuple[str, int]] = []  # (url part, HTTP status) a test provokes on purpose
        self.requests: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append((f"uncaught: {error}", "")))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append((message.text, (message.location or {}).get("url", "")))

    def expect_http_error(self, url_part: str, status: int) -> None:
        self.expected.append((url_part, status))

    def unexpected_errors(self) -> list[tuple[str, str]]:
        def provoked(text: str, url: str) -> bool:
            return any(part in url and f"status of {status} " in text for part, status in self.expected)

        return [(text, url) for text, url in self.errors if not provoked(text, url)]

    # helpers -------------------------------------------------------------------------
    def open(self, base: str) -> None:
        self.page.goto(base + "/")

    def login(self, email: str = EMAIL, password: str = PASSWORD) -> None:
        """With the keyboard: the e-mail field has focus on arrival."""
        page = self.page
        page.wait_for_selector("#login-view:not([hidden])")
        assert page.evaluate("() => document.activeElement.id") == "login-email"
        page.keyboard.type(email)
        page.keyboard.press("Tab")
        page.keyboard.type(password)
        page.keyboard.press("Enter")

    def generation(self) -> int:
        return int(self.page.get_attribute("body", "data-generation") or 0)

    def wait_refreshed(self, after: int = 0) -> None:
        """Until a refresh later than generation `after` has finished every panel."""
        self.page.wait_for_selector("body[data-refresh='idle'][data-generation]", state="attached")
        wait_until(lambda: self.generation() > after and self.page.get_attribute("body", "data-refresh") == "idle",
                   30, "the dashboard to refresh")

    def refresh_with(self, action) -> None:
        before = self.generation()
        action()
        self.wait_refreshed(before)

    def chart(self, canvas_id: str) -> dict | None:
        return self.page.evaluate(
            """(id) => {
                const chart = Chart.getChart(document.getElementById(id));
                return chart ? {type: chart.config.type, labels: chart.data.labels,
                                data: chart.data.datasets[0].data, label: chart.data.datasets[0].label} : null;
            }""",
            canvas_id,
        )

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector).strip()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def tabs(browser):
    opened: list[Tab] = []

    def open_tab(viewport: dict = LAPTOP) -> Tab:
        tab = Tab(browser, viewport)
        opened.append(tab)
        return tab

    yield open_tab
    problems = [error for tab in opened for error in tab.unexpected_errors()]
    for tab in opened:
        tab.context.close()
    assert not problems, f"browser console errors: {problems}"


def logged_in(tabs, base: str, viewport: dict = LAPTOP) -> Tab:
    tab = tabs(viewport)
    tab.open(base)
    tab.login()
    tab.wait_refreshed()
    tab.page.uncheck("#auto-refresh")  # the test drives refreshes itself
    return tab


def daily_sums(rows: list[dict], field: str, granularity: str = "daily") -> dict[str, float]:
    sums: dict[str, float] = {}
    for row in rows:
        iso = row["time_bucket"]
        key = iso[:10] if granularity == "daily" else f"{iso[:10]} {iso[11:13]}:00"
        sums[key] = sums.get(key, 0) + float(row[field])
    return sums


# the tests -------------------------------------------------------------------------------
def test_login_then_the_usage_chart_shows_the_api_figures_and_follows_the_range(service, tabs):
    tab = tabs()
    tab.open(service.invpc)
    tab.login()
    tab.wait_refreshed()
    page = tab.page
    page.uncheck("#auto-refresh")
    assert page.is_visible("#app-view") and not page.is_visible("#login-view")
    assert EMAIL in tab.text("#whoami")
    start, end = page.input_value("#start-date"), page.input_value("#end-date")
    assert end == datetime.now(timezone.utc).date().isoformat() and start == (
        datetime.fromisoformat(end) - timedelta(days=29)).date().isoformat()
    # the date inputs show what the charts show: YYYY-MM-DD, whatever the browser's locale
    assert page.get_attribute("#start-date", "type") == "text" and page.get_attribute("#start-date", "placeholder") == "YYYY-MM-DD"
    assert [r for r in tab.requests if r.endswith("/dashboard/static/favicon.svg")]
    tab.screenshot("dashboard-laptop.png")

    # the chart holds, day by day, what GET /api/v1/usage answers for the same range
    usage = get(f"{service.invpc}/api/v1/usage?granularity=daily&start_date={start}&end_date={end}", Authorization=AGENT)
    events = daily_sums(usage["data"], "event_count")
    chart = tab.chart("usage-chart")
    assert chart["type"] == "bar" and chart["label"] == "Events"
    assert len(chart["labels"]) == 30 and chart["labels"][0] == start and chart["labels"][-1] == end
    assert chart["data"] == [events.get(day, 0) for day in chart["labels"]]
    assert sum(chart["data"]) > 500  # 20 days of demo data are in the window
    summary = get(f"{service.invpc}/api/v1/usage/summary?start_date={start}&end_date={end}", Authorization=AGENT)
    assert tab.text("#total-events") == f"{summary['total_events']:,}"
    assert int(page.get_attribute("#ledger-position", "data-position")) >= service.demo_position

    # other measures: cost from the same rows, credits from the credit report
    page.click("[data-metric='cost']")
    cost = daily_sums(usage["data"], "estimated_cost_usd")
    chart = tab.chart("usage-chart")
    assert chart["label"] == "Cost (USD)"
    assert chart["data"] == pytest.approx([cost.get(day, 0) for day in chart["labels"]], abs=1e-6)
    page.click("[data-metric='credits']")
    report = get(f"{service.invpc}/api/usage?startDate={start}&endDate={end}", **TENANT_HEADERS)
    credits: dict[str, float] = {}
    for row in report["dailyTotals"]:
        credits[row["date"]] = credits.get(row["date"], 0) + row["totalCredits"]
    chart = tab.chart("usage-chart")
    assert chart["label"] == "Credits" and sum(chart["data"]) > 0
    # (today's storage levels accrue credits up to the moment of reading: allow for the seconds between)
    assert chart["data"] == pytest.approx([credits.get(day, 0) for day in chart["labels"]], rel=1e-3, abs=1e-4)
    page.click("[data-metric='events']")

    # a shorter range: the chart and the totals change, without reloading the page
    page.evaluate("() => { window.notReloaded = true; }")
    week_start = (datetime.fromisoformat(end) - timedelta(days=6)).date().isoformat()
    page.fill("#start-date", week_start)
    tab.refresh_with(lambda: page.click("#apply-range"))
    chart = tab.chart("usage-chart")
    assert chart["labels"] == [(datetime.fromisoformat(week_start) + timedelta(days=i)).date().isoformat() for i in range(7)]
    assert chart["data"] == [events.get(day, 0) for day in chart["labels"]]
    week = get(f"{service.invpc}/api/v1/usage/summary?start_date={week_start}&end_date={end}", Authorization=AGENT)
    assert week["total_events"] < summary["total_events"]
    assert tab.text("#total-events") == f"{week['total_events']:,}"
    assert page.evaluate("() => window.notReloaded") is True
    assert f"from={week_start}" in page.url

    # hourly granularity over the same week
    tab.refresh_with(lambda: page.select_option("#granularity", "hourly"))
    hourly = get(f"{service.invpc}/api/v1/usage?granularity=hourly&start_date={week_start}&end_date={end}", Authorization=AGENT)
    per_hour = daily_sums(hourly["data"], "event_count", "hourly")
    chart = tab.chart("usage-chart")
    assert chart["type"] == "line" and len(chart["labels"]) == 7 * 24
    assert chart["data"] == [per_hour.get(label, 0) for label in chart["labels"]]

    # cost by model and credits by resource type are drawn from their endpoints too
    models = tab.chart("model-chart")
    breakdown = get(f"{service.invpc}/api/v1/usage/breakdown?group_by=model&start={week_start}&end={end}", Authorization=AGENT)
    priced = sorted((r for r in breakdown["breakdown"] if r["key"] and r["cost_usd"] > 0), key=lambda r: -r["cost_usd"])
    assert models["labels"] == [r["key"] for r in priced][:10]
    assert "in-house-llm" in tab.text("#models-note")  # the unpriced model is named, not shown as $0
    resources = tab.chart("resource-chart")
    assert resources["type"] == "doughnut" and "ai" in resources["labels"] and "app_storage" in resources["labels"]
    # its legend names each slice with its value and its share
    legend = page.evaluate("() => Chart.getChart(document.getElementById('resource-chart')).legend.legendItems.map((i) => i.text)")
    total = sum(resources["data"])
    one_decimal = lambda x: f"{x:,.1f}".removesuffix(".0")  # noqa: E731 - as the page formats
    assert legend == [f"{label}: {one_decimal(value)} ({one_decimal(100 * value / total)} %)"
                      for label, value in zip(resources["labels"], resources["data"])]

    # a date that is not YYYY-MM-DD is refused with a message, and nothing is asked
    page.fill("#start-date", "11/02/2026")
    page.click("#apply-range")
    assert "YYYY-MM-DD" in tab.text("#range-error")
    page.fill("#start-date", week_start)
    tab.refresh_with(lambda: page.click("#apply-range"))
    assert page.is_hidden("#range-error")


def test_a_key_is_created_with_its_secret_shown_once_and_revoked(service, tabs):
    tab = logged_in(tabs, service.invpc)
    page = tab.page
    page.fill("#key-name", "dashboard-test-key")
    page.check("#scope-read-usage")
    page.click("#key-create")
    page.wait_for_selector("#new-key:not([hidden])")
    secret = tab.text("#new-key-secret")
    assert re.fullmatch(r"ulk_[A-Za-z0-9]{8}_\S+", secret)
    assert page.evaluate("() => document.activeElement.id") == "new-key-secret"
    row = page.wait_for_selector("#keys-table tr:has-text('dashboard-test-key')")
    key_id = row.get_attribute("data-key-id")
    assert "active" in row.inner_text() and secret not in row.inner_text()
    assert page.content().count(secret) == 1  # only in the one-time box
    assert http("GET", f"{service.invpc}/api/v1/usage/summary", Authorization=f"Bearer {secret}")[0] == 200

    page.click("#new-key-done")
    assert page.is_hidden("#new-key") and secret not in page.content()
    page.reload()
    tab.wait_refreshed()
    page.uncheck("#auto-refresh")
    assert secret not in page.content()
    row = page.wait_for_selector(f"#keys-table tr[data-key-id='{key_id}']")

    row.query_selector("button:has-text('Revoke')").click()
    page.click(f"#keys-table tr[data-key-id='{key_id}'] button:has-text('Confirm revoke')")
    page.wait_for_selector(f"#keys-table tr[data-key-id='{key_id}'] .badge:has-text('revoked')")
    assert page.query_selector(f"#keys-table tr[data-key-id='{key_id}'] button") is None
    assert http("GET", f"{service.invpc}/api/v1/usage/summary", Authorization=f"Bearer {secret}")[0] == 401


def test_budgets_show_progress_and_the_over_budget_one_in_its_warning_colour(service, tabs):
    # make sure support-bot has spent this month whatever the date (the demo set its limit
    # below its spend, so it is over budget as soon as it has spent anything)
    now = datetime.now(timezone.utc).isoformat()
    status, _ = http("POST", f"{service.invpc}/api/v1/events", {
        "event_id": "dashboard-test-spend", "event_type": "llm_request", "agent_id": "support-bot", "occurred_at": now,
        "llm_provider": "openai", "llm_model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100, "cost_usd": 0.5,
    }, Authorization=AGENT)
    assert status == 202
    status, hold = http("POST", f"{service.invpc}/api/v1/budgets/check", {
        "reserve": True, "estimated_cost_usd": 0.01, "ttl_seconds": 3600}, Authorization=AGENT)
    assert status == 201 and hold["holds"], hold  # held on the organization's budgets
    wait_until(service.caught_up, 30, "the event and the hold to be projected")
    tab = logged_in(tabs, service.invpc)
    page = tab.page
    colours = {
        status: page.evaluate(f"() => getComputedStyle(document.documentElement).getPropertyValue('--{status}').trim()")
        for status in ("ok", "warning", "exceeded")
    }
    drawn_held = 0
    for budget in get(f"{service.invpc}/api/v1/budgets", Authorization=AGENT)["budgets"]:
        expected = get(f"{service.invpc}/api/v1/budgets/{budget['id']}/status", Authorization=AGENT)
        item = page.wait_for_selector(f"li.budget[data-budget-id='{budget['id']}']")
        assert item.get_attribute("data-status") == expected["status"]
        assert f"status-{expected['status']}" in item.get_attribute("class")
        fill = item.query_selector(".bar-fill")
        colour = fill.evaluate("(el) => getComputedStyle(el).backgroundColor")
        assert colour == _rgb(colours[expected["status"]]), (budget["id"], colour)
        width = fill.evaluate("(el) => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width")
        assert width == pytest.approx(min(expected["percentage"], 100) / 100, abs=0.02)
        held = item.query_selector(".bar-held")  # outstanding holds: a lighter segment after the spend
        assert (held is not None) == (expected.get("held_usd", 0) > 0), budget["id"]
        drawn_held += held is not None
    assert drawn_held >= 1
    over = page.query_selector("li.budget[data-budget-id='support-bot-monthly']")
    assert over.get_attribute("data-status") == "exceeded"
    assert "Over budget" in over.inner_text()
    assert over.query_selector(".bar-fill").evaluate("(el) => getComputedStyle(el).backgroundColor") == "rgb(198, 40, 40)"
    first = page.query_selector("ul.budgets li.budget")
    assert first.get_attribute("data-status") == "exceeded"  # the worst comes first


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i:i + 2], 16) for i in (0, 2, 4)))


def test_licence_nodes_audit_and_docs_access_in_vpc(service, tabs):
    tab = logged_in(tabs, service.invpc)
    page = tab.page
    licence = get(f"{service.invpc}/api/v1/license/status", **TENANT_HEADERS)
    facts = tab.text("#licence-facts")
    assert "Enterprise" in facts and licence["status"].replace("_", " ") in facts
    assert f"{licence['nodes_used']} of 10 active" in facts
    nodes = get(f"{service.invpc}/api/v1/nodes", **TENANT_HEADERS)
    rows = page.query_selector_all("#nodes-table tbody tr")
    assert nodes["total_active"] == 7 and len(rows) == 6
    assert "and 1 more" in tab.text("#nodes-table tfoot")
    assert "7 of 10" in tab.text("#panel-licence")

    audit = tab.text("#audit-table")
    assert "USER_LOGIN" in audit and f"user:{EMAIL}" in audit
    # at 1366 px an actor (an e-mail address) is never broken mid-word: one line each
    lines = page.evaluate("""() => [...document.querySelectorAll('#audit-table td.actor')].map((td) => {
        const range = document.createRange();
        range.selectNodeContents(td);
        return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.bottom))).size;
    })""")
    page.locator("#panel-audit").screenshot(path=str(ARTIFACTS / "dashboard-audit-laptop.png"))
    assert lines and set(lines) == {1}, lines
    assert page.evaluate("() => { const w = document.querySelector('#panel-audit .table-wrap'); return w.scrollWidth <= w.clientWidth; }")

    page.wait_for_selector("#docs-users li:has-text('first@reader.test')")
    page.fill("#docs-email", "new.reader@example.com")
    page.fill("#docs-reason", "dashboard test")
    page.click("#docs-grant")
    page.wait_for_selector("#docs-users li:has-text('new.reader@example.com')")
    assert "new.reader@example.com" in service.cloudflare.emails
    page.click("button[aria-label='Revoke documentation access for new.reader@example.com']")
    page.wait_for_selector("#docs-users li:has-text('new.reader@example.com')", state="detached")
    assert "new.reader@example.com" not in service.cloudflare.emails


def test_saas_mode_on_a_narrow_screen_shows_what_is_not_available(service, tabs):
    tab = tabs(NARROW)
    tab.open(service.saas)
    tab.page.wait_for_selector("#login-view:not([hidden])")
    tab.screenshot("dashboard-login-narrow.png")
    tab.expect_http_error("/api/v1/auth/login", 401)  # the wrong password below
    tab.login(password="not the password")
    tab.page.wait_for_selector("#login-error:not([hidden])")
    assert "Wrong e-mail or password" in tab.text("#login-error")
    page = tab.page
    page.fill("#login-email", EMAIL)
    page.fill("#login-password", PASSWORD)
    page.press("#login-password", "Enter")
    tab.wait_refreshed()
    page.uncheck("#auto-refresh")
    assert "not available in SaaS mode" in tab.text("#panel-licence")
    facts = tab.text("#licence-facts")  # no "7 of 10 active" beside "node metrics are not available"
    assert "active" not in facts and "Nodes licensed" in facts
    assert not [url for url in tab.requests if "/api/v1/docs/access" in url]  # not configured: not asked
    assert not [url for url in tab.requests if "/api/v1/nodes" in url]  # not even asked
    assert "not configured" in tab.text("#docs-not-configured")
    assert page.is_hidden("#docs-form")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    chart = tab.chart("usage-chart")
    assert chart and sum(chart["data"]) > 0
    tab.screenshot("dashboard-narrow.png")


def test_refresh_shows_the_license_manager_banner_and_a_failing_panel(service, tabs):
    tab = logged_in(tabs, service.invpc)
    page = tab.page
    assert page.query_selector("#banner-sync") is None
    page.evaluate("() => { window.notReloaded = true; }")

    # the licence gets a key; syncing it finds the License Manager unreachable
    licence = get(f"{service.invpc}/api/v1/license/status", **TENANT_HEADERS)
    status, _ = http("PUT", f"{service.invpc}/api/v1/admin/licenses/acme-prod", {
        "tenant_id": "acme", "tier": licence["tier"], "nodes_total": licence["nodes_total"],
        "expires_at": licence["expires_at"], "credits_included": 250000, "license_key": "LIC-DASHBOARD-1",
    }, **{"X-Admin-API-Key": ADMIN_KEY})
    assert status == 200
    wait_until(service.caught_up, 30, "the new licence terms to be projected")  # sync reads licence keys from there
    status, synced = http("POST", f"{service.invpc}/api/v1/admin/licenses/sync", {}, **{"X-Admin-API-Key": ADMIN_KEY})
    assert status == 200 and synced["synced"][0]["code"] == "lm_unreachable", synced
    wait_until(service.caught_up, 30, "the sync failure to be projected")

    # one endpoint fails: its panel says so, the others still show their data
    page.route(lambda url: "/api/v1/budgets?" in url, lambda route: route.fulfill(
        status=503, content_type="application/json", headers={"Retry-After": "1"},
        body=json.dumps({"error": {"code": "DATABASE_UNAVAILABLE", "message": "The database is not reachable"}}),
    ))
    tab.expect_http_error("/api/v1/budgets", 503)
    tab.refresh_with(lambda: page.click("#refresh"))
    banner = tab.text("#banner-sync")
    assert "License Manager is unreachable" in banner and "lm_unreachable" in banner
    error = tab.text("#panel-budgets .state.error")
    assert "DATABASE_UNAVAILABLE" in error and "503" in error
    assert page.query_selector("#panel-budgets button:has-text('Retry')")
    assert tab.chart("usage-chart") is not None
    assert page.evaluate("() => window.notReloaded") is True


def test_signing_out_is_announced_as_information_not_as_an_error(service, tabs):
    tab = logged_in(tabs, service.saas)
    page = tab.page
    page.click("#logout")
    page.wait_for_selector("#login-notice:not([hidden])")
    assert tab.text("#login-notice") == "You have signed out."
    assert page.get_attribute("#login-notice", "role") == "status" and page.is_hidden("#login-error")
    background = page.evaluate("() => getComputedStyle(document.getElementById('login-notice')).backgroundColor")
    info = page.evaluate("() => getComputedStyle(document.documentElement).getPropertyValue('--info-bg').trim()")
    assert background == _rgb(info)
    tab.screenshot("dashboard-signed-out.png")
    # a failed sign-in afterwards is an error again, and the notice goes away
    tab.expect_http_error("/api/v1/auth/login", 401)
    page.fill("#login-email", EMAIL)
    page.fill("#login-password", "not the password")
    page.press("#login-password", "Enter")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.is_hidden("#login-notice")


def _raw_sums(base: str, start: str, end: str) -> dict:
    """Events, tokens, cost and credits (nanos) summed exactly from every raw event of the range."""
    sums = {"events": 0, "tokens": 0, "cost_nanos": 0, "credits_nanos": 0}
    cursor = ""
    while True:
        page = get(f"{base}/api/v1/usage?granularity=raw&limit=1000&start_date={start}&end_date={end}{cursor}",
                   Authorization=AGENT)
        for row in page["data"]:
            sums["events"] += 1
            sums["tokens"] += row["total_tokens"]
            sums["cost_nanos"] += row["cost_nanos"]
            sums["credits_nanos"] += row["credits_nanos"] or 0
        if not page["next_cursor"]:
            return sums
        cursor = f"&cursor={page['next_cursor']}"


def test_the_tiles_equal_the_exact_sum_of_the_raw_events_for_each_range_button(service, tabs):
    """Reconciliation through the browser: for the 7- and 30-day buttons (the last N days, today
    included) the events, tokens, cost and credits tiles equal the exact sum of the raw events."""
    tab = logged_in(tabs, service.invpc)
    page = tab.page
    for days in (7, 30):
        tab.refresh_with(lambda: page.click(f"button[data-days='{days}']"))
        start, end = page.input_value("#start-date"), page.input_value("#end-date")
        assert (datetime.fromisoformat(end) - datetime.fromisoformat(start)).days == days - 1
        credits_before = get(f"{service.invpc}/api/usage?startDate={start}&endDate={end}", **TENANT_HEADERS)["totalCreditsNanos"]
        exact = _raw_sums(service.invpc, start, end)
        assert exact["events"] > 0
        assert tab.text("#total-events") == f"{exact['events']:,}", days
        assert tab.text("#total-tokens") == f"{exact['tokens']:,}", days
        assert int(page.get_attribute("#total-cost", "data-nanos")) == exact["cost_nanos"], days
        tile_credits = int(page.get_attribute("#total-credits", "data-nanos"))
        # storage levels accrue credits every second: the tile lies between the report read
        # before it and the raw readings' sum read after it (both exact, in nanos)
        assert credits_before - 10**9 <= tile_credits <= exact["credits_nanos"], days
