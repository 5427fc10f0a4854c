"""License Manager sync: for each licence with a key,
GET {LICENSE_MANAGER_URL}/api/v1/licenses/{license_key} with Bearer LICENSE_MANAGER_TOKEN,
and append LicenseSynced (200 with the licence) or LicenseSyncFailed with a code:

- lm_unreachable: no connection (refused, DNS, timeout);
- lm_unavailable: 503;
- license_not_recognized: 404;
- lm_error: anything else (other statuses, a body that is not a licence).

`sync_licenses` is the command; the caller passes the licences to sync (the admin route and
the worker job read them from the license_sync read model).
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Callable, Iterable

from ledger.errors import Unavailable
from ledger.licensing.rules import MAX_CREDITS_INCLUDED, MAX_NODES_TOTAL, ReportedLicense

if TYPE_CHECKING:  # pragma: no cover
    from ledger.application import Ledger

log = logging.getLogger("usage_ledger.license_sync")
TIMEOUT_SECONDS = 10.0
MAX_LABEL = 64  # tier and status, as the license_sync read model keeps them


@dataclass(frozen=True)
class SyncOutcome:
    tenant_id: str
    org_id: str
    license_key: str
    ok: bool
    code: str | None
    message: str
    position: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class SyncFailure(Exception):
    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


Fetch = Callable[[str, "str | None", str], ReportedLicense]


def fetch_license(base_url: str, token: str | None, license_key: str, timeout: float = TIMEOUT_SECONDS) -> ReportedLicense:
    """The licence as the License Manager reports it; SyncFailure with a code otherwise."""
    url = f"{base_url.rstrip('/')}/api/v1/licenses/{urllib.parse.quote(license_key, safe='')}"
    headers = {"Accept": "application/json", "User-Agent": "usage-ledger-license-sync"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            status, body = response.status, response.read(1024 * 1024)
    except urllib.error.HTTPError as error:
        if error.code == 503:
            raise SyncFailure("lm_unavailable", "License Manager is unavailable (503)", 503) from None
        if error.code == 404:
            raise SyncFailure("license_not_recognized", "License Manager does not know this licence key (404)", 404) from None
        raise SyncFailure("lm_error", f"License Manager answered {error.code}", error.code) from None
    except (urllib.error.URLError, OSError) as error:
        raise SyncFailure("lm_unreachable", f"License Manager is unreachable: {getattr(error, 'reason', error)}") from None
    if status != 200:
        raise SyncFailure("lm_error", f"License Manager answered {status}", status)
    return parse_terms(body, license_key)


def parse_terms(body: bytes, license_key: str) -> ReportedLicense:
    """The licence in a License Manager answer, held to the bounds the read models keep
    (a value past them would stop the projection that stores it): tier and status at most
    64 characters, nodes_total 0 to 1,000,000, credits_included as an issued licence's."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if data.get("license_key") not in (None, license_key):
            raise ValueError("answered for another licence key")
        credits = data.get("credits_included")
        expires = data.get("expires_at")
        nodes = data.get("nodes_total")
        if nodes is not None and (type(nodes) is not int or not 0 <= nodes <= MAX_NODES_TOTAL):
            raise ValueError(f"nodes_total must be an integer from 0 to {MAX_NODES_TOTAL:,}")
        terms = ReportedLicense(
            tier=_label(data, "tier"),
            nodes_total=nodes,
            credits_included=_credits(credits),
            expires_at=None if not expires else datetime.fromisoformat(_label(data, "expires_at").replace("Z", "+00:00")),
            status=_label(data, "status"),
        )
        if terms.expires_at is not None and terms.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone")
        return terms
    except (ValueError, TypeError, InvalidOperation, OverflowError) as error:
        raise SyncFailure("lm_error", f"License Manager sent an unusable licence: {error}", 200) from None


def _credits(value) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or len(str(value)) > MAX_LABEL:
        raise ValueError("credits_included must be a number")
    amount = Decimal(str(value))
    if not amount.is_finite() or not 0 <= amount < MAX_CREDITS_INCLUDED:
        raise ValueError("credits_included must be a number ≥ 0 and below 10^9")
    return amount


def _label(data: dict, name: str) -> str | None:
    """A short text field of the answer (None when absent)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or len(str(value)) > MAX_LABEL:
        raise ValueError(f"{name} must be text of at most {MAX_LABEL} characters")
    return str(value)


def sync_licenses(
    ledger: "Ledger", licences: Iterable[tuple[str, str, str]], fetch: Fetch | None = None
) -> list[SyncOutcome]:
    """Ask the License Manager about each (tenant_id, org_id, license_key), one per org (the
    last key given wins), and record one event per licence; returns the outcomes."""
    settings = ledger.settings
    if not settings.license_manager_url:
        raise Unavailable("LICENSE_MANAGER_NOT_CONFIGURED", "License Manager sync is not configured (set LICENSE_MANAGER_URL)")
    fetch = fetch or fetch_license
    keys = {(tenant_id, org_id): key for tenant_id, org_id, key in licences}
    outcomes = []
    for (tenant_id, org_id), key in sorted(keys.items()):
        try:
            terms = fetch(settings.license_manager_url, settings.license_manager_token, key)
        except SyncFailure as failure:
            position = ledger.licensing.record_sync_failed(
                tenant_id, org_id, key, failure.code, failure.message, failure.http_status
            )
            log.warning("licence sync failed", extra={"fields": {"org_id": org_id, "code": failure.code}})
            outcomes.append(SyncOutcome(tenant_id, org_id, key, False, failure.code, failure.message, position))
            continue
        position = ledger.licensing.record_synced(tenant_id, org_id, key, terms)
        outcomes.append(SyncOutcome(tenant_id, org_id, key, True, None, "synced", position))
    return outcomes
