"""The budget-alerts job: raise the threshold crossings that budget_status detected, and
deliver raised alerts to their budgets' webhooks.

Raising appends BudgetThresholdCrossed to the alert's own stream at version 1, so however
often a crossing is seen (replays, rebuilds, two workers) it is raised once. Each delivery
attempt n is version n of the alert's delivery stream, read from the ledger before sending,
so a lagging read model never makes the job repeat an attempt that was already recorded.

Webhooks: POST JSON with `X-Usage-Ledger-Signature: sha256=<hex>`, the HMAC-SHA-256 of
`<X-Usage-Ledger-Timestamp>.<body>` keyed with BUDGET_WEBHOOK_SECRET. A non-2xx answer or
a network error is retried with exponential backoff (BUDGET_WEBHOOK_BACKOFF_SECONDS × 2^(n-1),
at most one hour) up to BUDGET_WEBHOOK_MAX_ATTEMPTS attempts; every outcome is an event.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ledger.application import Ledger
from ledger.budgets.commands import CostControls
from ledger.budgets.rules import as_utc
from ledger.budgets.events import BudgetAlertDelivered, BudgetAlertDeliveryFailed, BudgetThresholdCrossed
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections import budget_queries as q
from projections.budget_rows import from_basis_points
from projections.budget_views import alert_json
from projections.usage import from_nanos
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.alerts")
ACTOR = "system:budget-alerts"
SIGNATURE_HEADER = "X-Usage-Ledger-Signature"
TIMESTAMP_HEADER = "X-Usage-Ledger-Timestamp"
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class WebhookConfig:
    secret: str | None = None
    timeout_seconds: float = 5.0
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    interval_seconds: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> "WebhookConfig":
        return cls(
            secret=settings.budget_webhook_secret,
            timeout_seconds=settings.budget_webhook_timeout_seconds,
            max_attempts=settings.budget_webhook_max_attempts,
            backoff_seconds=settings.budget_webhook_backoff_seconds,
            interval_seconds=settings.budget_alerts_interval_seconds,
        )

    def next_attempt_at(self, now: datetime, attempt: int) -> datetime | None:
        """When attempt+1 may run, or None when `attempt` was the last one."""
        if attempt >= self.max_attempts:
            return None
        return now + min(timedelta(seconds=self.backoff_seconds * 2 ** (attempt - 1)), MAX_BACKOFF)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, not a success
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class BudgetAlerts:
    """One pass of the job: `run_once()`. Tests drive it directly with an injected clock."""

    def __init__(self, settings: Settings, store: LedgerStore, engine, config: WebhookConfig | None = None):
        self.settings = settings
        self.store = store
        self.engine = engine
        self.config = config or WebhookConfig.of(settings)
        self.controls = CostControls(Ledger(store, settings))
        self._warned_unsigned = False

    @property
    def now(self) -> datetime:
        return self.settings.clock.now()

    def run_once(self) -> dict[str, int]:
        raised, known = self._raise()
        outcome = self.deliver(extra=raised + known)
        return {"raised": len(raised), **outcome}

    # raising ------------------------------------------------------------------------
    def raise_crossed(self) -> list[dict]:
        """Append BudgetThresholdCrossed for every detected crossing not raised yet; returns
        the alert rows this pass raised (others were raised before: a stream conflict)."""
        return self._raise()[0]

    def _raise(self) -> tuple[list[dict], list[dict]]:
        """(rows raised now, rows the read model shows unraised that the ledger already has)."""
        with self.engine.connect() as conn:
            rows = q.alerts_to_raise(conn)
        raised, known = [], []
        for row in rows:
            event = threshold_event(row, self.now)
            (raised if self.controls.raise_threshold_crossed(event) is not None else known).append(dict(row, raised=True))
        return raised, known

    # delivering ---------------------------------------------------------------------
    def deliver(self, extra: list[dict] = ()) -> dict[str, int]:
        with self.engine.connect() as conn:
            due = q.alerts_to_deliver(conn, self.now)
        candidates = {r["alert_id"]: r for r in due}
        for row in extra:
            if row["webhook_url"]:
                candidates.setdefault(row["alert_id"], row)
        if candidates and not self.config.secret:
            if not self._warned_unsigned:
                log.warning("budget alerts are waiting: set BUDGET_WEBHOOK_SECRET to deliver signed webhooks")
                self._warned_unsigned = True
            return {"delivered": 0, "failed": 0}
        delivered = failed = 0
        for row in candidates.values():
            outcome = self._attempt(row)
            delivered += outcome == "delivered"
            failed += outcome == "failed"
        return {"delivered": delivered, "failed": failed}

    def _attempt(self, row: dict) -> str | None:
        history = self.controls.delivery_attempts(row["alert_id"])
        if history:
            last = history[-1]
            if isinstance(last, BudgetAlertDelivered) or last.next_attempt_at is None:
                return None  # done: delivered, or out of attempts
            if last.next_attempt_at > self.now:
                return None  # not due yet
        attempt = len(history) + 1
        now = self.now
        stamp = str(int(now.timestamp()))
        body = json.dumps(webhook_payload(row, attempt), separators=(",", ":")).encode()
        request = urllib.request.Request(
            row["webhook_url"],
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "usage-ledger-budget-alerts/1",
                "X-Usage-Ledger-Event": "budget.threshold_crossed",
                "X-Usage-Ledger-Delivery": row["alert_id"],
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(self.config.secret or "", stamp, body),
            },
        )
        status: int | None = None
        error = ""
        try:
            with _opener.open(request, timeout=self.config.timeout_seconds) as response:
                status = response.status
        except urllib.error.HTTPError as failure:
            status, error = failure.code, f"HTTP {failure.code}"
        except (urllib.error.URLError, OSError, ValueError) as failure:
            error = f"{type(failure).__name__}: {getattr(failure, 'reason', failure)}"
        common = dict(tenant_id=row["tenant_id"], org_id=row["org_id"], recorded_at=now, actor=ACTOR,
                      alert_id=row["alert_id"], budget_id=row["budget_id"], attempt=attempt)
        if status is not None and 200 <= status < 300:
            self.controls.record_delivery(BudgetAlertDelivered(**common, status_code=status))
            return "delivered"
        if status is not None and not error:
            error = f"HTTP {status}"
        self.controls.record_delivery(
            BudgetAlertDeliveryFailed(
                **common, error=error[:2000], status_code=status, next_attempt_at=self.config.next_attempt_at(now, attempt)
            )
        )
        log.info("budget alert delivery failed", extra={"fields": {"alert_id": row["alert_id"], "attempt": attempt, "error": error}})
        return "failed"


def threshold_event(row: dict, now: datetime) -> BudgetThresholdCrossed:
    return BudgetThresholdCrossed(
        tenant_id=row["tenant_id"],
        org_id=row["org_id"],
        recorded_at=now,
        actor=ACTOR,
        alert_id=row["alert_id"],
        budget_id=row["budget_id"],
        budget_name=row["budget_name"],
        period=row["period"],
        period_start=as_utc(row["period_start"]),
        period_end=as_utc(row["period_end"]),
        unit=row["unit"],
        threshold=from_basis_points(row["threshold_bp"]).normalize(),
        percentage=from_basis_points(row["percentage_bp"]),
        used=from_nanos(row["used_nanos"]),
        limit=from_nanos(row["limit_nanos"]),
        crossed_at=as_utc(row["crossed_at"]),
        webhook_url=row["webhook_url"],
        incarnation=row["incarnation"],
    )


def webhook_payload(row: dict, attempt: int) -> dict[str, Any]:
    """What the webhook receives: the alert as the API shows it, plus whose it is and which
    attempt this is."""
    return {
        "type": "budget.threshold_crossed",
        "attempt": attempt,
        "tenant_id": row["tenant_id"],
        "org_id": row["org_id"],
        **alert_json(row),
    }


_per_process: dict[str, BudgetAlerts] = {}


def run(settings: Settings) -> dict[str, int]:
    """The scheduler's entry point: one pass, with this process's store and engine."""
    job = _per_process.get(settings.database_url)
    if job is None:
        services = bootstrap(settings, pool_size=1)
        job = _per_process[settings.database_url] = BudgetAlerts(settings, services.store, services.engine)
    return job.run_once()
