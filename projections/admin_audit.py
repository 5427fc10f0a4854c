"""The admin audit log: one row per admin-relevant event, successes and failures alike.

`AUDITED_EVENTS` maps an event class to the action name shown in the log; following a new
event type is one line there (the projection's schema version is derived from the
mapping, so `usage-ledger migrate` replays the log when it changes). Failed or denied
attempts arrive as AccessAttempted with their own action name. Details never include a
secret, a password, a key, a token or a hash: such fields are dropped by name.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

import msgspec
from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, MetaData, String, Table, Text

from ledger.audit.events import AccessAttempted
from ledger.budgets.events import (
    BudgetAlertDelivered,
    BudgetAlertDeliveryFailed,
    BudgetCreated,
    BudgetDeleted,
    BudgetThresholdCrossed,
    BudgetUpdated,
    BudgetWebhookSecretRotated,
)
from ledger.budgets.webhooks import shown_error, shown_url
from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.events import LedgerEvent
from ledger.identity.events import (
    ClientDisabled,
    ClientRegistered,
    ClientSecretRotated,
    OrganizationCreated,
    TenantCreated,
    UserCreated,
    UserLoggedIn,
    UserLoggedOut,
    UserPermissionsChanged,
)
from ledger.identity.events import UserDisabled, UserEnabled, UserPasswordChanged
from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked
from ledger.licensing.events import LicenseIssued, LicenseReplaced, LicenseRevoked
from ledger.policies.events import PolicyCreated, PolicyDeleted, PolicyUpdated
from ledger.pricing.events import ModelPriceSet
from ledger.usage.events import UsageAmended, UsageVoided
from ledger.store import Recorded
from projections.framework import Projection, topics_of
from projections.sql import insert_ignore
from projections.usage import naive_utc

AUDITED_EVENTS: dict[type[LedgerEvent], str] = {
    TenantCreated: "TENANT_CREATE",
    OrganizationCreated: "ORG_CREATE",
    ClientRegistered: "CLIENT_CREATE",
    ClientSecretRotated: "CLIENT_SECRET_ROTATE",
    ClientDisabled: "CLIENT_DISABLE",
    UserCreated: "USER_CREATE",
    UserPermissionsChanged: "USER_PERMISSIONS_CHANGE",
    UserLoggedIn: "USER_LOGIN",
    UserLoggedOut: "USER_LOGOUT",
    UserDisabled: "USER_DISABLE",
    UserEnabled: "USER_ENABLE",
    UserPasswordChanged: "USER_PASSWORD_CHANGE",
    ApiKeyCreated: "API_KEY_CREATE",
    ApiKeyRevoked: "API_KEY_REVOKE",
    LicenseIssued: "LICENSE_ISSUE",
    LicenseReplaced: "LICENSE_REPLACE",
    LicenseRevoked: "LICENSE_REVOKE",
    PolicyCreated: "POLICY_CREATE",
    PolicyUpdated: "POLICY_UPDATE",
    PolicyDeleted: "POLICY_DELETE",
    DocsAccessGranted: "DOCS_ACCESS_GRANT",
    DocsAccessRevoked: "DOCS_ACCESS_REVOKE",
    UsageVoided: "USAGE_VOID",
    UsageAmended: "USAGE_AMEND",
    BudgetCreated: "BUDGET_CREATE",
    BudgetUpdated: "BUDGET_UPDATE",
    BudgetDeleted: "BUDGET_DELETE",
    BudgetThresholdCrossed: "BUDGET_THRESHOLD_CROSSED",
    BudgetAlertDelivered: "BUDGET_ALERT_DELIVERY",
    BudgetAlertDeliveryFailed: "BUDGET_ALERT_DELIVERY",
    BudgetWebhookSecretRotated: "BUDGET_WEBHOOK_SECRET_ROTATE",
    ModelPriceSet: "PRICING_SET",
}
# Events whose outcome is not a success although they record what happened.
FAILED_EVENTS: frozenset[type[LedgerEvent]] = frozenset({BudgetAlertDeliveryFailed})

# What an entry is about: the first of these fields the event has (else its org, tenant).
TARGET_FIELDS = ("key_id", "budget_id", "alert_id", "client_id", "email", "policy_id", "event_id", "instance_id")
_BASE_FIELDS = ("type", "tenant_id", "org_id", "recorded_at", "actor")
_SECRET_NAMES = ("secret", "password", "token", "license_key", "session_hash")
_SECRET_SUFFIXES = ("_hash", "_sha256", "_key")


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return (
        any(marker in lowered for marker in _SECRET_NAMES) and not lowered.endswith("_tokens")
    ) or lowered.endswith(_SECRET_SUFFIXES) or lowered in ("key", "hash")


ENTRY_FORMAT = 2  # 2: a client's write naming a user keeps the client as actor (on_behalf_of)


def _mapping_version() -> int:
    mapping = sorted((event_class.__name__, action) for event_class, action in AUDITED_EVENTS.items())
    mapping.append(("entry_format", str(ENTRY_FORMAT)))
    digest = hashlib.sha256(json.dumps(mapping).encode()).hexdigest()
    return int(digest[:6], 16)


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return None  # whole usage facts and the like: too big for an audit line
    if isinstance(value, (datetime, date)):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not is_secret_field(str(k))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def audit_entry(position: int, event: LedgerEvent) -> dict | None:
    """The audit row of an event, or None when the event is not audited."""
    if isinstance(event, AccessAttempted):
        action, target, outcome = event.action, event.target, event.outcome
        details = _plain(event.details or {})
        reason = event.reason
    elif type(event) in AUDITED_EVENTS:
        action, reason = AUDITED_EVENTS[type(event)], ""
        outcome = "failure" if type(event) in FAILED_EVENTS else "success"
        fields = {f: getattr(event, f) for f in event.__struct_fields__ if f not in _BASE_FIELDS}
        if isinstance(fields.get("budget"), msgspec.Struct):  # budget terms: flatten for the log
            fields.update(msgspec.structs.asdict(fields.pop("budget")))
            fields.pop("previous", None)
        if fields.get("webhook_url"):  # never its userinfo or query (they may hold credentials)
            fields["webhook_url"] = shown_url(fields["webhook_url"])
        if isinstance(event, BudgetAlertDeliveryFailed):  # a code, never socket text
            fields["error"] = shown_error(fields["error"])
        target = next((str(fields[f]) for f in TARGET_FIELDS if fields.get(f)), "") or event.org_id or event.tenant_id
        details = {k: v for k, v in _plain(fields).items() if v is not None and not is_secret_field(k)}
        reason = str(fields.get("reason") or "")
    else:
        return None
    actor = event.actor
    client_id = getattr(event, "client_id", "")
    if client_id and actor.startswith("user:") and isinstance(client_id, str):
        # a client's write naming a user (X-User-ID): the client acted, the user is asserted
        details = {**details, "on_behalf_of": actor[5:]}
        actor = f"client:{client_id}"
    return {
        "position": position,
        "tenant_id": event.tenant_id,
        "org_id": event.org_id,
        "recorded_at": naive_utc(event.recorded_at),
        "actor": actor[:300],
        "action": action[:64],
        "target": target[:300],
        "outcome": outcome[:16],
        "reason": reason[:2000],
        "details_json": json.dumps(details, sort_keys=True, separators=(",", ":")),
    }


class AdminAuditProjection(Projection):
    name = "admin_audit"

    def __init__(self, prefix: str = ""):
        super().__init__(prefix)
        self.version = _mapping_version()
        self.topics = topics_of(*AUDITED_EVENTS, AccessAttempted)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.log = Table(
            f"{prefix}admin_audit_log",
            metadata,
            Column("position", BigInteger, primary_key=True),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("recorded_at", DateTime, nullable=False),
            Column("actor", String(300), nullable=False),
            Column("action", String(64), nullable=False),
            Column("target", String(300), nullable=False),
            Column("outcome", String(16), nullable=False),
            Column("reason", Text, nullable=False),
            Column("details_json", Text, nullable=False),
            Index(f"ix_{prefix}admin_audit_tenant", "tenant_id", "position"),
            Index(f"ix_{prefix}admin_audit_time", "recorded_at"),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        rows = [row for r in batch if (row := audit_entry(r.position, r.event)) is not None]
        insert_ignore(conn, self.log, rows, ["position"])
