"""The JSON of budget holds: a hold as the API answers it, and the held/available amounts
that budget answers add."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.budgets.events import BudgetHoldCommitted, BudgetHoldPlaced, HeldAmount
from ledger.budgets.hold_commands import Settled
from ledger.budgets.holds import actual_of, available, hold_state
from projections.usage import from_nanos
from projections.wire import money, timestamp

SETTLEMENT_STATES = {"BudgetHoldCommitted": "committed", "BudgetHoldReleased": "released", "BudgetHoldExpired": "expired"}


def _optional(value: Decimal | None) -> float | None:
    return None if value is None else money(value)


def held_json(held: HeldAmount, amount: Decimal | None = None) -> dict:
    key = "held_usd" if held.unit == "usd" else "held_credits"
    return {"budget_id": held.budget_id, key: money(held.amount if amount is None else amount)}


def placed_json(placed: BudgetHoldPlaced) -> dict:
    """What a granted reserve adds to the check's answer."""
    return {
        "hold_id": placed.hold_id,
        "expires_at": timestamp(placed.expires_at),
        "holds": [held_json(h) for h in placed.holds],
    }


def hold_json(found: Settled, now: datetime) -> dict:
    """A hold: its state at `now` (a held hold past its expiry is expired), amounts, times."""
    placed, settlement = found.placed, found.settlement
    terminal = SETTLEMENT_STATES[type(settlement).__name__] if settlement is not None else None
    committed = settlement if isinstance(settlement, BudgetHoldCommitted) else None
    return {
        "hold_id": placed.hold_id,
        "state": hold_state(terminal, placed.expires_at, now),
        "org_id": placed.org_id,
        "placed_at": timestamp(placed.recorded_at),
        "expires_at": timestamp(placed.expires_at),
        "settled_at": timestamp(settlement.recorded_at) if settlement is not None else None,
        "estimated_cost_usd": _optional(placed.estimated_cost_usd),
        "estimated_credits": _optional(placed.estimated_credits),
        "actual_cost_usd": _optional(committed.actual_cost_usd) if committed else None,
        "actual_credits": _optional(committed.actual_credits) if committed else None,
        "event_id": committed.event_id if committed else None,
        "committed_via": committed.via if committed else None,
        "holds": [
            {**held_json(h), **({"actual": money(actual_of(committed, h))} if committed else {})} for h in placed.holds
        ],
    }


def held_fields(unit: str, limit_nanos: int, used_nanos: int, held_nanos: int, with_used: bool = False) -> dict:
    """held_* and available_* (limit − used − held, at least 0) in the budget's unit, and
    used_* (spend recorded) first if asked: a budget's status says `used` already."""
    key = "usd" if unit == "usd" else "credits"
    return {
        **({f"used_{key}": money(from_nanos(used_nanos))} if with_used else {}),
        f"held_{key}": money(from_nanos(held_nanos)),
        f"available_{key}": money(from_nanos(available(limit_nanos, used_nanos, held_nanos))),
    }
