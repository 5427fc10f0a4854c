"""GET /metrics: Prometheus text from prometheus_client, parsed back with its parser.

In-process (both backends): request durations by route template, ingested and duplicate
events, ledger and read-model positions and lag, webhook and License Manager outcomes
counted from the ledger. Against `usage-ledger api` with two gunicorn workers: the
counters add up across the workers (multiprocess mode)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from ledger.budgets.events import BudgetAlertDelivered, BudgetAlertDeliveryFailed
from ledger.clock import FixedClock
from ledger.licensing.rules import ReportedLicense
from projections.registry import all_projections, setup_database
from tests.conftest import ADMIN_KEY, NOW, basic, make_settings, usage
from tests.processes import free_port, start_cli, stop, wait_until

FAMILIES = {
    "http_request_duration_seconds": "histogram",
    "usage_ledger_events_ingested": "counter",
    "usage_ledger_events_duplicates": "counter",
    "usage_ledger_database_up": "gauge",
    "usage_ledger_position": "gauge",
    "usage_ledger_projection_position": "gauge",
    "usage_ledger_projection_lag": "gauge",
    "usage_ledger_parked_errors": "gauge",
    "usage_ledger_webhook_deliveries": "counter",
    "usage_ledger_license_syncs": "counter",
}


def scrape(text: str) -> dict[str, dict]:
    """{family name: {"type": ..., "samples": {(sample name, sorted labels): value}}}."""
    families = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        families[family.name] = {"type": family.type, "samples": samples}
    return families


def value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    samples = families[family]["samples"]
    return samples.get((sample or family, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_ingest(h, agent):
    before = scrape(h.http.get("/metrics").get_data(as_text=True))
    assert h.post_events(agent, [usage(f"m-{i}") for i in range(3)]).status_code == 202
    assert h.post_events(agent, [usage("m-0"), usage("m-1"), usage("m-3")]).status_code == 202
    assert h.http.get("/api/v1/budgets/nope", headers=agent).status_code == 404
    answer = h.http.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    after = scrape(answer.get_data(as_text=True))
    assert {name: after[name]["type"] for name in FAMILIES} == FAMILIES

    def grew(family, sample=None, **labels):
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    assert grew("usage_ledger_events_ingested", "usage_ledger_events_ingested_total", credential="client") == 4
    assert grew("usage_ledger_events_duplicates", "usage_ledger_events_duplicates_total", credential="client") == 2
    posted = {"route": "/api/v1/events", "method": "POST", "status": "202"}
    assert grew("http_request_duration_seconds", "http_request_duration_seconds_count", **posted) == 2
    assert grew("http_request_duration_seconds", "http_request_duration_seconds_bucket", le="+Inf", **posted) == 2
    missing = {"route": "/api/v1/budgets/<budget_id>", "method": "GET", "status": "404"}
    assert grew("http_request_duration_seconds", "http_request_duration_seconds_count", **missing) == 1
    assert all("acme" not in str(key) for family in after.values() for key in family["samples"])  # tenant-free labels

    head = h.store.max_position()
    assert value(after, "usage_ledger_position") == head and value(after, "usage_ledger_database_up") == 1
    names = [p.name for p in all_projections()]
    assert all(value(after, "usage_ledger_projection_lag", projection=n) == head for n in names)
    h.project()
    caught_up = scrape(h.http.get("/metrics").get_data(as_text=True))
    for name in names:
        assert value(caught_up, "usage_ledger_projection_position", projection=name) == head
        assert value(caught_up, "usage_ledger_projection_lag", projection=name) == 0


def test_worker_outcomes_are_counted_from_the_ledger(h, agent):
    ledger = h.services.ledger
    common = {"tenant_id": "acme", "org_id": "prod", "recorded_at": NOW, "actor": "worker", "budget_id": "b1"}
    ledger.budgets.record_delivery(BudgetAlertDeliveryFailed(**common, alert_id="a1", attempt=1, error="503",
                                                             next_attempt_at=datetime(2026, 11, 20, 13, tzinfo=UTC)))
    ledger.budgets.record_delivery(BudgetAlertDelivered(**common, alert_id="a1", attempt=2, status_code=200))
    ledger.budgets.record_delivery(BudgetAlertDeliveryFailed(**common, alert_id="a2", attempt=1, error="timeout"))
    first = scrape(h.http.get("/metrics").get_data(as_text=True))
    deliveries = "usage_ledger_webhook_deliveries_total"
    assert [value(first, "usage_ledger_webhook_deliveries", deliveries, outcome=o) for o in ("delivered", "retrying", "gave_up")] == [1, 1, 1]

    ledger.licensing.record_synced("acme", "prod", "LIC-1", ReportedLicense("Professional", 5, None, None, "active"))
    ledger.licensing.record_sync_failed("acme", "prod", "LIC-1", "lm_unreachable", "down", None)
    ledger.licensing.record_sync_failed("acme", "prod", "LIC-1", "lm_unreachable", "down", None)
    ledger.budgets.record_delivery(BudgetAlertDelivered(**common, alert_id="a3", attempt=1, status_code=204))
    second = scrape(h.http.get("/metrics").get_data(as_text=True))  # counted on from where the first scrape stopped
    syncs = "usage_ledger_license_syncs_total"
    assert value(second, "usage_ledger_license_syncs", syncs, outcome="synced") == 1
    assert value(second, "usage_ledger_license_syncs", syncs, outcome="failed") == 2
    assert value(second, "usage_ledger_webhook_deliveries", deliveries, outcome="delivered") == 2
    assert h.http.get("/metrics").get_data(as_text=True).count(f'{deliveries}{{outcome="delivered"}} 2.0') == 1


@pytest.fixture
def api_with_two_workers(database_url, tmp_path):
    setup_database(make_settings(database_url, FixedClock(NOW)))
    port = free_port()
    shared = tmp_path / "metrics"
    shared.mkdir()
    process = start_cli(database_url, "api", "--port", str(port), "--workers", "2", ADMIN_API_KEY=ADMIN_KEY,
                        PROMETHEUS_MULTIPROC_DIR=str(shared))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base, process), 90, "the API to answer")
        yield base, shared
    finally:
        stop(process)


def _answers(base: str, process) -> bool:
    assert process.poll() is None, process.stdout.read().decode(errors="replace")
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or still loading the app
        return False


def test_counters_add_up_across_gunicorn_workers(api_with_two_workers):
    base, shared = api_with_two_workers
    admin = {"X-Admin-API-Key": ADMIN_KEY}
    assert requests.post(f"{base}/api/v1/admin/tenants", json={"tenant_id": "acme", "name": "a"}, headers=admin).status_code == 201
    assert requests.post(f"{base}/api/v1/admin/tenants/acme/orgs", json={"org_id": "prod", "name": "p"}, headers=admin).status_code == 201
    client = requests.post(f"{base}/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "a"}, headers=admin).json()
    agent = {**basic(client["client_id"], client["client_secret"]), "Connection": "close"}

    def post(i: int) -> int:
        return requests.post(f"{base}/api/v1/events", json={"events": [usage(f"w-{i}-{j}") for j in range(20)]}, headers=agent).status_code

    def writers() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in shared.glob("counter_*.db")}

    batches = 0
    with ThreadPoolExecutor(4) as pool:  # concurrent requests, until both workers took some (the
        for _ in range(10):  # kernel decides which worker accepts; a busy machine may favour one)
            assert set(pool.map(post, range(batches, batches + 40))) == {202}
            batches += 40
            if len(writers()) == 2:
                break
    assert len(writers()) == 2, writers()  # both workers counted ingested events
    seen = set()
    for _ in range(10):  # whichever worker answers the scrape, it adds up both workers' counts
        families = scrape(requests.get(f"{base}/metrics", headers={"Connection": "close"}).text)
        seen.add(value(families, "usage_ledger_events_ingested", "usage_ledger_events_ingested_total", credential="client"))
    assert seen == {batches * 20}
    posted = {"route": "/api/v1/events", "method": "POST", "status": "202"}
    assert value(families, "http_request_duration_seconds", "http_request_duration_seconds_count", **posted) == batches


def test_a_scrape_answers_when_the_database_does_not(h):
    with h.engine.begin() as conn:
        conn.execute(text("DROP TABLE projection_positions"))
    families = scrape(h.http.get("/metrics").get_data(as_text=True))
    assert value(families, "usage_ledger_database_up") == 0
    assert "usage_ledger_projection_lag" not in families and "http_request_duration_seconds" in families
