"""Cost controls on the write side: checking a budget's terms, and the commands that
append budget, pricing and alert events. The budget rules themselves (periods, scopes,
exceeded, the check's decision) are pure functions in `ledger.budgets.rules`.

Budgets are event streams (`stream_id("budget", tenant, budget_id)`), so a duplicate id is
a stream conflict. A threshold alert lives in the stream of its (tenant, budget, period
start, threshold) at version 1, so it can be raised only once however many workers or
replays try; each delivery attempt of an alert is the next version of its delivery stream.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from uuid import UUID, uuid4

import msgspec

from ledger.errors import Conflict, Invalid, NotFound
from ledger.budgets.events import (
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    BudgetCreated,
    BudgetDeleted,
    BudgetTerms,
    BudgetThresholdCrossed,
    BudgetUpdated,
)
from ledger.pricing.events import ModelPriceSet
from ledger.identity.rules import check_id
from ledger.budgets.rules import ON_EXCEED, PERIODS, SCOPES, UNITS, as_utc, sorted_thresholds
from ledger.budgets.webhooks import kept_url
from ledger.store import StreamConflict, stream_id

if TYPE_CHECKING:
    from ledger.actor import Actor
    from ledger.journal import Journal

DEFAULT_THRESHOLDS = (Decimal(50), Decimal(80), Decimal(100))
MAX_THRESHOLDS = 20
MAX_LIMIT = Decimal(10) ** 9  # × 10^9 nano-units still fits a 64-bit integer
EDITABLE = (
    "name", "scope", "scope_id", "unit", "limit", "period", "on_exceed", "alert_thresholds",
    "enabled", "webhook_url", "downgrade_model",
)
_SCOPE_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


# streams ------------------------------------------------------------------------------
def alert_stream(tenant_id: str, budget_id: str, period_start: datetime, threshold: Decimal, incarnation: int = 0) -> UUID:
    parts = [tenant_id, budget_id, as_utc(period_start).isoformat(), str(threshold.normalize())]
    return stream_id("budget-alert", *parts, *([str(incarnation)] if incarnation else []))


def delivery_stream(alert_id: str) -> UUID:
    return stream_id("budget-alert-delivery", alert_id)


def budget_stream(tenant_id: str, budget_id: str) -> UUID:
    return stream_id("budget", tenant_id, budget_id)


# rules --------------------------------------------------------------------------------
def _invalid(field: str, message: str) -> Invalid:
    return Invalid("VALIDATION_FAILED", f"{field} {message}", field=field)


def _decimal(value: Any, field: str) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise _invalid(field, "must be a number") from None
    if not number.is_finite():
        raise _invalid(field, "must be a finite number")
    return number


def check_terms(terms: dict[str, Any], org_id: str) -> BudgetTerms:
    """Normalize and check a budget's terms; Invalid (422) naming the field otherwise."""
    budget_id = check_id("id", terms.get("budget_id") or "")
    name = (terms.get("name") or "").strip()
    if not 1 <= len(name) <= 200:
        raise _invalid("name", "must be 1-200 characters")
    scope = terms.get("scope") or "organization"
    if scope not in SCOPES:
        raise _invalid("scope", f"must be one of {', '.join(SCOPES)}")
    scope_id = terms.get("scope_id") or None
    if scope == "organization":
        if scope_id not in (None, org_id):
            raise _invalid("scope_id", "of an organization budget must be empty or the budget's organization")
        scope_id = None
    elif scope_id is None or not _SCOPE_ID.match(scope_id):
        raise _invalid("scope_id", f"is required for scope {scope} (1-128 characters of letters, digits, . _ : @ -)")
    unit = terms.get("unit") or "usd"
    if unit not in UNITS:
        raise _invalid("unit", f"must be one of {', '.join(UNITS)}")
    limit_field = "limit_usd" if unit == "usd" else "limit_credits"
    if terms.get("limit") is None:
        raise _invalid(limit_field, f"is required for a budget in {unit}")
    limit = _decimal(terms["limit"], limit_field)
    if not Decimal(0) < limit < MAX_LIMIT or limit != limit.quantize(Decimal("1e-9")):
        raise _invalid(limit_field, "must be above 0, below 10^9, with at most 9 decimals")
    period = terms.get("period")
    if period not in PERIODS:
        raise _invalid("period", f"must be one of {', '.join(PERIODS)}")
    on_exceed = terms.get("on_exceed") or "warn"
    if on_exceed not in ON_EXCEED:
        raise _invalid("on_exceed", f"must be one of {', '.join(ON_EXCEED)}")
    downgrade_model = terms.get("downgrade_model") or None
    if on_exceed == "downgrade" and not downgrade_model:
        raise _invalid("downgrade_model", "is required when on_exceed is downgrade")
    if downgrade_model is not None and len(downgrade_model) > 256:
        raise _invalid("downgrade_model", "must be at most 256 characters")
    raw_thresholds = terms.get("alert_thresholds")
    thresholds = DEFAULT_THRESHOLDS if raw_thresholds is None else tuple(
        _decimal(t, "alert_thresholds") for t in raw_thresholds
    )
    if len(thresholds) > MAX_THRESHOLDS:
        raise _invalid("alert_thresholds", f"may hold at most {MAX_THRESHOLDS} values")
    for t in thresholds:
        if not Decimal(0) < t <= Decimal(1000) or t != t.quantize(Decimal("0.01")):
            raise _invalid("alert_thresholds", "values must be percentages above 0 and at most 1000, with at most 2 decimals")
    thresholds = sorted_thresholds(thresholds)
    webhook_url = terms.get("webhook_url") or None
    if webhook_url is not None:
        parsed = urlparse(webhook_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or len(webhook_url) > 2048:
            raise _invalid("webhook_url", "must be an http(s) URL of at most 2048 characters")
        if "@" in parsed.netloc:  # the URL is kept in the ledger and its exports: no credentials in it
            raise _invalid("webhook_url", "must not carry credentials (user:password@); alerts are signed instead")
    enabled = terms.get("enabled")
    return BudgetTerms(
        budget_id=budget_id,
        name=name,
        scope=scope,
        scope_id=scope_id,
        unit=unit,
        limit=limit,
        period=period,
        on_exceed=on_exceed,
        alert_thresholds=thresholds,
        enabled=True if enabled is None else bool(enabled),
        webhook_url=webhook_url,
        downgrade_model=downgrade_model,
    )


def resolve_limit(fields: dict[str, Any], current_unit: str | None = None) -> dict[str, Any]:
    """Turn the API's limit_usd / limit_credits into the unit and limit of the terms."""
    fields = dict(fields)
    usd, credits = fields.pop("limit_usd", None), fields.pop("limit_credits", None)
    unit = fields.get("unit") or ("credits" if credits is not None and usd is None else None) or current_unit or "usd"
    if unit == "usd" and credits is not None:
        raise _invalid("limit_credits", "is only for budgets in credits (unit credits)")
    if unit == "credits" and usd is not None:
        raise _invalid("limit_usd", "is only for budgets in usd (unit usd)")
    fields["unit"] = unit
    limit = usd if unit == "usd" else credits
    if limit is not None:
        fields["limit"] = limit
    return fields


@dataclass(frozen=True)
class StoredBudget:
    """A budget as its event stream says it is now."""

    tenant_id: str
    org_id: str
    terms: BudgetTerms
    version: int


# commands -----------------------------------------------------------------------------
class CostControls:
    """Commands of the cost controls: prices, budgets, threshold alerts and their delivery."""

    def __init__(self, journal: "Journal"):
        self.journal = journal
        self.store = journal.store

    # pricing ---------------------------------------------------------------------------
    def set_model_price(
        self, provider: str, model: str, input_per_1k: Decimal, output_per_1k: Decimal, effective_from: datetime, actor: str,
        cached_input_per_1m: Decimal | None = None, cache_write_input_per_1m: Decimal | None = None,
    ) -> int:
        provider, model = (provider or "").strip().lower(), (model or "").strip().lower()
        if not 1 <= len(provider) <= 128:
            raise _invalid("provider", "must be 1-128 characters")
        if not 1 <= len(model) <= 256:
            raise _invalid("model", "must be 1-256 characters")
        rates = (
            ("input_per_1k", input_per_1k), ("output_per_1k", output_per_1k),
            ("cached_input_per_1m", cached_input_per_1m), ("cache_write_input_per_1m", cache_write_input_per_1m),
        )
        for field, value in rates:
            if value is None and field.endswith("_per_1m"):
                continue
            value = _decimal(value, field)
            if not Decimal(0) <= value < Decimal(10) ** 6 or value != value.quantize(Decimal("1e-9")):
                raise _invalid(field, "must be ≥ 0, below 1,000,000, with at most 9 decimals")
        if effective_from.tzinfo is None:
            raise _invalid("effective_from", "needs a time zone offset")
        event = ModelPriceSet(
            tenant_id="",
            recorded_at=self.journal.now,
            actor=actor,
            provider=provider,
            model=model,
            input_per_1k=_decimal(input_per_1k, "input_per_1k"),
            output_per_1k=_decimal(output_per_1k, "output_per_1k"),
            effective_from=effective_from.astimezone(timezone.utc),
            cached_input_per_1m=None if cached_input_per_1m is None else _decimal(cached_input_per_1m, "cached_input_per_1m"),
            cache_write_input_per_1m=(
                None if cache_write_input_per_1m is None else _decimal(cache_write_input_per_1m, "cache_write_input_per_1m")
            ),
        )
        return self.store.append_to_stream(uuid4(), event, 0)

    # budgets ---------------------------------------------------------------------------
    def find_budget(self, tenant_id: str, budget_id: str) -> tuple[StoredBudget | None, int]:
        """(the budget, or None when unknown or deleted; the stream's version)."""
        budget: StoredBudget | None = None
        version = 0
        for recorded in self.store.stream(budget_stream(tenant_id, budget_id)):
            event, version = recorded.event, recorded.version
            if isinstance(event, (BudgetCreated, BudgetUpdated)):
                budget = StoredBudget(event.tenant_id, event.org_id, event.budget, version)
            elif isinstance(event, BudgetDeleted):
                budget = None
        return budget, version

    def require_budget(self, tenant_id: str, budget_id: str) -> StoredBudget:
        budget, _ = self.find_budget(tenant_id, budget_id)
        if budget is None:
            raise NotFound("BUDGET_NOT_FOUND", f"Budget {budget_id} not found")
        return budget

    def create_budget(self, actor: "Actor", author: str, terms: dict[str, Any]) -> tuple[BudgetTerms, int]:
        """`terms` as the API takes them (budget_id, name, ..., limit_usd or limit_credits)."""
        budget = check_terms(resolve_limit(terms), actor.org_id)
        existing, version = self.find_budget(actor.tenant_id, budget.budget_id)
        if existing is not None:
            raise Conflict("BUDGET_EXISTS", f"Budget {budget.budget_id} already exists")
        event = BudgetCreated(
            tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.journal.now, actor=author,
            budget=budget, client_id=actor.client_id,
        )
        try:
            position = self.store.append_to_stream(budget_stream(actor.tenant_id, budget.budget_id), event, version)
        except StreamConflict as error:
            raise Conflict("BUDGET_EXISTS", f"Budget {budget.budget_id} already exists") from error
        return budget, position

    def update_budget(
        self, actor: "Actor", author: str, budget_id: str, changes: dict[str, Any]
    ) -> tuple[StoredBudget, int]:
        current = self.require_budget(actor.tenant_id, budget_id)
        if changes.get("budget_id", budget_id) != budget_id:
            raise _invalid("id", "cannot be changed")
        changes = resolve_limit(changes, current.terms.unit)
        if changes.get("scope") == "organization" and "scope_id" not in changes:
            changes["scope_id"] = None
        if "webhook_url" in changes:
            changes["webhook_url"] = kept_url(changes["webhook_url"], current.terms.webhook_url)
        merged = {**msgspec.structs.asdict(current.terms), **changes, "budget_id": budget_id}
        if "limit" not in changes and "unit" in changes and changes["unit"] != current.terms.unit:
            raise _invalid("limit_usd" if changes["unit"] == "usd" else "limit_credits", "is required when the unit changes")
        budget = check_terms(merged, current.org_id)
        changed = tuple(f for f in EDITABLE if getattr(budget, f) != getattr(current.terms, f))
        event = BudgetUpdated(
            tenant_id=current.tenant_id, org_id=current.org_id, recorded_at=self.journal.now, actor=author,
            budget=budget, previous=current.terms, changed=changed, client_id=actor.client_id,
        )
        position = self.journal.extend_stream(budget_stream(actor.tenant_id, budget_id), event, current.version)
        return StoredBudget(current.tenant_id, current.org_id, budget, current.version + 1), position

    def delete_budget(self, actor: "Actor", author: str, budget_id: str) -> int:
        current = self.require_budget(actor.tenant_id, budget_id)
        event = BudgetDeleted(
            tenant_id=current.tenant_id, org_id=current.org_id, recorded_at=self.journal.now, actor=author,
            budget_id=budget_id, name=current.terms.name, client_id=actor.client_id,
        )
        return self.journal.extend_stream(budget_stream(actor.tenant_id, budget_id), event, current.version)

    # alerts ----------------------------------------------------------------------------
    def raise_threshold_crossed(self, event: BudgetThresholdCrossed) -> int | None:
        """Append the alert unless it was raised already; returns its position or None."""
        stream = alert_stream(event.tenant_id, event.budget_id, event.period_start, event.threshold, event.incarnation)
        if event.alert_id != str(stream):
            raise ValueError("alert_id must be the alert's stream id")
        try:
            return self.store.append_to_stream(stream, event, 0)
        except StreamConflict:
            return None

    def delivery_attempts(self, alert_id: str) -> list[BudgetAlertDelivered | BudgetAlertDeliveryFailed]:
        return [r.event for r in self.store.stream(delivery_stream(alert_id))]  # type: ignore[misc]

    def record_delivery(self, event: BudgetAlertDelivered | BudgetAlertDeliveryFailed) -> int | None:
        """Attempt n is version n of the alert's delivery stream: recorded once, never twice."""
        try:
            return self.store.append_to_stream(delivery_stream(event.alert_id), event, event.attempt - 1)
        except StreamConflict:
            return None
