"""The licences read model: one row per organization's licence and its terms."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Connection, DateTime, Integer, MetaData, String, Table, update

from ledger.licensing.events import LicenseIssued, LicenseReplaced, LicenseRevoked
from ledger.store import Recorded
from projections.dispatch import DispatchingProjection
from projections.sql import upsert_replace
from projections.usage import naive_utc, to_nanos


class LicensesProjection(DispatchingProjection):
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
        return {LicenseIssued: self._issued, LicenseReplaced: self._replaced, LicenseRevoked: self._revoked}

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
