"""The ledger's domain events: one class per fact, past tense, plain data.

Each event is a msgspec Struct tagged with its class name, so the stored JSON says
`"type": "UsageRecorded"` and decoding picks the class back. Money is Decimal (stored as
a string), time is timezone-aware UTC.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Union

import msgspec


class LedgerEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    tenant_id: str
    org_id: str = ""
    recorded_at: datetime
    actor: str

    @property
    def type(self) -> str:
        return type(self).__name__


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The facts of one metered usage event, as accepted at ingest."""

    event_id: str
    occurred_at: datetime
    event_type: str
    client_id: str = ""
    operation: str | None = None
    resource_type: str | None = None
    quantity: Decimal | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    app_id: str | None = None
    knowledge_base_id: str | None = None
    http_method: str | None = None
    http_path: str | None = None
    http_status_code: int | None = None
    llm_provider: str | None = None
    llm_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: int | None = None
    cost_usd: Decimal = Decimal(0)
    unpriced: bool = False
    credits: Decimal | None = None
    policies_evaluated: int = 0
    policy_violations: int = 0
    success: bool = True
    metadata: dict[str, Any] | None = None
    body_sha256: str = ""


# identity ---------------------------------------------------------------------------
class TenantCreated(LedgerEvent, frozen=True):
    name: str


class OrganizationCreated(LedgerEvent, frozen=True):
    name: str


class ClientRegistered(LedgerEvent, frozen=True):
    client_id: str
    name: str
    secret_hash: str


class ClientSecretRotated(LedgerEvent, frozen=True):
    client_id: str
    secret_hash: str


class ClientDisabled(LedgerEvent, frozen=True):
    client_id: str


# usage ------------------------------------------------------------------------------
class UsageRecorded(LedgerEvent, frozen=True):
    usage: Usage


class UsageVoided(LedgerEvent, frozen=True):
    event_id: str
    reason: str
    voided: Usage


class UsageAmended(LedgerEvent, frozen=True):
    event_id: str
    reason: str
    fields: dict[str, Any]
    previous: Usage
    current: Usage


# entities, credit rates and licence sync -----------------------------------
class EntityRegistered(LedgerEvent, frozen=True):
    """An app, user or agent of a tenant, so that reports show names rather than ids."""

    entity_id: str
    entity_type: str  # app | user | agent
    name: str
    slug: str | None = None
    owner_id: str | None = None
    display_name: str | None = None


class CreditRateSet(LedgerEvent, frozen=True):
    """Credits per unit of a resource type from effective_from on (tenant_id '' = platform-wide)."""

    resource_type: str
    credits_per_unit: Decimal
    effective_from: datetime


class LicenseSynced(LedgerEvent, frozen=True):
    """The License Manager answered for a licence key; its terms as it reported them."""

    license_key: str
    tier: str | None = None
    nodes_total: int | None = None
    credits_included: Decimal | None = None
    expires_at: datetime | None = None
    status: str | None = None


class LicenseSyncFailed(LedgerEvent, frozen=True):
    """A sync attempt failed: lm_unreachable | lm_unavailable | license_not_recognized | lm_error."""

    license_key: str
    code: str
    message: str = ""
    http_status: int | None = None


# audit ------------------------------------------------------------------------------
class AccessAttempted(LedgerEvent, frozen=True):
    action: str
    target: str
    outcome: str
    reason: str = ""
    details: dict[str, Any] | None = None  # what was attempted (names, scopes...), never a secret


# portal users and sessions ------------------------------------------------------------
class UserCreated(LedgerEvent, frozen=True):
    email: str
    password_hash: str
    permissions: list[str]


class UserPermissionsChanged(LedgerEvent, frozen=True):
    email: str
    permissions: list[str]
    previous: list[str]


class UserLoggedIn(LedgerEvent, frozen=True):
    """A session began. Its stream is derived from a hash of the session token; the event
    holds only a public session id, never the token or its hash."""

    email: str
    session_id: str
    expires_at: datetime


class UserLoggedOut(LedgerEvent, frozen=True):
    email: str
    session_id: str


# portal API keys ----------------------------------------------------------------------
class ApiKeyCreated(LedgerEvent, frozen=True):
    key_id: str
    name: str
    key_prefix: str
    key_sha256: str
    scopes: list[str]
    expires_at: datetime | None = None


class ApiKeyRevoked(LedgerEvent, frozen=True):
    key_id: str
    name: str
    scopes: list[str]


class ApiKeyUsed(LedgerEvent, frozen=True):
    key_id: str


# licences -----------------------------------------------------------------------------
class LicenseIssued(LedgerEvent, frozen=True):
    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None = None
    license_key: str | None = None


