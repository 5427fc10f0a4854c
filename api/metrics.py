"""Prometheus metrics of the API (`GET /metrics`), built on prometheus_client.

Two sources:
- counted in the API processes: request durations and ingested events. Under gunicorn the
  workers share them through prometheus_client's multiprocess mode: `usage-ledger api`
  points PROMETHEUS_MULTIPROC_DIR at a fresh directory for the run and marks a worker dead
  when it exits, and a scrape, answered by any worker, adds up every worker's files;
- read at scrape time from the database (`DatabaseCollector`): the ledger position, each
  read model's position and lag, parked errors, and the outcomes the workers record as
  ledger events (webhook deliveries, License Manager syncs). Counting those from the
  ledger, rather than in the worker processes, gives the same totals whichever process
  answers, wherever the workers run, across restarts. Each API process counts them
  incrementally: the first scrape reads the outcome events of the whole ledger (one
  indexed range read per window, outcome topics only), later scrapes only what is new.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from api.services import services
from ledger.budgets.events import BudgetAlertDelivered, BudgetAlertDeliveryFailed
from ledger.licensing.events import LicenseSynced, LicenseSyncFailed
from ledger.store import decode_notification
from runtime.reports import projection_report

log = logging.getLogger("usage_ledger.api")
disable_created_metrics()  # *_created samples: absent in multiprocess mode, so absent here too

# Counted in this process (and, in multiprocess mode, in files shared by the workers).
LOCAL = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request, by route template, method and status.",
    ("route", "method", "status"), registry=LOCAL,
)
EVENTS_INGESTED = Counter(
    "usage_ledger_events_ingested", "Usage events appended to the ledger by POST /api/v1/events.", ("credential",), registry=LOCAL,
)
EVENTS_DUPLICATES = Counter(
    "usage_ledger_events_duplicates", "Usage events sent again with the same body (not appended twice).", ("credential",),
    registry=LOCAL,
)
INGEST_ENDPOINT = "events.post_events"
OUTCOME_WINDOW = 20_000  # ledger positions per read when counting outcome events
SETTLE = 1_000  # positions near the head are recounted each scrape: a writer may still commit below the head


def register(app: Flask) -> None:
    """Time every request and count ingested events (after the answer is built)."""
    app.extensions["usage_ledger_outcomes"] = LedgerOutcomes()
    app.before_request(_start_timer)
    app.after_request(_observe)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUEST_SECONDS.labels(route, request.method, str(response.status_code)).observe(time.perf_counter() - started)
    if request.endpoint == INGEST_ENDPOINT and response.status_code == 202:
        answer = response.get_json(silent=True) or {}
        principal = g.get("principal")
        credential = getattr(principal, "kind", "unknown")
        EVENTS_INGESTED.labels(credential).inc(answer.get("accepted", 0))
        EVENTS_DUPLICATES.labels(credential).inc(answer.get("duplicates", 0))
    return response


def metrics_response() -> Response:
    """The Prometheus text exposition of every metric (the /metrics answer)."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Local())
    registry.register(DatabaseCollector(services(), current_app.extensions["usage_ledger_outcomes"]))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _Local:
    def collect(self):
        return LOCAL.collect()


OUTCOME_TOPICS = {  # the stored topic is the event class's name
    BudgetAlertDelivered.__name__: "webhook",
    BudgetAlertDeliveryFailed.__name__: "webhook",
    LicenseSynced.__name__: "license_sync",
    LicenseSyncFailed.__name__: "license_sync",
}


class LedgerOutcomes:
    """Webhook delivery and License Manager sync outcomes, counted from their ledger events."""

    def __init__(self):
        self.lock = threading.Lock()
        self.settled = 0  # counted up to this position for good
        self.counts: dict[tuple[str, str], int] = {}

    def read(self, store, head: int) -> dict[tuple[str, str], int]:
        with self.lock:
            settle_at = max(head - SETTLE, self.settled)
            self.settled = self._count(store, self.settled, settle_at, self.counts)
            recent = dict(self.counts)
            self._count(store, self.settled, head, recent)
            return recent

    def _count(self, store, after: int, stop: int, into: dict) -> int:
        while after < stop:
            upto = min(after + OUTCOME_WINDOW, stop)
            for stored in store.read_window(after, upto, tuple(OUTCOME_TOPICS)):
                key = (OUTCOME_TOPICS[stored.topic], outcome_of(decode_notification(stored).event))
                into[key] = into.get(key, 0) + 1
            after = upto
        return after


def outcome_of(event) -> str:
    if isinstance(event, BudgetAlertDelivered):
        return "delivered"
    if isinstance(event, BudgetAlertDeliveryFailed):
        return "retrying" if event.next_attempt_at else "gave_up"
    return "synced" if isinstance(event, LicenseSynced) else "failed"


class DatabaseCollector:
    """What the database knows, read when Prometheus scrapes."""

    def __init__(self, services_, outcomes: LedgerOutcomes):
        self.services, self.outcomes = services_, outcomes

    def collect(self):
        up = GaugeMetricFamily("usage_ledger_database_up", "1 when the database answered this scrape, else 0.")
        try:
            report = projection_report(self.services)
            outcomes = self.outcomes.read(self.services.store, report["ledger_position"])
        except Exception:  # a scrape must answer even when the database does not
            log.warning("metrics: the database did not answer the scrape", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("usage_ledger_position", "The ledger's last position.", value=report["ledger_position"])
        position = GaugeMetricFamily("usage_ledger_projection_position", "The ledger position a read model has applied.",
                                     labels=["projection"])
        lag = GaugeMetricFamily("usage_ledger_projection_lag", "Ledger events a read model has yet to apply.", labels=["projection"])
        for name, state in report["projections"].items():
            position.add_metric([name], state["position"])
            lag.add_metric([name], state["lag"])
        yield position
        yield lag
        yield GaugeMetricFamily("usage_ledger_parked_errors", "Events a projector could not apply (see /readyz).",
                                value=len(report["parked_errors"]))
        deliveries = CounterMetricFamily("usage_ledger_webhook_deliveries", "Budget alert webhook delivery attempts, by outcome.",
                                         labels=["outcome"])
        for outcome in ("delivered", "retrying", "gave_up"):
            deliveries.add_metric([outcome], outcomes.get(("webhook", outcome), 0))
        yield deliveries
        syncs = CounterMetricFamily("usage_ledger_license_syncs", "License Manager syncs of a licence, by outcome.", labels=["outcome"])
        for outcome in ("synced", "failed"):
            syncs.add_metric([outcome], outcomes.get(("license_sync", outcome), 0))
        yield syncs
