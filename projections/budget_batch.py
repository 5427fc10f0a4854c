"""What one batch of events changes in the budget_status read model, kept in memory and
written once (`BudgetBatch.flush`), so a batch costs a few queries however many events
it holds. Threshold crossings are decided by `ledger.budgets.rules`, event by event in
ledger order, so the result does not depend on how events were batched."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Protocol

from sqlalchemy import Connection, Table, and_, delete, select

from ledger.budgets.events import (
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    BudgetCreated,
    BudgetDeleted,
    BudgetThresholdCrossed,
    BudgetUpdated,
)
from ledger.budgets.rules import period_bounds, period_starts, threshold_crossed, usage_scopes
from ledger.store import Recorded
from ledger.usage.events import Usage
from projections.budget_rows import budget_row, crossing_row, raised_row, thresholds_from_text, to_basis_points
from projections.sql import upsert_add, upsert_replace
from projections.usage import naive_utc, to_nanos


SPEND_KEYS = ("tenant_id", "org_id", "scope", "scope_id", "period", "period_start")
ALERT_KEYS = ("tenant_id", "budget_id", "period_start", "threshold_bp")


@lru_cache(maxsize=4096)
def day_period_starts(day: date) -> tuple[tuple[str, datetime], ...]:
    """(period, start as naive UTC) of every budget period containing the UTC day."""
    moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return tuple((period, naive_utc(start)) for period, start in period_starts(moment).items())



class BudgetTables(Protocol):
    """The budget_status tables a batch writes (the projection that owns them)."""

    budgets: Table
    spend: Table
    alerts: Table

@dataclass
class OrgBudgets:
    """An org's budgets (budgets-table rows by id), indexed by (scope, scope_id) on demand."""

    budgets: dict[str, dict] = field(default_factory=dict)
    by_scope: dict[tuple[str, str], list[dict]] | None = None

    def matching(self, key: tuple[str, str]) -> list[dict]:
        if self.by_scope is None:
            self.by_scope = defaultdict(list)
            for row in self.budgets.values():
                self.by_scope[(row["scope"], row["scope_id"])].append(row)
        return self.by_scope.get(key, [])


