"""Licensing events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.events import LedgerEvent


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


class HeartbeatReceived(LedgerEvent, frozen=True):
    instance_id: str
    instance_type: str
    hostname: str | None = None
    port: int | None = None
    host_info: dict[str, Any] | None = None


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

