"""The budget-alerts job: raise the threshold crossings that budget_status detected, and
deliver raised alerts to their budgets' webhooks.

Raising appends BudgetThresholdCrossed to the alert's own stream at version 1, so however
often a crossing is seen (replays, rebuilds, two workers) it is raised once. Each delivery
attempt n is version n of the alert's delivery stream, read from the ledger before sending,
so a lagging read model never makes the job repeat an attempt that was already recorded.

Webhooks follow Standard Webhooks: a JSON POST with `webhook-id` (the alert id, the same on
every attempt), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA-256>`,
signed with the budget's own secret (`projections.webhook_secrets`). Deliveries of a pass
go out together from a bounded pool, round-robin across tenants, at most
BUDGET_WEBHOOK_PER_TENANT of one tenant's at once; each resolves and checks its target
again and connects to the address it checked (`workers.webhook_delivery`). A non-2xx
answer or a network error is retried with exponential backoff (BUDGET_WEBHOOK_BACKOFF_SECONDS
× 2^(n-1), at most one hour) up to BUDGET_WEBHOOK_MAX_ATTEMPTS attempts; every outcome is
an event, its error a generic code.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger.application import Ledger
from ledger.budgets.events import BudgetAlertDelivered, BudgetAlertDeliveryFailed, BudgetThresholdCrossed
from ledger.budgets.rules import as_utc
from ledger.budgets.webhooks import Resolver, signed_headers, system_resolver
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections import budget_queries as q
from projections.budget_rows import from_basis_points
from projections.budget_views import alert_json
from projections.usage import from_nanos
from projections.webhook_secrets import WebhookSecrets
from runtime.bootstrap import bootstrap
from workers.webhook_delivery import Limits, Outcome, fair_order, send

log = logging.getLogger("usage_ledger.alerts")
ACTOR = "system:budget-alerts"
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class WebhookConfig:
    connect_timeout_seconds: float = 3.0
    timeout_seconds: float = 10.0  # a whole delivery
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    interval_seconds: float = 5.0
    concurrency: int = 8
    per_tenant: int = 2
    allow_private: bool = False
    resolve: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def of(cls, settings: Settings, **overrides: Any) -> "WebhookConfig":
        values = dict(
            connect_timeout_seconds=settings.budget_webhook_connect_timeout_seconds,
            timeout_seconds=settings.budget_webhook_timeout_seconds,
            max_attempts=settings.budget_webhook_max_attempts,
            backoff_seconds=settings.budget_webhook_backoff_seconds,
            interval_seconds=settings.budget_alerts_interval_seconds,
            concurrency=settings.budget_webhook_concurrency,
            per_tenant=settings.budget_webhook_per_tenant,
            allow_private=settings.webhook_allow_private_addresses,
        )
        return cls(**{**values, **overrides})

    @property
    def limits(self) -> Limits:
        return Limits(self.connect_timeout_seconds, self.timeout_seconds, self.allow_private)

    def next_attempt_at(self, now: datetime, attempt: int) -> datetime | None:
        """When attempt+1 may run, or None when `attempt` was the last one."""
        if attempt >= self.max_attempts:
            return None
        return now + min(timedelta(seconds=self.backoff_seconds * 2 ** (attempt - 1)), MAX_BACKOFF)


@dataclass(frozen=True)
class Delivery:
    """One attempt, ready to send: taken in the job's thread, sent from the pool."""

    row: dict
    attempt: int
    at: datetime
    body: bytes
    headers: dict[str, str]


class BudgetAlerts:
    """One pass of the job: `run_once()`. Tests drive it directly with an injected clock."""

    def __init__(self, settings: Settings, store: LedgerStore, engine, config: WebhookConfig | None = None):
        self.settings = settings
        self.store = store
        self.engine = engine
        self.config = config or WebhookConfig.of(settings)
        self.controls = Ledger(store, settings).budgets
        self.secrets = WebhookSecrets(engine, settings.secret_pepper)
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.config.concurrency), thread_name_prefix="webhook")
        self._warned_unsigned: set[tuple[str, str]] = set()

    @property
    def now(self) -> datetime:
        return self.settings.clock.now()

    def run_once(self) -> dict[str, int]:
        raised, known = self._raise()
        outcome = self.deliver(extra=raised + known)
        return {"raised": len(raised), **outcome}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

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
        """Send every due delivery, at most `per_tenant` of one tenant's in this pass, from
        the pool in round-robin order; each outcome is recorded as soon as it is known."""
        with self.engine.connect() as conn:
            due = q.alerts_to_deliver(conn, self.now)
        candidates = {r["alert_id"]: r for r in due}
        for row in extra:
            if row["webhook_url"]:
                candidates.setdefault(row["alert_id"], row)
        taken: dict[str, int] = {}
        futures = {}
        for row in fair_order(candidates.values(), lambda r: r["tenant_id"]):
            if taken.get(row["tenant_id"], 0) >= self.config.per_tenant:
                continue  # the rest of this tenant's waits for the next pass
            delivery = self._prepare(row)
            if delivery is None:
                continue
            taken[row["tenant_id"]] = taken.get(row["tenant_id"], 0) + 1
            future = self.pool.submit(send, row["webhook_url"], delivery.body, delivery.headers,
                                      self.config.resolve, self.config.limits)
            futures[future] = delivery
        delivered = failed = 0
        for future in as_completed(futures):
            if self._record(futures[future], future.result()):
                delivered += 1
            else:
                failed += 1
        return {"delivered": delivered, "failed": failed}

    def _prepare(self, row: dict) -> Delivery | None:
        """The next attempt of the alert, or None when none is due (done, out of attempts,
        not yet time, or no signing secret)."""
        history = self.controls.delivery_attempts(row["alert_id"])
        if history:
            last = history[-1]
            if isinstance(last, BudgetAlertDelivered) or last.next_attempt_at is None:
                return None
            if last.next_attempt_at > self.now:
                return None
        secret = self.secrets.secret(row["tenant_id"], row["budget_id"])
        if secret is None:
            key = (row["tenant_id"], row["budget_id"])
            if key not in self._warned_unsigned:
                self._warned_unsigned.add(key)
                log.warning("budget alert waits: the budget has no webhook secret (rotate it to issue one)",
                            extra={"fields": {"tenant_id": key[0], "budget_id": key[1]}})
            return None
        attempt, now = len(history) + 1, self.now
        body = json.dumps(webhook_payload(row, attempt), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "usage-ledger-budget-alerts/2",
            "X-Usage-Ledger-Event": "budget.threshold_crossed",
            **signed_headers(secret, row["alert_id"], int(now.timestamp()), body),
        }
        return Delivery(row, attempt, now, body, headers)

    def _record(self, delivery: Delivery, outcome: Outcome) -> bool:
        row, attempt, now = delivery.row, delivery.attempt, delivery.at
        common = dict(tenant_id=row["tenant_id"], org_id=row["org_id"], recorded_at=now, actor=ACTOR,
                      alert_id=row["alert_id"], budget_id=row["budget_id"], attempt=attempt)
        if outcome.delivered:
            self.controls.record_delivery(BudgetAlertDelivered(**common, status_code=outcome.status))
            return True
        self.controls.record_delivery(
            BudgetAlertDeliveryFailed(
                **common, error=outcome.error, status_code=outcome.status,
                next_attempt_at=self.config.next_attempt_at(now, attempt),
            )
        )
        log.info("budget alert delivery failed",
                 extra={"fields": {"alert_id": row["alert_id"], "attempt": attempt, "error": outcome.error}})
        return False


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
