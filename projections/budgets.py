"""budget_status read model: budgets, spend per scope and period, and threshold alerts.

Fed by Budget* and Usage* events. Spend is kept per (tenant, org, scope, scope_id, period
kind, period start) for every usage event whether or not a budget exists yet, so a budget
created mid-period sees the period's earlier spend, and `/budgets/check` reads one spend
row per matching budget. Period boundaries come from each usage event's occurred_at (UTC),
so no reset job is needed.

Threshold crossings are detected here, event by event in ledger order (so the result does
not depend on how events were batched): a budget whose spend reaches a threshold in a period
gets one alert row. The alert becomes a ledger event (BudgetThresholdCrossed) when the
budget-alerts job raises it; that event marks the row raised, and delivery events record
the webhook outcome. Everything here is derived from ledger events only, so a rebuild
yields the same rows and raises nothing again.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    select,
)

from ledger.budgets.commands import PERIODS, alert_stream, percentage, period_bounds, usage_scopes
from ledger.budgets.events import (
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    BudgetCreated,
    BudgetDeleted,
    BudgetTerms,
    BudgetThresholdCrossed,
    BudgetUpdated,
)
from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.store import Recorded
from projections.framework import Projection
from projections.sql import upsert_add, upsert_replace
from projections.usage import from_nanos, naive_utc, to_nanos

SPEND_KEYS = ("tenant_id", "org_id", "scope", "scope_id", "period", "period_start")
_CENT = Decimal("0.01")


def to_basis_points(percent: Decimal) -> int:
    """A percentage as an integer of hundredths (50% → 5000), rounded half-even."""
    return int((percent * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_basis_points(value: int) -> Decimal:
    return (Decimal(value) / 100).quantize(_CENT)


def thresholds_text(thresholds: Sequence[Decimal]) -> str:
    return json.dumps([str(t) for t in thresholds])


def thresholds_from_text(text: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(t) for t in json.loads(text))


class BudgetStatusProjection(Projection):
    name = "budget_status"
    version = 2  # 2: spend rows of fully voided scopes are removed (equal to a replay)
    topics = (
        "UsageRecorded",
        "UsageVoided",
        "UsageAmended",
        "BudgetCreated",
        "BudgetUpdated",
        "BudgetDeleted",
        "BudgetThresholdCrossed",
        "BudgetAlertDelivered",
        "BudgetAlertDeliveryFailed",
    )

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.budgets = Table(
            f"{prefix}budgets",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("budget_id", String(64), primary_key=True),
            Column("org_id", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("scope", String(16), nullable=False),
            Column("scope_id", String(128), nullable=False),  # '' for organization budgets
            Column("unit", String(8), nullable=False),
            Column("limit_nanos", BigInteger, nullable=False),
            Column("period", String(16), nullable=False),
            Column("on_exceed", String(16), nullable=False),
            Column("alert_thresholds", Text, nullable=False),  # JSON list of decimal strings
            Column("enabled", Boolean, nullable=False),
            Column("webhook_url", Text),
            Column("downgrade_model", String(256)),
            Column("created_at", DateTime, nullable=False),
            Column("created_by", String(256), nullable=False),
            Column("updated_at", DateTime, nullable=False),
            Column("updated_by", String(256), nullable=False),
            Column("position", BigInteger, nullable=False),
            Index(f"ix_{prefix}budgets_match", "tenant_id", "org_id", "scope", "scope_id"),
        )
        self.spend = Table(
            f"{prefix}budget_spend",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("org_id", String(64), primary_key=True),
            Column("scope", String(16), primary_key=True),
            Column("scope_id", String(128), primary_key=True),
            Column("period", String(16), primary_key=True),
            Column("period_start", DateTime, primary_key=True),
            Column("cost_nanos", BigInteger, nullable=False, default=0),
            Column("credits_nanos", BigInteger, nullable=False, default=0),
            Column("events", BigInteger, nullable=False, default=0),
        )
        self.alerts = Table(
            f"{prefix}budget_alerts",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("budget_id", String(64), primary_key=True),
            Column("period_start", DateTime, primary_key=True),
            Column("threshold_bp", Integer, primary_key=True),
            Column("alert_id", String(36), nullable=False, unique=True),
            Column("org_id", String(64), nullable=False),
            Column("budget_name", String(200), nullable=False),
            Column("period", String(16), nullable=False),
            Column("period_end", DateTime, nullable=False),
            Column("unit", String(8), nullable=False),
            Column("percentage_bp", BigInteger, nullable=False),
            Column("used_nanos", BigInteger, nullable=False),
            Column("limit_nanos", BigInteger, nullable=False),
            Column("crossed_at", DateTime, nullable=False),
            Column("position", BigInteger, nullable=False),  # the event that made it cross
            Column("webhook_url", Text),
            Column("raised", Boolean, nullable=False),
            Column("raised_position", BigInteger),
            Column("delivery_status", String(16), nullable=False),  # none|pending|retrying|delivered|failed
            Column("attempts", Integer, nullable=False),
            Column("last_attempt_at", DateTime),
            Column("next_attempt_at", DateTime),
            Column("last_status_code", Integer),
            Column("last_error", Text),
            Column("delivered_at", DateTime),
            Index(f"ix_{prefix}budget_alerts_org_period", "tenant_id", "org_id", "period_start"),
            Index(f"ix_{prefix}budget_alerts_delivery", "delivery_status", "next_attempt_at"),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        state = _BatchState(self, conn)
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                state.count(recorded, event.tenant_id, event.org_id, [(event.usage, 1)])
            elif isinstance(event, UsageVoided):
                state.count(recorded, event.tenant_id, event.org_id, [(event.voided, -1)])
            elif isinstance(event, UsageAmended):
                state.count(recorded, event.tenant_id, event.org_id, [(event.previous, -1), (event.current, 1)])
            elif isinstance(event, (BudgetCreated, BudgetUpdated)):
                state.budget_set(recorded, event)
            elif isinstance(event, BudgetDeleted):
                state.budget_deleted(event)
            elif isinstance(event, BudgetThresholdCrossed):
                state.alert_raised(recorded, event)
            elif isinstance(event, (BudgetAlertDelivered, BudgetAlertDeliveryFailed)):
                state.delivery(recorded, event)
        state.flush()



@lru_cache(maxsize=4096)
def _period_starts(day: date) -> tuple[tuple[str, datetime], ...]:
    """(period, start as naive UTC) of every budget period containing the UTC day."""
    moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return tuple((period, naive_utc(period_bounds(period, moment)[0])) for period in PERIODS)

@dataclass
class _Budget:
    row: dict  # a budgets-table row

    @property
    def key(self) -> tuple[str, str]:
        return self.row["scope"], self.row["scope_id"]


@dataclass
class _Org:
    budgets: dict[str, _Budget] = field(default_factory=dict)
    by_scope: dict[tuple[str, str], list[_Budget]] | None = None

    def matching(self, key: tuple[str, str]) -> list[_Budget]:
        if self.by_scope is None:
            self.by_scope = defaultdict(list)
            for budget in self.budgets.values():
                self.by_scope[budget.key].append(budget)
        return self.by_scope.get(key, [])


class _BatchState:
    """What one batch changes, kept in memory and written once in `flush`."""

    def __init__(self, projection: BudgetStatusProjection, conn: Connection):
        self.p = projection
        self.conn = conn
        self.orgs: dict[tuple[str, str], _Org] = {}
        self.budget_orgs: dict[tuple[str, str], tuple[str, str]] = {}  # (tenant, budget) → (tenant, org)
        self.changed_budgets: dict[tuple[str, str], dict | None] = {}
        self.spend_delta: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.spend_base: dict[tuple, tuple[int, int]] = {}
        self.spend_loaded: set[tuple] = set()
        self.alerted: dict[tuple[str, str, datetime], set[tuple[str, int]]] = {}
        self.alert_rows: dict[tuple, dict] = {}

    # budgets ------------------------------------------------------------------------
    def org(self, tenant_id: str, org_id: str) -> _Org:
        key = (tenant_id, org_id)
        org = self.orgs.get(key)
        if org is None:
            t = self.p.budgets
            rows = self.conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id)).mappings()
            org = self.orgs[key] = _Org({r["budget_id"]: _Budget(dict(r)) for r in rows})
        return org

    def _budget_org(self, tenant_id: str, budget_id: str) -> _Org | None:
        """The org holding this budget, whatever org the event names (ids are per tenant)."""
        key = self.budget_orgs.get((tenant_id, budget_id))
        if key is None:
            t = self.p.budgets
            org_id = self.conn.execute(
                select(t.c.org_id).where(t.c.tenant_id == tenant_id, t.c.budget_id == budget_id)
            ).scalar()
            if org_id is None:
                return None
            key = self.budget_orgs[(tenant_id, budget_id)] = (tenant_id, org_id)
        return self.org(*key)

    def budget_set(self, recorded: Recorded, event: BudgetCreated | BudgetUpdated) -> None:
        terms = event.budget
        old_org = self._budget_org(event.tenant_id, terms.budget_id)
        previous = old_org.budgets.pop(terms.budget_id, None) if old_org else None
        if old_org is not None:
            old_org.by_scope = None
        row = _budget_row(event.tenant_id, event.org_id, terms, recorded, event.actor, previous)
        org = self.org(event.tenant_id, event.org_id)
        budget = _Budget(row)
        org.budgets[terms.budget_id] = budget
        org.by_scope = None
        self.budget_orgs[(event.tenant_id, terms.budget_id)] = (event.tenant_id, event.org_id)
        self.changed_budgets[(event.tenant_id, terms.budget_id)] = row
        self.evaluate(budget, event.recorded_at, recorded)

    def budget_deleted(self, event: BudgetDeleted) -> None:
        org = self._budget_org(event.tenant_id, event.budget_id)
        if org is not None and org.budgets.pop(event.budget_id, None) is not None:
            org.by_scope = None
        self.budget_orgs.pop((event.tenant_id, event.budget_id), None)
        self.changed_budgets[(event.tenant_id, event.budget_id)] = None

    # spend --------------------------------------------------------------------------
    def count(self, recorded: Recorded, tenant_id: str, org_id: str, changes: list[tuple[Usage, int]]) -> None:
        touched: dict[tuple, None] = {}
        for usage, sign in changes:
            cost, credits = sign * to_nanos(usage.cost_usd), sign * to_nanos(usage.credits)
            starts = _period_starts(usage.occurred_at.astimezone(timezone.utc).date())
            for scope, scope_id in usage_scopes(usage):
                for period, start in starts:
                    key = (tenant_id, org_id, scope, scope_id, period, start)
                    delta = self.spend_delta[key]
                    delta[0] += cost
                    delta[1] += credits
                    delta[2] += sign
                    touched[(scope, scope_id, period, start)] = None
        org = self.org(tenant_id, org_id)
        if not org.budgets:
            return
        for scope, scope_id, period, start in touched:
            for budget in org.matching((scope, scope_id)):
                if budget.row["period"] == period:
                    self.evaluate(budget, start, recorded, period_start_naive=True)

    def used(self, budget: _Budget, period_start: datetime) -> int:
        """Spend of the budget's scope in the period (nanos of its unit): stored + this batch."""
        row = budget.row
        key = (row["tenant_id"], row["org_id"], row["scope"], row["scope_id"], row["period"], period_start)
        loaded = key[:2] + key[4:]
        if loaded not in self.spend_loaded:
            t = self.p.spend
            for r in self.conn.execute(
                select(t.c.scope, t.c.scope_id, t.c.cost_nanos, t.c.credits_nanos).where(
                    t.c.tenant_id == key[0], t.c.org_id == key[1], t.c.period == key[4], t.c.period_start == key[5]
                )
            ):
                self.spend_base[key[:2] + (r.scope, r.scope_id) + key[4:]] = (r.cost_nanos, r.credits_nanos)
            self.spend_loaded.add(loaded)
        base = self.spend_base.get(key, (0, 0))
        delta = self.spend_delta.get(key, (0, 0, 0))
        index = 0 if row["unit"] == "usd" else 1
        return base[index] + delta[index]

    # alerts -------------------------------------------------------------------------
    def evaluate(self, budget: _Budget, moment: datetime, recorded: Recorded, period_start_naive: bool = False) -> None:
        """Open an alert for every threshold the budget's spend has reached in that period
        and that has no alert yet."""
        row = budget.row
        if not row["enabled"]:
            return
        if period_start_naive:
            start = moment
        else:
            start = naive_utc(period_bounds(row["period"], moment)[0])
        thresholds = thresholds_from_text(row["alert_thresholds"])
        if not thresholds:
            return
        used = self.used(budget, start)
        limit = row["limit_nanos"]
        if used * 100 < thresholds[0] * limit:  # thresholds are sorted
            return
        alerted = self._alerted(row["tenant_id"], row["org_id"], start)
        for threshold in thresholds:
            bp = to_basis_points(threshold)
            if used * 100 < threshold * limit or (row["budget_id"], bp) in alerted:
                continue
            alerted.add((row["budget_id"], bp))
            start_aware, end_aware = period_bounds(row["period"], _aware(start))
            key = (row["tenant_id"], row["budget_id"], start, bp)
            self.alert_rows[key] = {
                "tenant_id": row["tenant_id"],
                "budget_id": row["budget_id"],
                "period_start": start,
                "threshold_bp": bp,
                "alert_id": str(alert_stream(row["tenant_id"], row["budget_id"], start_aware, threshold)),
                "org_id": row["org_id"],
                "budget_name": row["name"],
                "period": row["period"],
                "period_end": naive_utc(end_aware),
                "unit": row["unit"],
                "percentage_bp": to_basis_points(percentage(Decimal(used), Decimal(limit))),
                "used_nanos": used,
                "limit_nanos": limit,
                "crossed_at": naive_utc(recorded.event.recorded_at),
                "position": recorded.position,
                "webhook_url": row["webhook_url"],
                "raised": False,
                "raised_position": None,
                "delivery_status": "pending" if row["webhook_url"] else "none",
                "attempts": 0,
                "last_attempt_at": None,
                "next_attempt_at": None,
                "last_status_code": None,
                "last_error": None,
                "delivered_at": None,
            }

    def _alerted(self, tenant_id: str, org_id: str, period_start: datetime) -> set[tuple[str, int]]:
        key = (tenant_id, org_id, period_start)
        found = self.alerted.get(key)
        if found is None:
            t = self.p.alerts
            found = self.alerted[key] = {
                (r.budget_id, r.threshold_bp)
                for r in self.conn.execute(
                    select(t.c.budget_id, t.c.threshold_bp).where(
                        t.c.tenant_id == tenant_id, t.c.org_id == org_id, t.c.period_start == period_start
                    )
                )
            }
        return found

    def _alert_row(self, tenant_id: str, alert_id: str) -> dict | None:
        for row in self.alert_rows.values():
            if row["alert_id"] == alert_id:
                return row
        t = self.p.alerts
        found = self.conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.alert_id == alert_id)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        self.alert_rows[(row["tenant_id"], row["budget_id"], row["period_start"], row["threshold_bp"])] = row
        return row

    def alert_raised(self, recorded: Recorded, event: BudgetThresholdCrossed) -> None:
        row = self._alert_row(event.tenant_id, event.alert_id)
        if row is None:  # raised from terms this read model did not see cross: trust the ledger
            start = naive_utc(event.period_start)
            row = {
                "tenant_id": event.tenant_id,
                "budget_id": event.budget_id,
                "period_start": start,
                "threshold_bp": to_basis_points(event.threshold),
                "alert_id": event.alert_id,
                "org_id": event.org_id,
                "budget_name": event.budget_name,
                "period": event.period,
                "period_end": naive_utc(event.period_end),
                "unit": event.unit,
                "percentage_bp": to_basis_points(event.percentage),
                "used_nanos": to_nanos(event.used),
                "limit_nanos": to_nanos(event.limit),
                "crossed_at": naive_utc(event.crossed_at),
                "position": recorded.position,
                "webhook_url": event.webhook_url,
                "attempts": 0,
                "last_attempt_at": None,
                "next_attempt_at": None,
                "last_status_code": None,
                "last_error": None,
                "delivered_at": None,
            }
            self.alert_rows[(event.tenant_id, event.budget_id, start, row["threshold_bp"])] = row
            self._alerted(event.tenant_id, event.org_id, start).add((event.budget_id, row["threshold_bp"]))
        row["raised"] = True
        row["raised_position"] = recorded.position
        row["webhook_url"] = event.webhook_url
        if row.get("delivery_status") not in ("delivered", "failed", "retrying"):
            row["delivery_status"] = "pending" if event.webhook_url else "none"

    def delivery(self, recorded: Recorded, event: BudgetAlertDelivered | BudgetAlertDeliveryFailed) -> None:
        row = self._alert_row(event.tenant_id, event.alert_id)
        if row is None:
            return
        row["attempts"] = max(row["attempts"], event.attempt)
        row["last_attempt_at"] = naive_utc(event.recorded_at)
        if isinstance(event, BudgetAlertDelivered):
            row.update(delivery_status="delivered", delivered_at=naive_utc(event.recorded_at),
                       next_attempt_at=None, last_status_code=event.status_code, last_error=None)
        elif row["delivery_status"] != "delivered":
            row.update(
                delivery_status="retrying" if event.next_attempt_at else "failed",
                next_attempt_at=naive_utc(event.next_attempt_at) if event.next_attempt_at else None,
                last_status_code=event.status_code,
                last_error=event.error[:2000],
            )

    # writing ------------------------------------------------------------------------
    def flush(self) -> None:
        rows = [
            dict(zip(SPEND_KEYS, key), cost_nanos=d[0], credits_nanos=d[1], events=d[2])
            for key, d in self.spend_delta.items()
            if d[0] or d[1] or d[2]
        ]
        upsert_add(self.conn, self.p.spend, rows, SPEND_KEYS, ("cost_nanos", "credits_nanos", "events"))
        # a spend row whose events were all voided is removed, as a replay (which nets the
        # record and the void inside one batch) never writes it: rebuilds equal live tables
        s = self.p.spend
        for key, d in self.spend_delta.items():
            if d[2] < 0:
                self.conn.execute(delete(s).where(
                    *(s.c[name] == value for name, value in zip(SPEND_KEYS, key)),
                    s.c.events == 0, s.c.cost_nanos == 0, s.c.credits_nanos == 0,
                ))
        t = self.p.budgets
        for (tenant_id, budget_id), row in self.changed_budgets.items():
            if row is None:
                self.conn.execute(delete(t).where(and_(t.c.tenant_id == tenant_id, t.c.budget_id == budget_id)))
        upsert_replace(self.conn, t, [r for r in self.changed_budgets.values() if r is not None], ["tenant_id", "budget_id"])
        upsert_replace(
            self.conn, self.p.alerts, list(self.alert_rows.values()), ["tenant_id", "budget_id", "period_start", "threshold_bp"]
        )


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc)


