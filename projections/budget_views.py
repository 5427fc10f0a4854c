"""The JSON of budgets, their status, the check's answer and threshold alerts: one builder
per resource, shared by the API and the alert webhooks."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Sequence

from ledger.budgets.events import BudgetTerms
from ledger.budgets.rules import Decision, Finding, budget_status, rounded_percentage
from ledger.budgets.webhooks import shown_error, shown_url
from projections.budget_rows import budget_terms, from_basis_points
from projections.usage import from_nanos
from projections.wire import money, number, timestamp


def budget_json(terms: BudgetTerms, row: dict) -> dict:
    """A budget: its terms, plus who owns and wrote it (`row`: tenant_id, org_id and the
    created/updated fields; times may be missing)."""
    usd = terms.unit == "usd"
    return {
        "id": terms.budget_id,
        "name": terms.name,
        "scope": terms.scope,
        "scope_id": terms.scope_id,
        "limit_usd": money(terms.limit) if usd else None,
        "limit_credits": None if usd else money(terms.limit),
        "unit": terms.unit,
        "period": terms.period,
        "on_exceed": terms.on_exceed,
        "alert_thresholds": [number(t) for t in terms.alert_thresholds],
        "enabled": terms.enabled,
        "webhook_url": shown_url(terms.webhook_url),
        "downgrade_model": terms.downgrade_model,
        "tenant_id": row["tenant_id"],
        "org_id": row["org_id"],
        "created_at": timestamp(row.get("created_at")),
        "created_by": row.get("created_by"),
        "updated_at": timestamp(row.get("updated_at")),
        "updated_by": row.get("updated_by"),
    }


def stored_budget_json(row: dict) -> dict:
    """A budget from its budgets-table row."""
    return budget_json(budget_terms(row), row)


def status_json(
    row: dict, start: datetime, end: datetime, used_nanos: int, crossed_bp: Sequence[int], now: datetime
) -> dict:
    """Spend of the budget (`row`, a budgets-table row) in the period [start, end)."""
    limit = row["limit_nanos"]
    return {
        "budget_id": row["budget_id"],
        "budget_name": row["name"],
        "period": row["period"],
        "period_start": timestamp(start),
        "period_end": timestamp(end),
        "unit": row["unit"],
        "used": money(from_nanos(used_nanos)),
        "limit": money(from_nanos(limit)),
        "remaining": money(from_nanos(max(limit - used_nanos, 0))),
        "percentage": number(rounded_percentage(used_nanos, limit)),
        "status": budget_status(used_nanos, limit, budget_terms(row).alert_thresholds),
        "thresholds_crossed": [number(from_basis_points(t)) for t in crossed_bp],
        "as_of": timestamp(now),
    }


def finding_json(finding: Finding) -> dict:
    """A budget the request does not fit, as the check names it (amounts are Decimals)."""
    budget = finding.budget
    unit = "usd" if budget.unit == "usd" else "credits"
    return {
        "budget_id": budget.budget_id,
        "budget_name": budget.name,
        f"used_{unit}": money(Decimal(budget.used)),
        f"held_{unit}": money(Decimal(budget.held)),
        f"limit_{unit}": money(Decimal(budget.limit)),
        "percentage": number(budget.percentage),
        "message": finding.message,
    }


def decision_json(decision: Decision) -> dict:
    """The check's answer: `{"allowed": true}` when no budget is exceeded; otherwise the
    deciding budget's fields (block, downgrade) and the exceeded warn budgets."""
    if decision.action is None:
        return {"allowed": True}
    warnings = [finding_json(f) for f in decision.warnings]
    if decision.action == "block":
        return {"allowed": False, "action": "block", **finding_json(decision.deciding)}
    if decision.action == "downgrade":
        answer = {
            "allowed": True,
            "action": "downgrade",
            "downgrade_model": decision.downgrade_model,
            **finding_json(decision.deciding),
        }
        return {**answer, "warnings": warnings} if warnings else answer
    return {"allowed": True, "action": "warn", "warnings": warnings}


def alert_json(row: dict) -> dict:
    """A threshold alert (a budget_alerts row): which budget crossed which threshold in
    which period, at what spend. The API answers it; the webhook sends it."""
    return {
        "alert_id": row["alert_id"],
        "budget_id": row["budget_id"],
        "budget_name": row["budget_name"],
        "threshold": number(from_basis_points(row["threshold_bp"])),
        "percentage": number(from_basis_points(row["percentage_bp"])),
        "unit": row["unit"],
        "used": money(from_nanos(row["used_nanos"])),
        "limit": money(from_nanos(row["limit_nanos"])),
        "period": row["period"],
        "period_start": timestamp(row["period_start"]),
        "period_end": timestamp(row["period_end"]),
        "created_at": timestamp(row["crossed_at"]),
    }


def alert_delivery_json(row: dict) -> dict:
    """Whether the alert is raised and how its webhook delivery stands."""
    return {
        "raised": bool(row["raised"]),
        "delivery_status": row["delivery_status"],
        "delivery_attempts": row["attempts"],
        "last_attempt_at": timestamp(row["last_attempt_at"]),
        "next_attempt_at": timestamp(row["next_attempt_at"]),
        "delivered_at": timestamp(row["delivered_at"]),
        "last_error": shown_error(row["last_error"]),
    }
