"""What the credit reports need to know about each organization's licence: its key, the
credits it includes, and the License Manager sync state (the credit reports' `creditPool` and
`sync`).

Fed by LicenseSynced / LicenseSyncFailed (ledger/licensing/manager.py). Licences themselves
(LicenseIssued, LicenseReplaced, LicenseRevoked) belong to the licences read model
(projections/licenses.py); this projection also follows them for the fields it needs
(`license_key`, `credits_included`), so that the sync job finds the keys of issued
licences.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Sequence

from sqlalchemy import BigInteger, Boolean, Column, Connection, DateTime, Integer, MetaData, String, Table, select

from ledger.licensing.events import LicenseIssued, LicenseReplaced, LicenseRevoked, LicenseSynced, LicenseSyncFailed
from ledger.store import Recorded
from projections.framework import Projection, topics_of
from projections.sql import upsert_replace
from projections.usage import naive_utc, to_nanos

STALE_AFTER = timedelta(hours=24)
CRITICAL_AFTER = timedelta(days=7)


class LicenseSyncProjection(Projection):
    name = "license_sync"
    version = 1
    topics = topics_of(LicenseIssued, LicenseReplaced, LicenseRevoked, LicenseSynced, LicenseSyncFailed)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.licenses = Table(
            f"{prefix}license_sync",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("org_id", String(64), primary_key=True),
            Column("license_key", String(256)),
            Column("revoked", Boolean, nullable=False, default=False),
            Column("issued_credits_nanos", BigInteger),
            Column("synced_credits_nanos", BigInteger),
            Column("tier", String(64)),
            Column("nodes_total", Integer),
            Column("expires_at", DateTime),
            Column("lm_status", String(64)),
            Column("synced_at", DateTime),
            Column("last_failed_at", DateTime),
            Column("last_failure_code", String(64)),
            Column("last_failure_message", String(500)),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        rows: dict[tuple[str, str], dict] = {}
        t = self.licenses
        for recorded in batch:
            e = recorded.event
            key = (e.tenant_id, e.org_id)
            if key not in rows:
                found = conn.execute(select(t).where(t.c.tenant_id == e.tenant_id, t.c.org_id == e.org_id)).mappings().first()
                rows[key] = dict(found) if found else {
                    c.name: None for c in t.columns
                } | {"tenant_id": e.tenant_id, "org_id": e.org_id, "revoked": False}
            row = rows[key]
            if isinstance(e, (LicenseIssued, LicenseReplaced)):
                license_key = e.license_key
                if license_key != row["license_key"]:
                    row.update(synced_at=None, last_failed_at=None, last_failure_code=None, last_failure_message=None,
                               synced_credits_nanos=None)
                credits = e.credits_included
                row.update(
                    license_key=license_key,
                    revoked=False,
                    issued_credits_nanos=None if credits is None else to_nanos(Decimal(credits)),
                )
            elif isinstance(e, LicenseRevoked):
                row["revoked"] = True
            elif isinstance(e, LicenseSynced):
                row.update(
                    license_key=e.license_key,
                    synced_credits_nanos=None if e.credits_included is None else to_nanos(e.credits_included),
                    tier=e.tier,
                    nodes_total=e.nodes_total,
                    expires_at=None if e.expires_at is None else naive_utc(e.expires_at),
                    lm_status=e.status,
                    synced_at=naive_utc(e.recorded_at),
                    last_failed_at=None,
                    last_failure_code=None,
                    last_failure_message=None,
                )
            elif isinstance(e, LicenseSyncFailed):
                row.update(
                    license_key=row["license_key"] or e.license_key,
                    last_failed_at=naive_utc(e.recorded_at),
                    last_failure_code=e.code,
                    last_failure_message=e.message,
                )
        upsert_replace(conn, t, list(rows.values()), ["tenant_id", "org_id"])


LICENSES = LicenseSyncProjection()


def license_of(conn: Connection, tenant_id: str, org_id: str) -> dict | None:
    t = LICENSES.licenses
    row = conn.execute(select(t).where(t.c.tenant_id == tenant_id, t.c.org_id == org_id)).mappings().first()
    return dict(row) if row else None


def keys_from_read_model(conn: Connection) -> list[tuple[str, str, str]]:
    """(tenant, org, license_key) of every licence with a key that is not revoked."""
    t = LICENSES.licenses
    rows = conn.execute(
        select(t.c.tenant_id, t.c.org_id, t.c.license_key)
        .where(t.c.license_key.is_not(None), t.c.revoked.is_(False))
        .order_by(t.c.tenant_id, t.c.org_id)
    ).all()
    return [tuple(r) for r in rows]


def staleness_level(synced_at: datetime | None, now: datetime) -> str | None:
    """null under 24 h since the last success, `stale` up to 7 days, `critical` after (or never)."""
    if synced_at is None:
        return "critical"
    age = now - synced_at
    if age < STALE_AFTER:
        return None
    return "stale" if age <= CRITICAL_AFTER else "critical"