def _budget_row(
    tenant_id: str, org_id: str, terms: BudgetTerms, recorded: Recorded, actor: str, previous: _Budget | None
) -> dict:
    at = naive_utc(recorded.event.recorded_at)
    return {
        "tenant_id": tenant_id,
        "budget_id": terms.budget_id,
        "org_id": org_id,
        "name": terms.name,
        "scope": terms.scope,
        "scope_id": terms.scope_id or "",
        "unit": terms.unit,
        "limit_nanos": to_nanos(terms.limit),
        "period": terms.period,
        "on_exceed": terms.on_exceed,
        "alert_thresholds": thresholds_text(terms.alert_thresholds),
        "enabled": terms.enabled,
        "webhook_url": terms.webhook_url,
        "downgrade_model": terms.downgrade_model,
        "created_at": previous.row["created_at"] if previous and isinstance(recorded.event, BudgetUpdated) else at,
        "created_by": previous.row["created_by"] if previous and isinstance(recorded.event, BudgetUpdated) else actor,
        "updated_at": at,
        "updated_by": actor,
        "position": recorded.position,
    }


def budget_terms(row) -> BudgetTerms:
    """A budgets-table row back as terms (for answers)."""
    return BudgetTerms(
        budget_id=row["budget_id"],
        name=row["name"],
        scope=row["scope"],
        scope_id=row["scope_id"] or None,
        unit=row["unit"],
        limit=from_nanos(row["limit_nanos"]),
        period=row["period"],
        on_exceed=row["on_exceed"],
        alert_thresholds=thresholds_from_text(row["alert_thresholds"]),
        enabled=bool(row["enabled"]),
        webhook_url=row["webhook_url"],
        downgrade_model=row["downgrade_model"],
    )
