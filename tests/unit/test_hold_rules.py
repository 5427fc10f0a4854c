"""Budget hold rules (ledger/budgets/holds.py): what counts, when a hold expires, how a
period's holds change. No database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger.budgets.events import BudgetHoldCommitted, HeldAmount, PeriodHold
from ledger.budgets.holds import (
    PeriodState,
    actual_of,
    available,
    counts,
    expiry,
    fingerprint,
    hold_state,
)
from ledger.budgets.rules import BudgetUse, Estimate, decide

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
D = Decimal


def hold(hold_id: str, amount: str, seconds: int | None = 60) -> PeriodHold:
    return PeriodHold(hold_id=hold_id, amount=D(amount), expires_at=None if seconds is None else NOW + timedelta(seconds=seconds))


def test_a_hold_counts_strictly_before_its_expiry():
    assert counts(NOW + timedelta(microseconds=1), NOW)
    assert not counts(NOW, NOW)
    assert counts(None, NOW)  # committed: no expiry
    assert counts(datetime(2026, 11, 20, 12, 0, 1), NOW)  # naive is UTC


def test_expiry_is_now_plus_ttl():
    assert expiry(NOW, 300) == NOW + timedelta(seconds=300)


def test_held_sums_outstanding_holds_that_still_count():
    state = PeriodState(3, (hold("a", "1", 10), hold("b", "2.5", 0), hold("c", "0.5", 100)))
    assert state.held(NOW) == D("1.5")
    assert state.held(NOW + timedelta(seconds=10)) == D("0.5")


def test_pending_commits_count_until_the_read_model_counted_them():
    state = PeriodState(2, committed=(hold("a", "0.4", None), hold("b", "3", None)))
    assert state.pending(set()) == D("3.4")
    assert state.pending({"a"}) == D("3")
    pruned = state.pruned(NOW, {"b"})
    assert [h.hold_id for h in pruned.committed] == ["a"] and pruned.version == 2


def test_settling_moves_a_hold_out_of_the_outstanding_list():
    state = PeriodState(1, (hold("a", "1"), hold("b", "2")))
    committed = state.settled("a", D("1.7"))  # an actual above the hold counts in full
    assert [h.hold_id for h in committed.outstanding] == ["b"]
    assert committed.committed == (PeriodHold(hold_id="a", amount=D("1.7")),)
    released = state.settled("b", None)
    assert [h.hold_id for h in released.outstanding] == ["a"] and released.committed == ()
    assert state.placed(hold("c", "1")).outstanding[-1].hold_id == "c"


def test_pruning_drops_expired_holds():
    state = PeriodState(5, (hold("old", "1", -1), hold("new", "1", 1)))
    assert [h.hold_id for h in state.pruned(NOW, ()).outstanding] == ["new"]


@pytest.mark.parametrize("terminal, seconds, state", [
    (None, 1, "held"), (None, 0, "expired"), ("committed", -5, "committed"), ("released", 5, "released"),
    ("expired", 5, "expired"),
])
def test_hold_state(terminal, seconds, state):
    assert hold_state(terminal, NOW + timedelta(seconds=seconds), NOW) == state


def test_available_is_limit_minus_used_minus_held_never_negative():
    assert available(D(50), D(8), D(30)) == D(12)
    assert available(D(50), D(49.5), D(1)) == 0


def test_the_fingerprint_depends_on_every_field_and_not_on_order():
    a = fingerprint({"x": 1, "y": D("0.5"), "z": None})
    assert a == fingerprint({"z": None, "y": D("0.5"), "x": 1})
    assert a != fingerprint({"x": 1, "y": D("0.6"), "z": None})


def test_the_actual_of_a_commit_is_in_the_held_budgets_unit():
    held_usd = HeldAmount(budget_id="u", unit="usd", amount=D(1), period="daily", period_start=NOW)
    held_credits = HeldAmount(budget_id="c", unit="credits", amount=D(1), period="daily", period_start=NOW)
    committed = BudgetHoldCommitted(tenant_id="t", recorded_at=NOW, actor="a", hold_id="h", via="call", holds=(),
                                    occurred_at=NOW, actual_cost_usd=D("0.3"))
    assert actual_of(committed, held_usd) == D("0.3") and actual_of(committed, held_credits) == 0


def test_the_check_decides_on_used_plus_held():
    budget = BudgetUse(budget_id="b", name="B", unit="usd", on_exceed="block", limit=D(50), used=D(8), held=D(41))
    assert decide([budget], Estimate(usd=D(1))).allowed
    refused = decide([budget], Estimate(usd=D("1.01")))
    assert not refused.allowed and refused.deciding.budget.percentage == D(98)
    assert not decide([BudgetUse(budget_id="b", name="B", unit="usd", on_exceed="block", limit=D(50), used=D(0), held=D(50))]).allowed


def test_dropping_counted_commits_remembers_the_spend_position_they_are_in():
    state = PeriodState(2, committed=(hold("a", "0.4", None),), spend_position=7)
    assert state.pruned(NOW, {"a"}, 12).spend_position == 12
    assert state.pruned(NOW, set(), 12).spend_position == 7  # nothing dropped: nothing to remember
    assert state.pruned(NOW, {"a"}, 3).spend_position == 7
    assert state.placed(hold("b", "1")).settled("b", D(1)).spend_position == 7