class LicenseReplaced(LedgerEvent, frozen=True):
    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None = None
    license_key: str | None = None


class LicenseRevoked(LedgerEvent, frozen=True):
    tier: str


# nodes --------------------------------------------------------------------------------
class HeartbeatReceived(LedgerEvent, frozen=True):
    instance_id: str
    instance_type: str
    hostname: str | None = None
    port: int | None = None
    host_info: dict[str, Any] | None = None


# policies -----------------------------------------------------------------------------
class PolicyCreated(LedgerEvent, frozen=True):
    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]


class PolicyUpdated(LedgerEvent, frozen=True):
    """Carries the whole new state (and which fields changed) so projections stay pure."""

    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]
    changed: list[str]


class PolicyDeleted(LedgerEvent, frozen=True):
    policy_id: str
    name: str


# docs access --------------------------------------------------------------------------
class DocsAccessGranted(LedgerEvent, frozen=True):
    email: str
    reason: str = ""
    already_present: bool = False


class DocsAccessRevoked(LedgerEvent, frozen=True):
    email: str
    already_absent: bool = False


# pricing ----------------------------------------------------------------------------
class ModelPriceSet(LedgerEvent, frozen=True):
    """An effective-dated price override (USD per 1,000 tokens); earlier prices stay in history."""

    provider: str
    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal
    effective_from: datetime


# budgets ----------------------------------------------------------------------------
class BudgetTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a budget is: whose spend it limits, by how much, per which period, and what then."""

    budget_id: str
    name: str
    scope: str  # organization | team | agent | workflow | user | app
    scope_id: str | None
    unit: str  # usd | credits
    limit: Decimal
    period: str  # daily | weekly | monthly | quarterly | yearly
    on_exceed: str  # warn | block | downgrade
    alert_thresholds: tuple[Decimal, ...]
    enabled: bool = True
    webhook_url: str | None = None
    downgrade_model: str | None = None


class BudgetCreated(LedgerEvent, frozen=True):
    """actor: the author (X-User-ID) or the client; client_id: the credentials used."""

    budget: BudgetTerms
    client_id: str = ""


class BudgetUpdated(LedgerEvent, frozen=True):
    budget: BudgetTerms
    previous: BudgetTerms
    changed: tuple[str, ...]
    client_id: str = ""


class BudgetDeleted(LedgerEvent, frozen=True):
    budget_id: str
    name: str
    client_id: str = ""


class BudgetThresholdCrossed(LedgerEvent, frozen=True):
    """Raised once per budget, period and threshold (its stream id says which)."""

    alert_id: str
    budget_id: str
    budget_name: str
    period: str
    period_start: datetime
    period_end: datetime
    unit: str
    threshold: Decimal
    percentage: Decimal
    used: Decimal
    limit: Decimal
    crossed_at: datetime
    webhook_url: str | None = None


class BudgetAlertDelivered(LedgerEvent, frozen=True):
    alert_id: str
    budget_id: str
    attempt: int
    status_code: int


class BudgetAlertDeliveryFailed(LedgerEvent, frozen=True):
    """One failed attempt; `next_attempt_at` is None when no retry is left (final)."""

    alert_id: str
    budget_id: str
    attempt: int
    error: str
    status_code: int | None = None
    next_attempt_at: datetime | None = None


ALL_EVENTS: tuple[type[LedgerEvent], ...] = (
    TenantCreated,
    OrganizationCreated,
    ClientRegistered,
    ClientSecretRotated,
    ClientDisabled,
    UsageRecorded,
    UsageVoided,
    UsageAmended,
    AccessAttempted,
    UserCreated,
    UserPermissionsChanged,
    UserLoggedIn,
    UserLoggedOut,
    ApiKeyCreated,
    ApiKeyRevoked,
    ApiKeyUsed,
    LicenseIssued,
    LicenseReplaced,
    LicenseRevoked,
    HeartbeatReceived,
    PolicyCreated,
    PolicyUpdated,
    PolicyDeleted,
    DocsAccessGranted,
    DocsAccessRevoked,
    ModelPriceSet,
    BudgetCreated,
    BudgetUpdated,
    BudgetDeleted,
    BudgetThresholdCrossed,
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    EntityRegistered,
    CreditRateSet,
    LicenseSynced,
    LicenseSyncFailed,
)
AnyEvent = Union[ALL_EVENTS]  # type: ignore[valid-type]

_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: LedgerEvent) -> bytes:
    """The stored form of an event: compact JSON with sorted keys."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> LedgerEvent:
    return _decoder.decode(data)


def topic_of(event_class: type[LedgerEvent]) -> str:
    return event_class.__name__
