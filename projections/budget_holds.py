"""The holds of the budget_status read model: one row per hold, one per (hold, budget).

Kept in the same projection as budget spend, in the same transactions, so the position of
budget_status says both what spend includes and which commits it counted: a hold committed
through the commit endpoint adds its actual cost to spend here (the commit is the spend), a
hold committed by a usage event is counted with that usage, and a usage event carrying the id
of a hold committed through the endpoint replaces the commit's figure. `held` is the stored state of a
hold not settled yet; whether it still counts is decided at read time (`expires_at`), so a
hold stops counting at its expiry before any expiry event.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, MetaData, String, Table, select

from ledger.budgets.events import (
    BudgetHoldCommitted,
    BudgetHoldExpired,
    BudgetHoldPlaced,
    BudgetHoldReleased,
)
from ledger.budgets.hold_commands import SCOPE_FIELDS
from ledger.budgets.holds import actual_of
from ledger.store import Recorded
from ledger.usage.events import Usage
from projections.exact import ExactInt
from projections.sql import upsert_replace
from projections.usage import from_nanos, naive_utc, to_nanos

SETTLED = {BudgetHoldCommitted: "committed", BudgetHoldReleased: "released", BudgetHoldExpired: "expired"}


def define_hold_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table]:
    holds = Table(
        f"{prefix}budget_holds",
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("hold_id", String(128), primary_key=True),
        Column("org_id", String(64), nullable=False),
        Column("state", String(16), nullable=False),  # held | committed | released | expired
        Column("via", String(8)),  # call | usage, for committed holds
        Column("event_id", String(128)),
        Column("placed_at", DateTime, nullable=False),
        Column("expires_at", DateTime, nullable=False),
        Column("settled_at", DateTime),
        Column("estimated_cost_nanos", ExactInt()),
        Column("estimated_credits_nanos", ExactInt()),
        Column("actual_cost_nanos", ExactInt()),
        Column("actual_credits_nanos", ExactInt()),
        Column("position", BigInteger, nullable=False),
        Column("settled_position", BigInteger),
        # a commit through the endpoint counts as spend at `spent_at` in these scopes until a
        # usage event carrying the hold's id arrives and replaces it (`replaced_by`)
        Column("spent_at", DateTime),
        *[Column(scope, String(128)) for scope in SCOPE_FIELDS],
        Column("replaced_by", String(128)),
        Index(f"ix_{prefix}budget_holds_due", "state", "expires_at"),
        Index(f"ix_{prefix}budget_holds_outstanding", "tenant_id", "state", "expires_at"),  # a tenant's held holds
    )
    amounts = Table(
        f"{prefix}budget_hold_amounts",
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("hold_id", String(128), primary_key=True),
        Column("budget_id", String(64), primary_key=True),
        Column("unit", String(8), nullable=False),
        Column("amount_nanos", ExactInt(), nullable=False),
        Column("actual_nanos", ExactInt()),
        Column("period", String(16), nullable=False),
        Column("period_start", DateTime, nullable=False),
        Column("budget_created_at", DateTime),  # the budget incarnation held (a recreated budget starts afresh)
        # read by hold only (its primary key): an index by budget let a plan made on stale
        # statistics scan every hold ever placed on the budget (projections/budget_queries.py)
    )
    return holds, amounts


def created_at(incarnation: str):
    return naive_utc(datetime.fromisoformat(incarnation)) if incarnation else None


def _nanos(value) -> int | None:
    return None if value is None else to_nanos(value)


class HoldBatch:
    """The hold rows one batch changes, written once at the end (`flush`)."""

    def __init__(self, holds: Table, amounts: Table, conn: Connection):
        self.holds, self.amounts, self.conn = holds, amounts, conn
        self.rows: dict[tuple[str, str], dict] = {}
        self.amount_rows: dict[tuple[str, str, str], dict] = {}
        self.loaded: set[tuple[str, str]] = set()  # holds whose rows and amounts were read (or found missing)

    def load(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read these holds' rows and all their amounts, those not read yet: the projection
        asks for a whole batch's settled holds at once, before its events ask one by one (a
        commit asks for every budget it was held on)."""
        wanted: dict[str, list[str]] = {}
        for tenant_id, hold_id in set(keys) - self.loaded - self.rows.keys():
            wanted.setdefault(tenant_id, []).append(hold_id)
        for tenant_id, hold_ids in wanted.items():
            for start in range(0, len(hold_ids), 500):
                chunk = hold_ids[start:start + 500]
                h, a = self.holds, self.amounts
                for found in self.conn.execute(select(h).where(h.c.tenant_id == tenant_id, h.c.hold_id.in_(chunk))).mappings():
                    self.rows[(tenant_id, found["hold_id"])] = dict(found)
                for found in self.conn.execute(select(a).where(a.c.tenant_id == tenant_id, a.c.hold_id.in_(chunk))).mappings():
                    self.amount_rows[(tenant_id, found["hold_id"], found["budget_id"])] = dict(found)
                self.loaded.update((tenant_id, hold_id) for hold_id in chunk)

    def placed(self, recorded: Recorded, event: BudgetHoldPlaced) -> None:
        self.rows[(event.tenant_id, event.hold_id)] = {
            "tenant_id": event.tenant_id, "hold_id": event.hold_id, "org_id": event.org_id, "state": "held",
            "via": None, "event_id": None, "placed_at": naive_utc(event.recorded_at),
            "expires_at": naive_utc(event.expires_at), "settled_at": None,
            "estimated_cost_nanos": _nanos(event.estimated_cost_usd),
            "estimated_credits_nanos": _nanos(event.estimated_credits),
            "actual_cost_nanos": None, "actual_credits_nanos": None,
            "position": recorded.position, "settled_position": None, "spent_at": None, "replaced_by": None,
            **{scope: getattr(event, scope) for scope in SCOPE_FIELDS},
        }
        for held in event.holds:
            self.amount_rows[(event.tenant_id, event.hold_id, held.budget_id)] = {
                "tenant_id": event.tenant_id, "hold_id": event.hold_id, "budget_id": held.budget_id,
                "unit": held.unit, "amount_nanos": to_nanos(held.amount), "actual_nanos": None,
                "period": held.period, "period_start": naive_utc(held.period_start), "budget_created_at": created_at(held.incarnation),
            }

    def settled(self, recorded: Recorded, event: BudgetHoldCommitted | BudgetHoldReleased | BudgetHoldExpired) -> None:
        row = self._row(event.tenant_id, event.hold_id)
        if row is None or row["state"] != "held":
            return
        row.update(state=SETTLED[type(event)], settled_at=naive_utc(event.recorded_at), settled_position=recorded.position)
        if isinstance(event, BudgetHoldCommitted):
            row.update(
                via=event.via, event_id=event.event_id, actual_cost_nanos=_nanos(event.actual_cost_usd),
                actual_credits_nanos=_nanos(event.actual_credits), spent_at=naive_utc(event.occurred_at),
            )
            for held in event.holds:
                amount = self._amount_row(event.tenant_id, event.hold_id, held.budget_id)
                if amount is not None:
                    amount["actual_nanos"] = to_nanos(actual_of(event, held))

    def is_held(self, event: BudgetHoldCommitted) -> bool:
        row = self._row(event.tenant_id, event.hold_id)
        return row is not None and row["state"] == "held"

    def replaced_spend(self, tenant_id: str, usage: Usage) -> Usage | None:
        """The spend a commit through the endpoint recorded for the hold this usage carries,
        when this usage is the first to carry it: the usage is the call's spend, so it
        replaces the commit's figure rather than adding to it (counted once)."""
        row = self._row(tenant_id, usage.hold_id) if usage.hold_id else None
        if row is None or row["state"] != "committed" or row["via"] != "call" or row["replaced_by"] is not None:
            return None
        row["replaced_by"] = usage.event_id
        return Usage(
            event_id=row["event_id"] or row["hold_id"], occurred_at=row["spent_at"].replace(tzinfo=timezone.utc),
            event_type="budget_hold", cost_usd=from_nanos(row["actual_cost_nanos"] or 0),
            credits=None if row["actual_credits_nanos"] is None else from_nanos(row["actual_credits_nanos"]),
            **{scope: row[scope] for scope in SCOPE_FIELDS},
        )

    @staticmethod
    def spend_of(event: BudgetHoldCommitted) -> Usage:
        """A commit through the endpoint as the spend it is (counted like a usage)."""
        return Usage(
            event_id=event.event_id or event.hold_id, occurred_at=event.occurred_at, event_type="budget_hold",
            cost_usd=event.actual_cost_usd or 0, credits=event.actual_credits, team_id=event.team_id,
            agent_id=event.agent_id, workflow_id=event.workflow_id, user_id=event.user_id, app_id=event.app_id,
        )

    def _row(self, tenant_id: str, hold_id: str) -> dict | None:
        key = (tenant_id, hold_id)
        if key not in self.rows:
            self.load([key])
        return self.rows.get(key)

    def _amount_row(self, tenant_id: str, hold_id: str, budget_id: str) -> dict | None:
        key = (tenant_id, hold_id, budget_id)
        if key not in self.amount_rows:
            self.load([(tenant_id, hold_id)])
        return self.amount_rows.get(key)

    def flush(self) -> None:
        upsert_replace(self.conn, self.holds, list(self.rows.values()), ["tenant_id", "hold_id"])
        upsert_replace(self.conn, self.amounts, list(self.amount_rows.values()), ["tenant_id", "hold_id", "budget_id"])
