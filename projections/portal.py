"""Portal read models: users, API keys, licences, node status, policies, docs access.

Each projection is a pure mapping of events to row changes (no reads of other tables, no
clock): timestamps come from the events themselves. Nothing secret is projected: no
password hash, no key hash, no session token.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    or_,
    select,
    tuple_,
    update,
)

from ledger.docs_access.events import DocsAccessGranted
from ledger.identity.events import UserCreated, UserLoggedIn, UserPermissionsChanged
from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed
from ledger.licensing.events import HeartbeatReceived, LicenseIssued, LicenseReplaced, LicenseRevoked
from ledger.policies.events import PolicyCreated, PolicyDeleted, PolicyUpdated
from ledger.store import Recorded
from projections.framework import Projection
from projections.sql import upsert_replace
from projections.usage import naive_utc, to_nanos


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


class _Dispatching(Projection):
    """Applies each event with the handler registered for its type. To follow a new event
    type, add a handler to `handlers()`; topics follow from it."""

    def handlers(self) -> dict[str, Callable[[Connection, Recorded], None]]:
        raise NotImplementedError

    @property
    def topics(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.handlers())

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        handlers = self.handlers()
        for recorded in batch:
            handler = handlers.get(recorded.event.type)
            if handler is not None:
                handler(conn, recorded)


class UsersProjection(_Dispatching):
    name = "users"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.users = Table(
            f"{prefix}portal_users",
            metadata,
            Column("email", String(254), primary_key=True),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("permissions_json", Text, nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("updated_at", DateTime, nullable=False),
            Column("last_login_at", DateTime),
            Index(f"ix_{prefix}portal_users_tenant", "tenant_id", "org_id"),
        )

    def handlers(self):
        return {
            "UserCreated": self._created,
            "UserPermissionsChanged": self._changed,
            "UserLoggedIn": self._logged_in,
        }

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: UserCreated = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        upsert_replace(
            conn,
            self.users,
            [{"email": e.email, "tenant_id": e.tenant_id, "org_id": e.org_id, "permissions_json": _json(e.permissions),
              "created_at": at, "updated_at": at, "last_login_at": None}],
            ["email"],
        )

    def _changed(self, conn: Connection, recorded: Recorded) -> None:
        e: UserPermissionsChanged = recorded.event  # type: ignore[assignment]
        conn.execute(
            update(self.users)
            .where(self.users.c.email == e.email)
            .values(permissions_json=_json(e.permissions), updated_at=naive_utc(e.recorded_at))
        )

    def _logged_in(self, conn: Connection, recorded: Recorded) -> None:
        e: UserLoggedIn = recorded.event  # type: ignore[assignment]
        conn.execute(update(self.users).where(self.users.c.email == e.email).values(last_login_at=naive_utc(e.recorded_at)))


class ApiKeysProjection(_Dispatching):
    name = "api_keys"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.keys = Table(
            f"{prefix}api_keys",
            metadata,
            Column("key_id", String(64), primary_key=True),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("key_prefix", String(16), nullable=False),
            Column("scopes_json", Text, nullable=False),
            Column("created_by", String(300), nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("expires_at", DateTime),
            Column("last_used_at", DateTime),
            Column("revoked_at", DateTime),
            Column("position", BigInteger, nullable=False),
            Index(f"ix_{prefix}api_keys_org", "tenant_id", "org_id", "created_at"),
        )

    def handlers(self):
        return {"ApiKeyCreated": self._created, "ApiKeyRevoked": self._revoked, "ApiKeyUsed": self._used}

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyCreated = recorded.event  # type: ignore[assignment]
        upsert_replace(
            conn,
            self.keys,
            [{
                "key_id": e.key_id, "tenant_id": e.tenant_id, "org_id": e.org_id, "name": e.name,
                "key_prefix": e.key_prefix, "scopes_json": _json(e.scopes), "created_by": e.actor,
                "created_at": naive_utc(e.recorded_at),
                "expires_at": naive_utc(e.expires_at) if e.expires_at else None,
                "last_used_at": None, "revoked_at": None, "position": recorded.position,
            }],
            ["key_id"],
        )

    def _revoked(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyRevoked = recorded.event  # type: ignore[assignment]
        conn.execute(update(self.keys).where(self.keys.c.key_id == e.key_id).values(revoked_at=naive_utc(e.recorded_at)))

    def _used(self, conn: Connection, recorded: Recorded) -> None:
        e: ApiKeyUsed = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        conn.execute(
            update(self.keys)
            .where(self.keys.c.key_id == e.key_id, or_(self.keys.c.last_used_at.is_(None), self.keys.c.last_used_at < at))
            .values(last_used_at=at)
        )


class LicensesProjection(_Dispatching):
    """One row per organization's licence. License Manager sync (another capability) adds
    its handlers and columns here: terms land in the same columns through `_terms_row`."""

    name = "licenses"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.licenses = Table(
            f"{prefix}licenses",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("org_id", String(64), primary_key=True),
            Column("tier", String(32), nullable=False),
            Column("nodes_total", Integer, nullable=False),
            Column("expires_at", DateTime, nullable=False),
            Column("credits_included_nanos", BigInteger),
            Column("license_key", String(256)),
            Column("active", Boolean, nullable=False),
            Column("issued_at", DateTime, nullable=False),
            Column("updated_at", DateTime, nullable=False),
            Column("revoked_at", DateTime),
        )

    def handlers(self):
        return {"LicenseIssued": self._issued, "LicenseReplaced": self._replaced, "LicenseRevoked": self._revoked}

    @staticmethod
    def _terms_row(e) -> dict:
        return {
            "tier": e.tier,
            "nodes_total": e.nodes_total,
            "expires_at": naive_utc(e.expires_at),
            "credits_included_nanos": None if e.credits_included is None else to_nanos(e.credits_included),
            "license_key": e.license_key,
        }

    def _issued(self, conn: Connection, recorded: Recorded) -> None:
        e: LicenseIssued = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        upsert_replace(
            conn,
            self.licenses,
            [{"tenant_id": e.tenant_id, "org_id": e.org_id, **self._terms_row(e), "active": True,
              "issued_at": at, "updated_at": at, "revoked_at": None}],
            ["tenant_id", "org_id"],
        )

    def _replaced(self, conn: Connection, recorded: Recorded) -> None:
        e: LicenseReplaced = recorded.event  # type: ignore[assignment]
        conn.execute(
            update(self.licenses)
            .where(self.licenses.c.tenant_id == e.tenant_id, self.licenses.c.org_id == e.org_id)
            .values(**self._terms_row(e), active=True, updated_at=naive_utc(e.recorded_at))
        )

    def _revoked(self, conn: Connection, recorded: Recorded) -> None:
        e: LicenseRevoked = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        conn.execute(
            update(self.licenses)
            .where(self.licenses.c.tenant_id == e.tenant_id, self.licenses.c.org_id == e.org_id)
            .values(active=False, revoked_at=at, updated_at=at)
        )


class NodeStatusProjection(Projection):
    """node_status: the latest heartbeat of every node (instance). Heartbeats are the most
    frequent portal event, so a batch is merged in memory and written once per node."""

    name = "node_status"
    version = 1
    topics = ("HeartbeatReceived",)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.nodes = Table(
            f"{prefix}node_status",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("org_id", String(64), primary_key=True),
            Column("instance_id", String(128), primary_key=True),
            Column("instance_type", String(16), nullable=False),
            Column("first_seen", DateTime, nullable=False),
            Column("last_seen", DateTime, nullable=False),
            Column("hostname", String(255)),
            Column("port", Integer),
            Column("host_info_json", Text),
            Column("heartbeats", BigInteger, nullable=False),
            Index(f"ix_{prefix}node_status_seen", "tenant_id", "org_id", "last_seen"),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        merged: dict[tuple[str, str, str], dict] = {}
        for recorded in batch:
            e = recorded.event
            if not isinstance(e, HeartbeatReceived):
                continue
            key = (e.tenant_id, e.org_id, e.instance_id)
            merged[key] = _merge_heartbeat(merged.get(key), e)
        if not merged:
            return
        t = self.nodes
        existing = {
            (r["tenant_id"], r["org_id"], r["instance_id"]): dict(r)
            for r in conn.execute(
                select(t).where(tuple_(t.c.tenant_id, t.c.org_id, t.c.instance_id).in_(list(merged)))
            ).mappings()
        }
        rows = []
        for key, fresh in merged.items():
            old = existing.get(key)
            if old is None:
                rows.append(fresh)
                continue
            newer = fresh["last_seen"] >= old["last_seen"]
            latest, earlier = (fresh, old) if newer else (old, fresh)
            rows.append({
                **latest,
                "first_seen": min(old["first_seen"], fresh["first_seen"]),
                "last_seen": max(old["last_seen"], fresh["last_seen"]),
                "hostname": latest["hostname"] if latest["hostname"] is not None else earlier["hostname"],
                "port": latest["port"] if latest["port"] is not None else earlier["port"],
                "host_info_json": latest["host_info_json"] if latest["host_info_json"] is not None else earlier["host_info_json"],
                "heartbeats": old["heartbeats"] + fresh["heartbeats"],
            })
        upsert_replace(conn, t, rows, ["tenant_id", "org_id", "instance_id"])


def _merge_heartbeat(row: dict | None, e: HeartbeatReceived) -> dict:
    """Fold one heartbeat into a node row: the latest values win, absent ones keep the last known."""
    at = naive_utc(e.recorded_at)
    fresh = {
        "tenant_id": e.tenant_id,
        "org_id": e.org_id,
        "instance_id": e.instance_id,
        "instance_type": e.instance_type,
        "first_seen": at,
        "last_seen": at,
        "hostname": e.hostname,
        "port": e.port,
        "host_info_json": _json(e.host_info),
        "heartbeats": 1,
    }
    if row is None:
        return fresh
    return {
        **fresh,
        "first_seen": min(row["first_seen"], at),
        "last_seen": max(row["last_seen"], at),
        "hostname": e.hostname if e.hostname is not None else row["hostname"],
        "port": e.port if e.port is not None else row["port"],
        "host_info_json": fresh["host_info_json"] if e.host_info is not None else row["host_info_json"],
        "heartbeats": row["heartbeats"] + 1,
    }


class PoliciesProjection(_Dispatching):
    name = "policies"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.policies = Table(
            f"{prefix}policies",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("policy_id", String(64), primary_key=True),
            Column("org_id", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("description", Text, nullable=False),
            Column("category", String(64), nullable=False),
            Column("action", String(16), nullable=False),
            Column("enabled", Boolean, nullable=False),
            Column("rules_json", Text, nullable=False),
            Column("revision", Integer, nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("updated_at", DateTime, nullable=False),
            Index(f"ix_{prefix}policies_org", "tenant_id", "org_id"),
        )

    def handlers(self):
        return {"PolicyCreated": self._created, "PolicyUpdated": self._updated, "PolicyDeleted": self._deleted}

    @staticmethod
    def _definition(e) -> dict:
        return {
            "name": e.name, "description": e.description, "category": e.category, "action": e.action,
            "enabled": e.enabled, "rules_json": _json(e.rules),
        }

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyCreated = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        upsert_replace(
            conn,
            self.policies,
            [{"tenant_id": e.tenant_id, "policy_id": e.policy_id, "org_id": e.org_id, **self._definition(e),
              "revision": 1, "created_at": at, "updated_at": at}],
            ["tenant_id", "policy_id"],
        )

    def _updated(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyUpdated = recorded.event  # type: ignore[assignment]
        t = self.policies
        conn.execute(
            update(t)
            .where(t.c.tenant_id == e.tenant_id, t.c.policy_id == e.policy_id)
            .values(**self._definition(e), revision=t.c.revision + 1, updated_at=naive_utc(e.recorded_at))
        )

    def _deleted(self, conn: Connection, recorded: Recorded) -> None:
        e: PolicyDeleted = recorded.event  # type: ignore[assignment]
        t = self.policies
        conn.execute(delete(t).where(t.c.tenant_id == e.tenant_id, t.c.policy_id == e.policy_id))


class DocsAccessProjection(_Dispatching):
    """Who was granted or revoked docs access, by whom and why (Cloudflare stays the
    source of truth for membership; this is the history the portal keeps)."""

    name = "docs_access"
    version = 1

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.grants = Table(
            f"{prefix}docs_access",
            metadata,
            Column("email", String(254), primary_key=True),
            Column("granted", Boolean, nullable=False),
            Column("tenant_id", String(64), nullable=False),
            Column("org_id", String(64), nullable=False),
            Column("reason", Text, nullable=False),
            Column("changed_by", String(300), nullable=False),
            Column("changed_at", DateTime, nullable=False),
        )

    def handlers(self):
        return {"DocsAccessGranted": self._changed, "DocsAccessRevoked": self._changed}

    def _changed(self, conn: Connection, recorded: Recorded) -> None:
        e = recorded.event
        granted = isinstance(e, DocsAccessGranted)
        upsert_replace(
            conn,
            self.grants,
            [{"email": e.email, "granted": granted, "tenant_id": e.tenant_id, "org_id": e.org_id,
              "reason": getattr(e, "reason", ""), "changed_by": e.actor, "changed_at": naive_utc(e.recorded_at)}],
            ["email"],
        )

