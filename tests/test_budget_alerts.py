"""Threshold alerts: raised once per budget, period and threshold, also across replays and
rebuilds; delivered to webhooks signed with each budget's own secret (Standard Webhooks),
retried with backoff. The alerts job is driven directly with the injected clock; nothing
sleeps. The receivers listen on 127.0.0.1, so these deployments allow private targets."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from projections import framework
from projections.registry import by_name
from tests.conftest import make_settings, usage
from workers.alerts import BudgetAlerts, WebhookConfig


@pytest.fixture
def settings(database_url, clock):
    return make_settings(database_url, clock, webhook_allow_private_addresses=True)


def job(h, **config) -> BudgetAlerts:
    return BudgetAlerts(h.settings, h.store, h.engine, WebhookConfig.of(h.settings, **config))


@pytest.fixture
def alerts_job(h):
    alerts = job(h, timeout_seconds=5, backoff_seconds=30)
    yield alerts
    alerts.close()


def create(h, headers, **fields):
    body = {"id": "b", "name": "Budget", "limit_usd": 100, "period": "monthly", **fields}
    response = h.http.post("/api/v1/budgets", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response


def alerts(h, headers, budget_id="b") -> list[dict]:
    response = h.http.get(f"/api/v1/budgets/{budget_id}/alerts", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["alerts"]


def ledger_types(h) -> list[str]:
    return [r.event.type for r in h.store.read()]


def test_crossing_50_and_80_in_one_event_raises_both_once_and_a_rebuild_raises_none(h, agent, alerts_job):
    create(h, agent)
    h.post_events(agent, [usage("small", cost_usd="10"), usage("big", cost_usd="75")])
    h.project()
    assert alerts_job.run_once()["raised"] == 2
    assert alerts_job.run_once()["raised"] == 0  # the read model has not seen them yet: their streams say raised
    h.project()
    found = alerts(h, agent)
    assert [(a["threshold"], a["percentage"], a["used"], a["limit"], a["raised"], a["delivery_status"]) for a in found] == [
        (50, 85, 85, 100, True, "none"),
        (80, 85, 85, 100, True, "none"),
    ]
    assert {a["period_start"] for a in found} == {"2026-11-01T00:00:00Z"}
    assert found[0]["created_at"] == "2026-11-20T12:00:00Z"
    assert ledger_types(h).count("BudgetThresholdCrossed") == 2

    budget_status = by_name("budget_status")
    framework.reset(h.engine, budget_status)
    framework.catch_up(h.engine, h.store, budget_status)
    assert alerts_job.run_once()["raised"] == 0
    h.project()
    assert alerts(h, agent) == found
    assert ledger_types(h).count("BudgetThresholdCrossed") == 2
    assert framework.check(h.engine, h.store, by_name("budget_status"), by_name("budget_status", prefix="check_")) == []

    h.post_events(agent, [usage("more", cost_usd="5")])  # 90%: no new threshold
    h.project()
    assert alerts_job.run_once()["raised"] == 0
    h.post_events(agent, [usage("over", cost_usd="10")])  # 100%
    h.project()
    assert alerts_job.run_once()["raised"] == 1
    h.project()
    assert [a["threshold"] for a in alerts(h, agent)] == [50, 80, 100]
    assert h.http.get("/api/v1/budgets/b/status", headers=agent).json["thresholds_crossed"] == [50, 80, 100]


def test_the_cli_rebuild_raises_no_alert_again(h, agent, alerts_job):
    create(h, agent, alert_thresholds=[10, 20])
    h.post_events(agent, [usage("spend", cost_usd="25")])
    h.project()
    assert alerts_job.run_once()["raised"] == 2
    h.project()
    before = alerts(h, agent)
    env = {**os.environ, "DATABASE_URL": h.settings.database_url}
    result = subprocess.run([sys.executable, "-m", "usage_ledger.cli", "rebuild"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "usage_ledger.cli", "rebuild", "--check"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout)["identical"] is True, result.stdout + result.stderr
    assert alerts_job.run_once()["raised"] == 0
    h.project()
    assert alerts(h, agent) == before
    assert ledger_types(h).count("BudgetThresholdCrossed") == 2


def test_two_jobs_racing_raise_each_alert_once(h, agent, alerts_job):
    create(h, agent)
    h.post_events(agent, [usage("big", cost_usd="60")])
    h.project()
    other = job(h)
    # both read the same unraised row from the read model; only the first append succeeds
    assert len(alerts_job.raise_crossed()) == 1
    assert len(other.raise_crossed()) == 0
    assert ledger_types(h).count("BudgetThresholdCrossed") == 1


def test_a_threshold_is_raised_once_per_period_and_again_in_the_next(h, agent, alerts_job, clock):
    create(h, agent, period="daily", alert_thresholds=[50])
    h.post_events(agent, [usage("a", cost_usd="60")])
    h.project()
    assert alerts_job.run_once()["raised"] == 1
    h.post_events(agent, [usage("b", cost_usd="1")])
    h.project()
    assert alerts_job.run_once()["raised"] == 0
    clock.advance(days=1)
    h.post_events(agent, [usage("next-day", cost_usd="55", occurred_at="2026-11-21T10:00:00Z")])
    h.project()
    assert alerts_job.run_once()["raised"] == 1  # a new period, a new alert
    h.project()
    assert [a["period_start"] for a in alerts(h, agent)] == ["2026-11-21T00:00:00Z", "2026-11-20T00:00:00Z"]


def test_a_budget_without_thresholds_never_alerts(h, agent, alerts_job):
    create(h, agent, alert_thresholds=[], on_exceed="block")
    h.post_events(agent, [usage("big", cost_usd="150")])
    h.project()
    assert alerts_job.run_once()["raised"] == 0
    assert alerts(h, agent) == []
    status = h.http.get("/api/v1/budgets/b/status", headers=agent).json
    assert (status["status"], status["thresholds_crossed"]) == ("exceeded", [])
    assert h.http.get("/readyz", headers={"X-Admin-API-Key": h.settings.admin_api_key}).json["parked_errors"] == []


def test_disabled_budgets_raise_nothing_until_enabled(h, agent, alerts_job):
    create(h, agent, enabled=False)
    h.post_events(agent, [usage("big", cost_usd="90")])
    h.project()
    assert alerts_job.run_once()["raised"] == 0
    assert h.http.put("/api/v1/budgets/b", json={"enabled": True}, headers=agent).status_code == 200
    h.project()
    assert alerts_job.run_once()["raised"] == 2


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to the first `failures` posts."""

    def __init__(self, failures: int):
        self.failures = failures
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.requests) <= receiver.failures else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/budget"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_receiver():
    receiver = Receiver(failures=2)
    yield receiver
    receiver.close()


