"""Budget webhooks against an attacker: no private or metadata targets (checked on write and
again on every delivery, connecting to the address checked), generic delivery errors, a
signing secret per budget shown once and never stored in the ledger, and delivery that one
tenant's black-hole receivers cannot stall for another tenant. DNS is injected; the job is
driven directly with the injected clock; nothing sleeps to wait for projections."""
from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ledger.chain.export import verify_export
from ledger.clock import FixedClock
from projections.ledger_snapshot import export_ledger
from projections.webhook_secrets import webhook_secrets
from tests.conftest import make_settings, usage
from tests.test_budget_alerts import Receiver, alerts
from workers.alerts import BudgetAlerts, WebhookConfig


def budget(h, headers, budget_id="b", **fields):
    body = {"id": budget_id, "name": "Budget", "limit_usd": 100, "period": "monthly", "alert_thresholds": [50], **fields}
    return h.http.post("/api/v1/budgets", json=body, headers=headers)


class FakeDns:
    """Answers from a table; a list of answers is used one per call (the last one repeats)."""

    def __init__(self, table: dict[str, list]):
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host, [])
        if answers and isinstance(answers[0], list):
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return answers


def job(h, dns=None, **config) -> BudgetAlerts:
    values = {"resolve": dns, **config} if dns else config
    return BudgetAlerts(h.settings, h.store, h.engine, WebhookConfig.of(h.settings, **values))


