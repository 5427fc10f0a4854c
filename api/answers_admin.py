"""The answers of the budget, provisioning, policy, price and credit handlers (api/answers.py)."""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from api.answers import Number, Positioned, Text, Window


# budgets --------------------------------------------------------------------------------
class BudgetOut(msgspec.Struct):
    id: str
    name: str
    scope: str
    scope_id: Text
    limit_usd: Number
    limit_credits: Number
    unit: str
    period: str
    on_exceed: str
    alert_thresholds: list[float]
    enabled: bool
    webhook_url: Text
    downgrade_model: Text
    tenant_id: str
    org_id: str
    created_at: Text
    created_by: Text
    updated_at: Text
    updated_by: Text
    # in a list: spend recorded in the current period, outstanding holds and what is left
    # (limit - used - held), in the budget's unit
    used_usd: Number = None
    used_credits: Number = None
    held_usd: Number = None
    available_usd: Number = None
    held_credits: Number = None
    available_credits: Number = None


class BudgetWrittenOut(BudgetOut, kw_only=True):
    position: int
    webhook_secret: str | None = None  # answered once, when a webhook_url is first set


class WebhookSecretOut(msgspec.Struct):
    budget_id: str
    webhook_secret: str
    position: int


class BudgetListOut(Positioned):
    budgets: list[BudgetOut]
    total: int
    limit: int
    offset: int


class BudgetStatusOut(Positioned):
    budget_id: str
    budget_name: str
    period: str
    period_start: str
    period_end: str
    unit: str
    used: float
    limit: float
    remaining: float
    percentage: float
    status: str
    thresholds_crossed: list[float]
    as_of: str
    # outstanding holds and what is left (limit - used - held), in the budget's unit
    held_usd: Number = None
    available_usd: Number = None
    held_credits: Number = None
    available_credits: Number = None


class BudgetAlertOut(msgspec.Struct):
    alert_id: str
    budget_id: str
    budget_name: str
    threshold: float
    percentage: float
    unit: str
    used: float
    limit: float
    period: str
    period_start: str
    period_end: str
    created_at: str
    raised: bool
    delivery_status: str
    delivery_attempts: int
    last_attempt_at: Text
    next_attempt_at: Text
    delivered_at: Text
    last_error: Text


class BudgetAlertsOut(Positioned):
    alerts: list[BudgetAlertOut]
    total: int
    limit: int
    offset: int


class CheckWarningOut(msgspec.Struct):
    budget_id: str
    budget_name: str
    percentage: float
    message: str
    used_usd: Number = None
    limit_usd: Number = None
    used_credits: Number = None
    limit_credits: Number = None


class CheckOut(msgspec.Struct):
    """`{"allowed": true}` when no budget is exceeded; else the action, the deciding budget's
    fields (block, downgrade) and the exceeded warn budgets."""

    allowed: bool
    action: Literal["warn", "block", "downgrade"] | None = None
    warnings: list[CheckWarningOut] = []
    downgrade_model: Text = None
    budget_id: Text = None
    budget_name: Text = None
    percentage: Number = None
    message: Text = None
    used_usd: Number = None
    limit_usd: Number = None
    used_credits: Number = None
    limit_credits: Number = None
    held_usd: Number = None  # outstanding holds beside recorded spend (percentage is of used + held)
    held_credits: Number = None


# provisioning ---------------------------------------------------------------------------
class TenantOut(Positioned):
    tenant_id: str
    name: str
    cluster: str = "default"  # the ledger cluster that holds the tenant (docs/scale-out.md)


class OrgOut(Positioned):
    tenant_id: str
    org_id: str
    name: str


class EntityOut(Positioned):
    tenant_id: str
    entity_id: str
    entity_type: str
    name: str
    slug: Text = None
    owner_id: Text = None
    display_name: Text = None


class LicenseWrittenOut(Positioned):
    tenant_id: str
    org_id: str


class SyncOutcomeOut(msgspec.Struct):
    tenant_id: str
    org_id: str
    license_key: str
    ok: bool
    code: Text
    message: str
    position: int


class SyncOut(msgspec.Struct):
    synced: list[SyncOutcomeOut]
    partial: bool | None = None  # LEDGER_CLUSTERS: true when a cluster did not answer
    missing_clusters: list[str] | None = None


class PolicyWrittenOut(Positioned):
    policy_id: str
    tenant_id: str
    org_id: Text = None


class PolicyOut(msgspec.Struct):
    policy_id: str
    name: str
    description: Text
    category: Text
    action: Text
    enabled: bool
    revision: int
    rules: Any
    created_at: Text
    updated_at: Text


class PoliciesOut(Positioned):
    org_id: str
    exported_at: str
    total: int
    policies: list[PolicyOut]


# prices and credits -----------------------------------------------------------------------
class PriceOut(msgspec.Struct):
    provider: str
    model: str
    input_per_1k: float
    output_per_1k: float
    effective_from: Text
    source: str


class PriceSetOut(PriceOut):
    position: int


class PriceTableOut(msgspec.Struct):
    currency: str
    per_tokens: int
    as_of: str
    default_source_date: str
    prices: list[PriceOut]


class PriceOverridesOut(Positioned):
    overrides: list[PriceOut]


class CreditRateOut(msgspec.Struct):
    resource_type: str
    credits_per_unit: float
    effective_from: Text
    source: str


class CreditRatesOut(msgspec.Struct):
    rates: list[CreditRateOut]


class CreditRateSetOut(Positioned):
    resource_type: str
    credits_per_unit: float
    effective_from: Text


class CreditPool(msgspec.Struct):
    included: float
    used: float
    remaining: float


class CreditSync(msgspec.Struct):
    syncedAt: Text
    lastSyncFailedAt: Text
    lastSyncFailureCode: Text
    stalenessLevel: Text


class CreditUsageOut(msgspec.Struct):
    usageSummary: list[dict[str, Any]]
    dailyTotals: list[dict[str, Any]]
    totalCredits: float  # summed in nanos, rounded once
    totalCreditsNanos: int
    range: Window
    budgets: list[dict[str, Any]]
    creditPool: CreditPool
    sync: CreditSync


class CreditHistoryOut(msgspec.Struct):
    history: list[dict[str, Any]]
    creditPool: CreditPool


class TopConsumersOut(msgspec.Struct):
    windowDays: int
    startDate: str
    endDate: str
    topApps: list[dict[str, Any]]
    topUsers: list[dict[str, Any]]


class ResourceTypeOut(msgspec.Struct):
    slug: str
    name: str
    category: str
    mode: str
    unit: str