def spec_signature(secret: str, headers: dict, body: bytes) -> str:
    """The signature a receiver written from the Standard Webhooks specification expects."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_a_webhook_that_fails_twice_is_retried_with_backoff_and_delivered(h, agent, alerts_job, clock, flaky_receiver):
    secret = create(h, agent, alert_thresholds=[50], webhook_url=flaky_receiver.url).json["webhook_secret"]
    h.post_events(agent, [usage("big", cost_usd="60")])
    h.project()

    assert alerts_job.run_once() == {"raised": 1, "delivered": 0, "failed": 1}
    assert alerts_job.run_once() == {"raised": 0, "delivered": 0, "failed": 0}  # not due, even before projecting
    h.project()
    [alert] = alerts(h, agent)
    assert (alert["delivery_status"], alert["delivery_attempts"], alert["last_error"]) == ("retrying", 1, "http_status_500")
    assert alert["next_attempt_at"] == "2026-11-20T12:00:30Z"

    clock.advance(seconds=29)
    assert alerts_job.run_once()["failed"] == 0 and len(flaky_receiver.requests) == 1
    clock.advance(seconds=1)
    assert alerts_job.run_once()["failed"] == 1  # attempt 2, then wait twice as long
    h.project()
    assert alerts(h, agent)[0]["next_attempt_at"] == "2026-11-20T12:01:30Z"
    clock.advance(seconds=59)
    assert alerts_job.run_once()["delivered"] == 0
    clock.advance(seconds=1)
    assert alerts_job.run_once()["delivered"] == 1
    h.project()
    assert alerts_job.run_once() == {"raised": 0, "delivered": 0, "failed": 0}
    assert len(flaky_receiver.requests) == 3

    [alert] = alerts(h, agent)
    assert (alert["delivery_status"], alert["delivery_attempts"]) == ("delivered", 3)
    assert alert["delivered_at"] == "2026-11-20T12:01:30Z" and alert["next_attempt_at"] is None
    types = ledger_types(h)
    assert (types.count("BudgetAlertDeliveryFailed"), types.count("BudgetAlertDelivered")) == (2, 1)

    for attempt, (headers, body) in enumerate(flaky_receiver.requests, 1):
        headers = {k.lower(): v for k, v in headers.items()}
        assert headers["webhook-signature"] == spec_signature(secret, headers, body)
        payload = json.loads(body)
        assert payload["attempt"] == attempt
        assert payload["alert_id"] == alert["alert_id"] == headers["webhook-id"]  # the same on every attempt
        assert (payload["budget_id"], payload["threshold"], payload["used"], payload["limit"]) == ("b", 50, 60, 100)
        # the webhook sends the alert as the API shows it, plus whose it is and the attempt
        assert set(payload) - set(alert) == {"type", "attempt", "tenant_id", "org_id"}
        assert {k: v for k, v in alert.items() if k in payload} == {k: v for k, v in payload.items() if k in alert}
        assert set(alert) - set(payload) == {"raised", "delivery_status", "delivery_attempts", "last_attempt_at",
                                             "next_attempt_at", "delivered_at", "last_error"}
    assert flaky_receiver.requests[0][0]["webhook-timestamp"] == str(int(clock.now().timestamp()) - 90)


def test_a_webhook_that_never_answers_well_ends_failed(h, agent, clock):
    receiver = Receiver(failures=100)
    try:
        alerts_job = job(h, max_attempts=2, backoff_seconds=10)
        create(h, agent, alert_thresholds=[50], webhook_url=receiver.url)
        h.post_events(agent, [usage("big", cost_usd="60")])
        h.project()
        assert alerts_job.run_once()["failed"] == 1
        clock.advance(seconds=10)
        assert alerts_job.run_once()["failed"] == 1
        clock.advance(hours=2)
        h.project()
        assert alerts_job.run_once() == {"raised": 0, "delivered": 0, "failed": 0}
        [alert] = alerts(h, agent)
        assert (alert["delivery_status"], alert["delivery_attempts"], alert["next_attempt_at"]) == ("failed", 2, None)
        assert len(receiver.requests) == 2
    finally:
        receiver.close()


def test_backoff_doubles_up_to_an_hour():
    config = WebhookConfig(backoff_seconds=30, max_attempts=10)
    from datetime import datetime, timezone

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert [config.next_attempt_at(now, n) - now for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (30, 60, 120)]
    assert config.next_attempt_at(now, 9) - now == timedelta(hours=1)
    assert config.next_attempt_at(now, 10) is None
