"""Licence, heartbeat and node-capacity rules: pure functions of the terms, the
count of active nodes and the current time, so every boundary is easy to test with a
fixed clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from ledger.errors import Invalid
from ledger.identity.rules import EXTERNAL_ID
from ledger.usage.rules import MAX_METADATA_DEPTH, json_depth

TIERS = ("Developer", "Professional", "Enterprise", "Plus")
EXPIRING_SOON_WITHIN = timedelta(days=30)
CAUTION_PERCENT = 80
WARNING_PERCENT = 90
INSTANCE_TYPES = ("agent", "orchestrator")
MAX_HOST_INFO_BYTES = 8 * 1024
MAX_NODES_TOTAL = 1_000_000
MAX_CREDITS_INCLUDED = Decimal(10) ** 9  # like a budget limit: × 10^9 nano-credits fits 64 bits
LICENSE_SYNC_FAILURE_CODES = ("lm_unreachable", "lm_unavailable", "license_not_recognized", "lm_error")


@dataclass(frozen=True)
class LicenseTerms:
    """The terms an organization's licence is issued (or replaced) with."""

    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None = None
    license_key: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "nodes_total": self.nodes_total,
            "expires_at": self.expires_at,
            "credits_included": self.credits_included,
            "license_key": self.license_key,
        }


@dataclass(frozen=True)
class License:
    tenant_id: str
    org_id: str
    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None
    license_key: str | None
    active: bool
    version: int


@dataclass(frozen=True)
class ReportedLicense:
    """What the License Manager answered for one licence key (every field may be missing)."""

    tier: str | None
    nodes_total: int | None
    credits_included: Decimal | None
    expires_at: datetime | None
    status: str | None


def check_terms(terms: LicenseTerms) -> None:
    if terms.tier not in TIERS:
        raise Invalid("VALIDATION_FAILED", f"tier must be one of {', '.join(TIERS)}", field="tier")
    if not isinstance(terms.nodes_total, int) or not 1 <= terms.nodes_total <= MAX_NODES_TOTAL:
        raise Invalid("VALIDATION_FAILED", "nodes_total must be an integer from 1 to 1,000,000", field="nodes_total")
    if terms.expires_at.tzinfo is None:
        raise Invalid("VALIDATION_FAILED", "expires_at needs a time zone offset", field="expires_at")
    credits = terms.credits_included
    if credits is not None and (
        not credits.is_finite() or not 0 <= credits < MAX_CREDITS_INCLUDED or credits != credits.quantize(Decimal("1e-9"))
    ):  # kept as integer nano-credits in 64 bits
        raise Invalid(
            "VALIDATION_FAILED", "credits_included must be ≥ 0, below 10^9, with at most 9 decimals", field="credits_included"
        )


def check_heartbeat(instance_id: str, instance_type: str, host_info: dict[str, Any] | None) -> None:
    if not EXTERNAL_ID.match(instance_id or ""):
        raise Invalid("VALIDATION_FAILED", "instance_id must be 1-128 characters of [A-Za-z0-9._:-]", field="instance_id")
    if instance_type not in INSTANCE_TYPES:
        raise Invalid("VALIDATION_FAILED", "instance_type must be agent or orchestrator", field="instance_type")
    if host_info is not None and len(msgspec.json.encode(host_info)) > MAX_HOST_INFO_BYTES:
        raise Invalid("VALIDATION_FAILED", "host_info must be at most 8 KiB of JSON", field="host_info")
    if host_info is not None and json_depth(host_info) > MAX_METADATA_DEPTH:
        raise Invalid("VALIDATION_FAILED", f"host_info must be nested at most {MAX_METADATA_DEPTH} levels deep", field="host_info")


def percentage(used: int, total: int) -> float | int:
    """used / total in percent, 2 decimals (a whole number when it is one); 0 when total is 0."""
    if total <= 0:
        return 0
    value = round(used * 100 / total, 2)
    return int(value) if value == int(value) else value


def license_status(expires_at: datetime, nodes_total: int, nodes_used: int, now: datetime) -> str:
    """EXPIRED once expires_at is reached; else OVER_LIMIT when more nodes are active than
    licensed; else EXPIRING_SOON when it expires within 30 days (inclusive); else ACTIVE."""
    if now >= expires_at:
        return "EXPIRED"
    if nodes_used > nodes_total:
        return "OVER_LIMIT"
    if expires_at - now <= EXPIRING_SOON_WITHIN:
        return "EXPIRING_SOON"
    return "ACTIVE"


def node_capacity_status(total: int, max_allowed: int) -> str:
    """VIOLATION when more nodes are active than allowed; else WARNING at ≥ 90 %,
    CAUTION at ≥ 80 %, OK below."""
    if total > max_allowed:
        return "VIOLATION"
    if max_allowed <= 0:
        return "OK"
    if total * 100 >= WARNING_PERCENT * max_allowed:
        return "WARNING"
    if total * 100 >= CAUTION_PERCENT * max_allowed:
        return "CAUTION"
    return "OK"
