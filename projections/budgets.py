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

from typing import Sequence

from sqlalchemy import BigInteger, Boolean, Column, Connection, DateTime, Index, Integer, MetaData, String, Table, Text

from ledger.budgets.events import (
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    BudgetCreated,
    BudgetDeleted,
    BudgetHoldCommitted,
    BudgetHoldExpired,
    BudgetHoldPlaced,
    BudgetHoldReleased,
    BudgetThresholdCrossed,
    BudgetUpdated,
)
from ledger.store import Recorded
from ledger.usage.events import UsageAmended, UsageRecorded, UsageVoided
from projections.budget_batch import BudgetBatch
from projections.budget_holds import HoldBatch, define_hold_tables
from projections.exact import ExactInt
from projections.framework import Projection


class BudgetStatusProjection(Projection):
    name = "budget_status"
    version = 8  # 3: alerts belong to a budget incarnation; 4: holds; 5: a usage replaces its hold's commit; 6: exact sums past 64 bits; 7: an index of each tenant's held holds; 8: hold amounts read by hold only (no index by budget)
    topics = tuple(
        event.__name__
        for event in (
            UsageRecorded,
            UsageVoided,
            UsageAmended,
            BudgetCreated,
            BudgetUpdated,
            BudgetDeleted,
            BudgetThresholdCrossed,
            BudgetAlertDelivered,
            BudgetAlertDeliveryFailed,
            BudgetHoldPlaced,
            BudgetHoldCommitted,
            BudgetHoldReleased,
            BudgetHoldExpired,
        )
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
            Column("incarnation", BigInteger, nullable=False, default=0),
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
            Column("cost_nanos", ExactInt(wide=True), nullable=False, default=0),
            Column("credits_nanos", ExactInt(wide=True), nullable=False, default=0),
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
            Column("incarnation", BigInteger, nullable=False, default=0),
            Column("org_id", String(64), nullable=False),
            Column("budget_name", String(200), nullable=False),
            Column("period", String(16), nullable=False),
            Column("period_end", DateTime, nullable=False),
            Column("unit", String(8), nullable=False),
            Column("percentage_bp", ExactInt(wide=True), nullable=False),
            Column("used_nanos", ExactInt(wide=True), nullable=False),
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
        self.holds, self.hold_amounts = define_hold_tables(metadata, prefix)

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        changes = BudgetBatch(self, conn)
        holds = HoldBatch(self.holds, self.hold_amounts, conn)
        settling = (BudgetHoldCommitted, BudgetHoldReleased, BudgetHoldExpired)
        holds.load(
            (e.tenant_id, e.usage.hold_id if isinstance(e, UsageRecorded) else e.hold_id)
            for e in (r.event for r in batch)
            if isinstance(e, settling) or (isinstance(e, UsageRecorded) and e.usage.hold_id)
        )
        for recorded in batch:
            event = recorded.event
            if isinstance(event, UsageRecorded):
                replaced = holds.replaced_spend(event.tenant_id, event.usage)
                changes.count(
                    recorded, event.tenant_id, event.org_id, [(event.usage, 1), *([(replaced, -1)] if replaced else [])]
                )
            elif isinstance(event, UsageVoided):
                changes.count(recorded, event.tenant_id, event.org_id, [(event.voided, -1)])
            elif isinstance(event, UsageAmended):
                changes.count(recorded, event.tenant_id, event.org_id, [(event.previous, -1), (event.current, 1)])
            elif isinstance(event, (BudgetCreated, BudgetUpdated)):
                changes.budget_set(recorded, event)
            elif isinstance(event, BudgetDeleted):
                changes.budget_deleted(event)
            elif isinstance(event, BudgetThresholdCrossed):
                changes.alert_raised(recorded, event)
            elif isinstance(event, (BudgetAlertDelivered, BudgetAlertDeliveryFailed)):
                changes.delivery(recorded, event)
            elif isinstance(event, BudgetHoldPlaced):
                holds.placed(recorded, event)
            elif isinstance(event, (BudgetHoldCommitted, BudgetHoldReleased, BudgetHoldExpired)):
                if isinstance(event, BudgetHoldCommitted) and event.via == "call" and holds.is_held(event):
                    changes.count(recorded, event.tenant_id, event.org_id, [(HoldBatch.spend_of(event), 1)])
                holds.settled(recorded, event)
        changes.flush()
        holds.flush()
