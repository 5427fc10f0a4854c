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


# entities, credit rates and licence sync (issue 6) -----------------------------------
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