class BudgetBatch:
    """The read model's changes from one batch."""

    def __init__(self, projection: "BudgetTables", conn: Connection):
        self.p = projection
        self.conn = conn
        self.orgs: dict[tuple[str, str], OrgBudgets] = {}
        self.budget_orgs: dict[tuple[str, str], tuple[str, str]] = {}  # (tenant, budget) → (tenant, org)
        self.changed_budgets: dict[tuple[str, str], dict | None] = {}
        self.spend_delta: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.spend_base: dict[tuple, tuple[int, int]] = {}
        self.spend_loaded: set[tuple] = set()
        self.pending: dict[tuple, list[int]] = {}  # (tenant, org, scopes, UTC day) -> spend of orgs without budgets
        self.alerted: dict[tuple[str, str, datetime], set[tuple[str, int]]] = {}
        self.alert_rows: dict[tuple, dict] = {}
        self.gone_alerts: set[tuple[str, str]] = set()  # (tenant, budget) whose alerts leave

    # budgets ------------------------------------------------------------------------
    def org(self, tenant_id: str, org_id: str) -> OrgBudgets:
        key = (tenant_id, org_id)
        org = self.orgs.get(key)
        if org is None:
            t = self.p.budgets
            rows = self.conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id)).mappings()
            org = self.orgs[key] = OrgBudgets({r["budget_id"]: dict(r) for r in rows})
        return org

    def budget_org(self, tenant_id: str, budget_id: str) -> OrgBudgets | None:
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
        budget_id = event.budget.budget_id
        old_org = self.budget_org(event.tenant_id, budget_id)
        previous = old_org.budgets.pop(budget_id, None) if old_org else None
        if old_org is not None:
            old_org.by_scope = None
        row = budget_row(event.tenant_id, event.org_id, event, recorded, previous)
        org = self.org(event.tenant_id, event.org_id)
        org.budgets[budget_id] = row
        org.by_scope = None
        self.budget_orgs[(event.tenant_id, budget_id)] = (event.tenant_id, event.org_id)
        self.changed_budgets[(event.tenant_id, budget_id)] = row
        self.evaluate(row, naive_utc(period_bounds(row["period"], event.recorded_at)[0]), recorded)

    def budget_deleted(self, event: BudgetDeleted) -> None:
        org = self.budget_org(event.tenant_id, event.budget_id)
        if org is not None and org.budgets.pop(event.budget_id, None) is not None:
            org.by_scope = None
        self.budget_orgs.pop((event.tenant_id, event.budget_id), None)
        self.changed_budgets[(event.tenant_id, event.budget_id)] = None
        # its alerts belonged to this incarnation (they stay in the ledger)
        self.gone_alerts.add((event.tenant_id, event.budget_id))
        for key in [k for k in self.alert_rows if k[:2] == (event.tenant_id, event.budget_id)]:
            del self.alert_rows[key]
        for alerted in self.alerted.values():
            alerted.difference_update({a for a in alerted if a[0] == event.budget_id})

    # spend --------------------------------------------------------------------------
    def count(self, recorded: Recorded, tenant_id: str, org_id: str, changes: list[tuple[Usage, int]]) -> None:
        org = self.org(tenant_id, org_id)
        if not org.budgets:  # nothing to evaluate: sum per scope set and day, spread at the end
            for usage, sign in changes:
                key = (tenant_id, org_id, tuple(usage_scopes(usage)), usage.occurred_at.astimezone(timezone.utc).date())
                pending = self.pending.get(key)
                if pending is None:
                    pending = self.pending[key] = [0, 0, 0]
                pending[0] += sign * to_nanos(usage.cost_usd)
                pending[1] += sign * to_nanos(usage.credits)
                pending[2] += sign
            return
        touched: dict[tuple, None] = {}
        for usage, sign in changes:
            cost, credits = sign * to_nanos(usage.cost_usd), sign * to_nanos(usage.credits)
            starts = day_period_starts(usage.occurred_at.astimezone(timezone.utc).date())
            for scope, scope_id in usage_scopes(usage):
                for period, start in starts:
                    key = (tenant_id, org_id, scope, scope_id, period, start)
                    delta = self.spend_delta[key]
                    delta[0] += cost
                    delta[1] += credits
                    delta[2] += sign
                    touched[(scope, scope_id, period, start)] = None
        for scope, scope_id, period, start in touched:
            for row in org.matching((scope, scope_id)):
                if row["period"] == period:
                    self.evaluate(row, start, recorded)

    def spread_pending(self) -> None:
        """Add the spend summed per scope set and day to every period's spend."""
        for (tenant_id, org_id, scopes, day), (cost, credits, events) in self.pending.items():
            starts = day_period_starts(day)
            for scope, scope_id in scopes:
                for period, start in starts:
                    delta = self.spend_delta[(tenant_id, org_id, scope, scope_id, period, start)]
                    delta[0] += cost
                    delta[1] += credits
                    delta[2] += events
        self.pending.clear()

    def used(self, budget: dict, period_start: datetime) -> int:
        """Spend of the budget's scope in the period (nanos of its unit): stored + this batch."""
        self.spread_pending()
        key = (budget["tenant_id"], budget["org_id"], budget["scope"], budget["scope_id"], budget["period"], period_start)
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
        index = 0 if budget["unit"] == "usd" else 1
        return base[index] + delta[index]

    # alerts -------------------------------------------------------------------------
    def evaluate(self, budget: dict, start: datetime, recorded: Recorded) -> None:
        """Open an alert for every threshold the budget's spend has crossed in the period
        starting at `start` (naive UTC) and that has no alert yet."""
        if not budget["enabled"]:
            return
        thresholds = thresholds_from_text(budget["alert_thresholds"])
        if not thresholds:
            return
        used, limit = self.used(budget, start), budget["limit_nanos"]
        if not threshold_crossed(used, limit, thresholds[0]):  # thresholds are sorted
            return
        alerted = self.alerted_in(budget["tenant_id"], budget["org_id"], start)
        for threshold in thresholds:
            bp = to_basis_points(threshold)
            if not threshold_crossed(used, limit, threshold) or (budget["budget_id"], bp) in alerted:
                continue
            alerted.add((budget["budget_id"], bp))
            self.alert_rows[(budget["tenant_id"], budget["budget_id"], start, bp)] = crossing_row(
                budget, start, threshold, used, recorded
            )

    def alerted_in(self, tenant_id: str, org_id: str, period_start: datetime) -> set[tuple[str, int]]:
        """(budget_id, threshold_bp) of the org's alerts in the period: stored and this batch."""
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

    def alert_row(self, tenant_id: str, alert_id: str) -> dict | None:
        for row in self.alert_rows.values():
            if row["alert_id"] == alert_id:
                return row
        t = self.p.alerts
        found = self.conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.alert_id == alert_id)).mappings().first()
        if found is None or (tenant_id, found["budget_id"]) in self.gone_alerts:
            return None  # unknown, or of an incarnation deleted in this batch
        row = dict(found)
        self.alert_rows[tuple(row[k] for k in ALERT_KEYS)] = row
        return row

    def alert_raised(self, recorded: Recorded, event: BudgetThresholdCrossed) -> None:
        row = self.alert_row(event.tenant_id, event.alert_id)
        if row is None and self.incarnation_of(event.tenant_id, event.budget_id) != event.incarnation:
            return  # raised late for a deleted incarnation
        if row is None:  # raised from terms this read model did not see cross: trust the ledger
            row = raised_row(event, recorded)
            self.alert_rows[tuple(row[k] for k in ALERT_KEYS)] = row
            self.alerted_in(event.tenant_id, event.org_id, row["period_start"]).add((event.budget_id, row["threshold_bp"]))
        row["raised"] = True
        row["raised_position"] = recorded.position
        row["webhook_url"] = event.webhook_url
        if row.get("delivery_status") not in ("delivered", "failed", "retrying"):
            row["delivery_status"] = "pending" if event.webhook_url else "none"

    def incarnation_of(self, tenant_id: str, budget_id: str) -> int | None:
        org = self.budget_org(tenant_id, budget_id)
        row = org.budgets.get(budget_id) if org is not None else None
        return None if row is None else row["incarnation"]

    def delivery(self, recorded: Recorded, event: BudgetAlertDelivered | BudgetAlertDeliveryFailed) -> None:
        row = self.alert_row(event.tenant_id, event.alert_id)
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
        self.spread_pending()
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
        a = self.p.alerts
        for tenant_id, budget_id in self.gone_alerts:
            self.conn.execute(delete(a).where(a.c.tenant_id == tenant_id, a.c.budget_id == budget_id))
        t = self.p.budgets
        for (tenant_id, budget_id), row in self.changed_budgets.items():
            if row is None:
                self.conn.execute(delete(t).where(and_(t.c.tenant_id == tenant_id, t.c.budget_id == budget_id)))
        upsert_replace(self.conn, t, [r for r in self.changed_budgets.values() if r is not None], ["tenant_id", "budget_id"])
        upsert_replace(self.conn, self.p.alerts, list(self.alert_rows.values()), list(ALERT_KEYS))
