"""The portal users read model: who may log in to which organization, with which
permissions, and when they last logged in. No password material is projected."""
from __future__ import annotations

from sqlalchemy import Column, Connection, DateTime, Index, MetaData, String, Table, Text, update

from ledger.identity.events import UserCreated, UserLoggedIn, UserPermissionsChanged
from ledger.store import Recorded
from projections.dispatch import DispatchingProjection, json_text
from projections.sql import upsert_replace
from projections.usage import naive_utc


class UsersProjection(DispatchingProjection):
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
            UserCreated: self._created,
            UserPermissionsChanged: self._changed,
            UserLoggedIn: self._logged_in,
        }

    def _created(self, conn: Connection, recorded: Recorded) -> None:
        e: UserCreated = recorded.event  # type: ignore[assignment]
        at = naive_utc(e.recorded_at)
        upsert_replace(
            conn,
            self.users,
            [{"email": e.email, "tenant_id": e.tenant_id, "org_id": e.org_id, "permissions_json": json_text(e.permissions),
              "created_at": at, "updated_at": at, "last_login_at": None}],
            ["email"],
        )

    def _changed(self, conn: Connection, recorded: Recorded) -> None:
        e: UserPermissionsChanged = recorded.event  # type: ignore[assignment]
        conn.execute(
            update(self.users)
            .where(self.users.c.email == e.email)
            .values(permissions_json=json_text(e.permissions), updated_at=naive_utc(e.recorded_at))
        )

    def _logged_in(self, conn: Connection, recorded: Recorded) -> None:
        e: UserLoggedIn = recorded.event  # type: ignore[assignment]
        conn.execute(update(self.users).where(self.users.c.email == e.email).values(last_login_at=naive_utc(e.recorded_at)))
