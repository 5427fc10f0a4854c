"""Encoding of stored events: compact JSON with sorted keys, decoded back by type tag.

Every event class of every concept is listed here once; the stored topic is the class
name, so a class may move between modules but must never be renamed.
"""
from __future__ import annotations

from typing import Union

import msgspec

from ledger.events import LedgerEvent
from ledger.usage.events import UsageRecorded, UsageVoided, UsageAmended
from ledger.identity.events import TenantCreated, OrganizationCreated, ClientRegistered, ClientSecretRotated, ClientDisabled, UserCreated, UserPermissionsChanged, UserLoggedIn, UserLoggedOut, EntityRegistered
from ledger.identity.events import UserDisabled, UserEnabled, UserPasswordChanged
from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed
from ledger.licensing.events import LicenseIssued, LicenseReplaced, LicenseRevoked, HeartbeatReceived, LicenseSynced, LicenseSyncFailed
from ledger.policies.events import PolicyCreated, PolicyUpdated, PolicyDeleted
from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.pricing.events import ModelPriceSet, CreditRateSet
from ledger.budgets.events import BudgetCreated, BudgetUpdated, BudgetDeleted, BudgetThresholdCrossed, BudgetAlertDelivered, BudgetAlertDeliveryFailed, BudgetWebhookSecretRotated, BudgetHoldPlaced, BudgetHoldCommitted, BudgetHoldReleased, BudgetHoldExpired, BudgetPeriodHolds
from ledger.audit.events import AccessAttempted
from ledger.identity.events import TenantMoved

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
    BudgetWebhookSecretRotated,
    EntityRegistered,
    CreditRateSet,
    LicenseSynced,
    LicenseSyncFailed,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    BudgetHoldPlaced,
    BudgetHoldCommitted,
    BudgetHoldReleased,
    BudgetHoldExpired,
    BudgetPeriodHolds,
    TenantMoved,
)
AnyEvent = Union[ALL_EVENTS]  # type: ignore[valid-type]

_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: LedgerEvent) -> bytes:
    """The stored form of an event: compact JSON with sorted keys."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> LedgerEvent:
    return _decoder.decode(data)