class BlackHole:
    """Accepts connections and never answers; counts how many it holds at once."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.held: list[socket.socket] = []
        self.most_at_once = 0
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/never"

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held = [c for c in self.held if _open(c)] + [conn]
            self.most_at_once = max(self.most_at_once, len(self.held))

    def close(self) -> None:
        self.closed = True
        self.server.close()
        for conn in self.held:
            conn.close()


def _open(conn: socket.socket) -> bool:
    try:
        conn.setblocking(False)
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


# 1. SSRF ---------------------------------------------------------------------------------
FORBIDDEN_URLS = [
    "http://127.0.0.1:5432/x", "http://2130706433:8080/x", "http://0x7f000001/x", "http://127.1/x",
    "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/x", "http://[::1]:22/x",
    "http://10.0.0.5/x", "http://internal.example.test/x", "http://localhost:5432/x",
]


def test_private_and_metadata_targets_are_refused_on_create_and_update(h, agent):
    h.app.extensions["webhook_resolver"] = FakeDns({"internal.example.test": ["10.1.2.3"], "localhost": ["127.0.0.1"]})
    assert budget(h, agent, budget_id="ok").status_code == 201
    for url in FORBIDDEN_URLS:
        refused = budget(h, agent, webhook_url=url)
        assert refused.status_code == 422, (url, refused.json)
        assert refused.json["error"]["code"] == "WEBHOOK_URL_FORBIDDEN"
        assert "10.1.2.3" not in refused.json["error"]["message"]  # no oracle for internal DNS
        changed = h.http.put("/api/v1/budgets/ok", json={"webhook_url": url}, headers=agent)
        assert changed.status_code == 422 and changed.json["error"]["code"] == "WEBHOOK_URL_FORBIDDEN", url
    h.project()
    assert h.http.get("/api/v1/budgets/b", headers=agent).status_code == 404  # nothing half written
    assert h.http.get("/api/v1/budgets/ok", headers=agent).json["webhook_url"] is None
    assert [r.event.type for r in h.store.read()].count("BudgetUpdated") == 0


def test_a_name_that_does_not_resolve_is_accepted_and_delivery_checks_again(h, agent):
    dns = FakeDns({})
    h.app.extensions["webhook_resolver"] = dns
    created = budget(h, agent, webhook_url="http://later.example.test/hook")
    assert created.status_code == 201, created.json
    assert dns.calls == ["later.example.test"]
    dns.table["later.example.test"] = ["127.0.0.1"]  # now it points inside
    h.post_events(agent, [usage("big", cost_usd="60")])
    h.project()
    alerts_job = job(h, dns)
    assert alerts_job.run_once() == {"raised": 1, "delivered": 0, "failed": 1}
    alerts_job.close()
    assert dns.calls == ["later.example.test", "later.example.test"]
    h.project()
    [alert] = alerts(h, agent)
    assert alert["last_error"] == "forbidden_address"


@pytest.fixture
def private_ok(database_url, clock):
    """A deployment that allows private targets (receivers on 127.0.0.1) and its harness."""
    from tests.conftest import Harness

    harness = Harness(make_settings(database_url, clock, webhook_allow_private_addresses=True))
    harness.tenant("acme", ("prod",))
    yield harness, harness.agent("acme", "prod")
    harness.close()


def test_delivery_connects_to_the_address_it_checked_and_sends_the_name(private_ok):
    h, agent = private_ok
    receiver = Receiver(failures=0)
    port = receiver.url.split(":")[2].split("/")[0]
    # the first answer is checked; a rebinding answer afterwards must not be used
    dns = FakeDns({"hooks.example.test": [["127.0.0.1"], ["192.0.2.66"]]})
    h.app.extensions["webhook_resolver"] = FakeDns({})
    try:
        assert budget(h, agent, webhook_url=f"http://hooks.example.test:{port}/hooks/budget").status_code == 201
        h.post_events(agent, [usage("big", cost_usd="60")])
        h.project()
        alerts_job = job(h, dns)
        assert alerts_job.run_once()["delivered"] == 1
        alerts_job.close()
        assert dns.calls == ["hooks.example.test"]  # resolved once, connected to what was checked
        [(headers, _)] = receiver.requests
        assert headers["Host"] == f"hooks.example.test:{port}"
    finally:
        receiver.close()


def test_delivery_errors_are_generic_codes_never_socket_text(private_ok):
    h, agent = private_ok
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    hole = BlackHole()
    try:
        assert budget(h, agent, "refused", webhook_url=f"http://127.0.0.1:{closed_port}/x").status_code == 201
        assert budget(h, agent, "silent", webhook_url=hole.url).status_code == 201
        h.post_events(agent, [usage("big", cost_usd="60")])
        h.project()
        alerts_job = job(h, timeout_seconds=1, connect_timeout_seconds=1)
        assert alerts_job.run_once()["failed"] == 2
        alerts_job.close()
        h.project()
        assert alerts(h, agent, "refused")[0]["last_error"] == "connection_failed"
        assert alerts(h, agent, "silent")[0]["last_error"] == "timeout"
        log = h.admin("GET", "/api/v1/admin/audit-log?action=BUDGET_ALERT_DELIVERY").json["entries"]
        assert sorted(e["details"]["error"] for e in log) == ["connection_failed", "timeout"]
    finally:
        hole.close()


# 2. secrets ------------------------------------------------------------------------------
def test_each_budget_gets_its_own_secret_shown_once_and_never_stored_in_the_ledger(private_ok):
    h, agent = private_ok
    refused = budget(h, agent, "one", webhook_url="http://user:pw@127.0.0.1:9/hook")
    assert refused.status_code == 422 and refused.json["error"]["field"] == "webhook_url", refused.json
    url = "http://127.0.0.1:9/hook?token=abc#x"
    first = budget(h, agent, "one", webhook_url=url).json
    second = budget(h, agent, "two", webhook_url="http://127.0.0.1:9/two").json
    plain = budget(h, agent, "none").json
    assert first["webhook_secret"].startswith("whsec_") and first["webhook_secret"] != second["webhook_secret"]
    assert "webhook_secret" not in plain
    assert first["webhook_url"] == "http://127.0.0.1:9/hook"  # without query or fragment
    renamed = h.http.put("/api/v1/budgets/one", json={"name": "Renamed"}, headers=agent).json
    moved = h.http.put("/api/v1/budgets/one", json={"webhook_url": "http://127.0.0.1:9/moved"}, headers=agent).json
    assert "webhook_secret" not in renamed and "webhook_secret" not in moved  # not a first set
    added = h.http.put("/api/v1/budgets/none", json={"webhook_url": "http://127.0.0.1:9/x"}, headers=agent).json
    assert added["webhook_secret"].startswith("whsec_")

    rotated = h.http.post("/api/v1/budgets/one/webhook-secret/rotate", headers=agent)
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["webhook_secret"]
    assert new.startswith("whsec_") and new != first["webhook_secret"]
    h.project()
    listed = h.http.get("/api/v1/budgets", headers=agent).json
    shown = json.dumps([listed, h.http.get("/api/v1/budgets/one", headers=agent).json])
    ledger = json.dumps(h.admin("GET", "/api/v1/ledger?after=0&limit=1000").json)
    audit = json.dumps(h.admin("GET", "/api/v1/admin/audit-log?limit=200").json)
    stored = "".join(repr(r.event) for r in h.store.read())
    with h.engine.connect() as conn:
        sealed = " ".join(r.sealed for r in conn.execute(webhook_secrets.select()))
    for secret in (first["webhook_secret"], second["webhook_secret"], added["webhook_secret"], new):
        for where in (shown, ledger, audit, stored, sealed):
            assert secret not in where and secret[6:] not in where
    assert "whsec_" not in ledger + audit + stored + shown
    assert "pw@" not in shown + audit and "token=abc" not in shown + audit + ledger
    redacted = [(e["type"], e["redacted"]) for e in json.loads(ledger)["events"] if "redacted" in e]
    assert redacted == [  # created, renamed, moved away from the URL with the token
        ("BudgetCreated", ["budget.webhook_url"]),
        ("BudgetUpdated", ["budget.webhook_url", "previous.webhook_url"]),
        ("BudgetUpdated", ["previous.webhook_url"]),
    ]
    exported = io.BytesIO()
    export_ledger(h.engine, exported, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert b"token=abc" not in exported.getvalue() and b"127.0.0.1:9/hook" in exported.getvalue()
    report = verify_export(io.BytesIO(exported.getvalue()), [])
    assert report.intact and report.redacted_events == 3, report
    entries = h.admin("GET", "/api/v1/admin/audit-log?action=BUDGET_WEBHOOK_SECRET_ROTATE").json["entries"]
    assert [(e["target"], e["outcome"]) for e in entries] == [("one", "success")]


def test_a_token_in_the_webhook_path_is_never_shown_and_sending_it_back_keeps_the_real_url(private_ok):
    h, agent = private_ok
    token = "a1B2c3D4e5F6g7H8i9J0k1L2"  # where Slack, Discord and Teams webhook URLs carry theirs
    url = f"http://127.0.0.1:9/services/T024BE7LD/B01ABCD2EFG/{token}"
    shown = "http://127.0.0.1:9/services/T024BE7LD/B01ABCD2EFG/…k1L2"
    created = budget(h, agent, "slack", webhook_url=url)
    assert created.status_code == 201 and created.json["webhook_url"] == shown, created.json
    # a read-modify-write sends the shown URL back: the real one stays, and did not change
    h.project()
    read = h.http.get("/api/v1/budgets/slack", headers=agent).json
    written = h.http.put("/api/v1/budgets/slack", json={"name": "Renamed", "webhook_url": read["webhook_url"]}, headers=agent)
    assert written.status_code == 200 and written.json["webhook_url"] == shown, written.json
    updated = [r.event for r in h.store.read() if r.event.type == "BudgetUpdated"][-1]
    assert updated.budget.webhook_url == url and updated.changed == ("name",)
    h.project()
    answers = json.dumps([
        h.http.get("/api/v1/budgets", headers=agent).json,
        h.http.get("/api/v1/budgets/slack", headers=agent).json,
        h.admin("GET", "/api/v1/ledger?after=0&limit=1000").json,
        h.admin("GET", "/api/v1/admin/audit-log?limit=200").json,
    ], ensure_ascii=False)
    exported = io.BytesIO()
    export_ledger(h.engine, exported, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert token not in answers and token.encode() not in exported.getvalue()
    assert shown in answers
    assert verify_export(io.BytesIO(exported.getvalue()), []).intact


def test_rotation_needs_a_webhook_and_the_budget_of_ones_own_tenant(private_ok):
    h, agent = private_ok
    h.tenant("globex", ("main",))
    other = h.agent("globex", "main")
    budget(h, agent, "hooked", webhook_url="http://127.0.0.1:9/x")
    budget(h, agent, "plain")
    assert h.http.post("/api/v1/budgets/hooked/webhook-secret/rotate", headers=other).status_code == 404
    refused = h.http.post("/api/v1/budgets/plain/webhook-secret/rotate", headers=agent)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "WEBHOOK_NOT_SET"
    assert h.http.post("/api/v1/budgets/hooked/webhook-secret/rotate").status_code == 401


def test_a_receiver_using_the_standardwebhooks_package_verifies_a_real_delivery(private_ok):
    h, agent = private_ok
    receiver = Receiver(failures=0)
    try:
        created = budget(h, agent, webhook_url=receiver.url).json
        rotated = h.http.post("/api/v1/budgets/b/webhook-secret/rotate", headers=agent).json["webhook_secret"]
        h.post_events(agent, [usage("big", cost_usd="60")])
        h.project()
        # the package checks the timestamp against the real clock: deliver at the real time
        now = dataclasses.replace(h.settings, clock=FixedClock(datetime.now(timezone.utc)))
        alerts_job = BudgetAlerts(now, h.store, h.engine, WebhookConfig.of(now))
        assert alerts_job.run_once()["delivered"] == 1
        alerts_job.close()
        [(headers, body)] = receiver.requests
        headers = {k.lower(): v for k, v in headers.items()}
        payload = Webhook(rotated).verify(body, headers)
        assert payload["type"] == "budget.threshold_crossed" and payload["budget_id"] == "b"
        with pytest.raises(WebhookVerificationError):
            Webhook(created["webhook_secret"]).verify(body, headers)  # the rotated-out secret
    finally:
        receiver.close()


# 3. fairness -----------------------------------------------------------------------------
def test_one_tenants_black_holes_do_not_delay_another_tenants_delivery(private_ok):
    h, slow = private_ok
    h.tenant("globex", ("main",))
    fast = h.agent("globex", "main")
    hole, receiver = BlackHole(), Receiver(failures=0)
    thresholds = list(range(5, 101, 5))  # 20 thresholds
    try:
        for name in ("a1", "a2"):
            assert budget(h, slow, name, alert_thresholds=thresholds, webhook_url=hole.url).status_code == 201
        assert budget(h, fast, "b1", webhook_url=receiver.url).status_code == 201
        h.post_events(slow, [usage("huge", cost_usd="150")])
        h.post_events(fast, [usage("big", cost_usd="60")])
        h.project()
        alerts_job = job(h, timeout_seconds=3, connect_timeout_seconds=1, per_tenant=2, concurrency=4)
        assert len(alerts_job.raise_crossed()) == 41
        h.project()
        received_at: list[float] = []

        class Timed(list):
            def append(self, item) -> None:
                received_at.append(time.monotonic())
                super().append(item)

        receiver.requests = Timed()
        started = time.monotonic()
        outcome = alerts_job.deliver()
        took = time.monotonic() - started
        alerts_job.close()
        assert outcome == {"delivered": 1, "failed": 2}  # two of tenant A's 40 in this pass
        assert received_at and received_at[0] - started < 2.5, received_at
        assert hole.most_at_once <= 2  # the per-tenant cap on deliveries in flight
        assert took < 8, took  # one wave of timeouts, not 40 of them
        h.project()
        assert alerts(h, fast, "b1")[0]["delivery_status"] == "delivered"
    finally:
        hole.close()
        receiver.close()
