"""The rows of the budget_status read model, built from events and read back as terms.

Percentages and thresholds are stored as integer basis points (hundredths of a percent),
amounts as integer nanos of the budget's unit, times as naive UTC.
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Sequence

from ledger.budgets.commands import alert_stream
from ledger.budgets.events import BudgetCreated, BudgetTerms, BudgetThresholdCrossed, BudgetUpdated
from ledger.budgets.rules import as_utc, percentage, period_bounds
from ledger.store import Recorded
from projections.usage import from_nanos, naive_utc, to_nanos

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


def budget_row(
    tenant_id: str, org_id: str, event: BudgetCreated | BudgetUpdated, recorded: Recorded, previous: dict | None
) -> dict:
    """The budgets-table row of a created or updated budget (`previous`: its row before)."""
    terms = event.budget
    at = naive_utc(event.recorded_at)
    kept = previous if previous is not None and isinstance(event, BudgetUpdated) else None
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
        "created_at": kept["created_at"] if kept else at,
        "created_by": kept["created_by"] if kept else event.actor,
        "updated_at": at,
        "updated_by": event.actor,
        "position": recorded.position,
        "incarnation": incarnation(recorded) if isinstance(event, BudgetCreated) else (previous or {}).get("incarnation", 0),
    }


def incarnation(created: Recorded) -> int:
    """0 for a budget id's first creation; the BudgetCreated's position when it recreates a
    deleted budget (its stream's later version), so alerts belong to one incarnation."""
    return created.position if created.version > 1 else 0


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


_UNDELIVERED = {
    "attempts": 0,
    "last_attempt_at": None,
    "next_attempt_at": None,
    "last_status_code": None,
    "last_error": None,
    "delivered_at": None,
}


def crossing_row(budget: dict, start: datetime, threshold: Decimal, used: int, recorded: Recorded) -> dict:
    """A new, not yet raised alert: `budget` (a budgets-table row) reached `threshold` in
    the period starting at `start` (naive UTC) with the event at `recorded`."""
    period_start, period_end = period_bounds(budget["period"], as_utc(start))
    limit = budget["limit_nanos"]
    return {
        "tenant_id": budget["tenant_id"],
        "budget_id": budget["budget_id"],
        "period_start": start,
        "threshold_bp": to_basis_points(threshold),
        "alert_id": str(alert_stream(budget["tenant_id"], budget["budget_id"], period_start, threshold, budget["incarnation"])),
        "incarnation": budget["incarnation"],
        "org_id": budget["org_id"],
        "budget_name": budget["name"],
        "period": budget["period"],
        "period_end": naive_utc(period_end),
        "unit": budget["unit"],
        "percentage_bp": to_basis_points(percentage(used, limit)),
        "used_nanos": used,
        "limit_nanos": limit,
        "crossed_at": naive_utc(recorded.event.recorded_at),
        "position": recorded.position,
        "webhook_url": budget["webhook_url"],
        "raised": False,
        "raised_position": None,
        "delivery_status": "pending" if budget["webhook_url"] else "none",
        **_UNDELIVERED,
    }


def raised_row(event: BudgetThresholdCrossed, recorded: Recorded) -> dict:
    """The alert row of a raised crossing this read model did not see cross itself (the
    terms it was raised from are trusted: the ledger says it happened)."""
    return {
        "tenant_id": event.tenant_id,
        "budget_id": event.budget_id,
        "period_start": naive_utc(event.period_start),
        "threshold_bp": to_basis_points(event.threshold),
        "alert_id": event.alert_id,
        "incarnation": event.incarnation,
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
        **_UNDELIVERED,
    }
