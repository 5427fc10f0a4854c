"""The budget rules on their own: no database, no Flask. Amounts are Decimals in the
budget's unit (USD or credits), or integer nanos: the rules only compare them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from ledger.budgets.rules import (
    ALLOWED,
    PERIODS,
    BudgetUse,
    Estimate,
    add_months,
    budget_status,
    decide,
    exceeded,
    percentage,
    period_bounds,
    period_starts,
    refuses,
    rounded_percentage,
    threshold_crossed,
    thresholds_crossed,
    usage_scopes,
)

UTC = timezone.utc
THRESHOLDS = (D(50), D(80), D(100))


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def budget(budget_id="b", *, unit="usd", on_exceed="block", limit="100", used="0", downgrade_model=None) -> BudgetUse:
    return BudgetUse(budget_id=budget_id, name=budget_id.title(), unit=unit, on_exceed=on_exceed,
                     limit=D(limit), used=D(used), downgrade_model=downgrade_model)


def estimate(unit: str, amount: str) -> Estimate:
    return Estimate(**{unit: D(amount)})


# the boundaries at 100 % ---------------------------------------------------------------
@pytest.mark.parametrize("unit", ["usd", "credits"])
def test_a_block_budget_at_exactly_its_limit_refuses_and_its_status_is_exceeded(unit):
    full = budget(unit=unit, limit="100", used="100")
    decision = decide([full], estimate(unit, "0"))
    assert (decision.allowed, decision.action, decision.deciding.budget) == (False, "block", full)
    assert budget_status(full.used, full.limit, THRESHOLDS) == "exceeded"
    assert exceeded(full.used, full.limit) and refuses(full.used, full.limit)


@pytest.mark.parametrize("unit", ["usd", "credits"])
def test_a_request_that_fits_exactly_is_allowed_and_the_next_is_refused(unit):
    almost = budget(unit=unit, limit="100", used="99.5")
    assert decide([almost], estimate(unit, "0.5")) == ALLOWED
    assert decide([almost], estimate(unit, "0.500000001")).action == "block"
    # once that request is spent the budget is at 100 %: the next request is refused, even at 0
    spent = budget(unit=unit, limit="100", used="100")
    assert decide([spent], estimate(unit, "0")).allowed is False
    assert budget_status(spent.used, spent.limit, THRESHOLDS) == "exceeded"


@pytest.mark.parametrize("unit", ["usd", "credits"])
def test_just_under_the_limit_is_allowed_without_an_estimate_and_not_exceeded(unit):
    under = budget(unit=unit, limit="100", used="99.999999999")
    assert decide([under], Estimate()) == ALLOWED
    assert budget_status(under.used, under.limit, THRESHOLDS) == "warning"
    assert not exceeded(under.used, under.limit)


def test_an_estimate_counts_only_against_budgets_of_its_unit():
    usd, credits = budget("usd", unit="usd", used="99"), budget("credits", unit="credits", used="99")
    assert decide([usd, credits], Estimate(usd=D(2))).deciding.budget == usd
    assert decide([usd, credits], Estimate(credits=D(2))).deciding.budget == credits
    assert decide([usd, credits], Estimate(usd=D(1), credits=D(1))) == ALLOWED


@pytest.mark.parametrize(
    "used,limit,estimate_,refused",
    [(0, 1, 0, False), (0, 1, 1, False), (0, 1, 2, True), (1, 1, 0, True), (2, 1, 0, True), (999, 1000, 1, False)],
)
def test_refuses_on_integer_nanos_as_on_decimals(used, limit, estimate_, refused):
    assert refuses(used, limit, estimate_) is refused
    assert refuses(D(used) / 10**9, D(limit) / 10**9, D(estimate_) / 10**9) is refused


# the decision ----------------------------------------------------------------------------
def test_nothing_exceeded_is_allowed_without_an_action():
    assert decide([], Estimate(usd=D(5))) == ALLOWED
    assert decide([budget(used="10"), budget("w", on_exceed="warn", used="50")], Estimate(usd=D(5))) == ALLOWED


def test_block_beats_downgrade_beats_warn():
    warn = budget("warn", on_exceed="warn", used="120")
    down = budget("down", on_exceed="downgrade", used="110", downgrade_model="small-model")
    block = budget("block", on_exceed="block", used="101")
    blocked = decide([warn, down, block])
    assert (blocked.allowed, blocked.action, blocked.deciding.budget, blocked.warnings) == (False, "block", block, ())
    assert blocked.deciding.message == "Budget exceeded"
    downgraded = decide([warn, down])
    assert (downgraded.allowed, downgraded.action, downgraded.downgrade_model) == (True, "downgrade", "small-model")
    assert downgraded.deciding.message == "Budget exceeded; use the downgrade model"
    assert [f.budget for f in downgraded.warnings] == [warn]
    warned = decide([warn])
    assert (warned.allowed, warned.action, warned.deciding, [f.budget for f in warned.warnings]) == (True, "warn", None, [warn])
    assert warned.downgrade_model is None


def test_among_equal_actions_the_fullest_budget_decides_then_the_smallest_id():
    fuller = budget("z-fuller", used="150")
    assert decide([budget("a", used="120"), fuller]).deciding.budget == fuller
    assert decide([budget("b", used="120"), budget("a", used="120")]).deciding.budget.budget_id == "a"
    # the fullest by percentage, not by amount
    small = budget("small", limit="10", used="20")
    assert decide([budget("big", limit="1000", used="1500"), small]).deciding.budget == small


def test_warnings_list_every_exceeded_warn_budget_in_order():
    first, second = budget("w2", on_exceed="warn", used="300"), budget("w1", on_exceed="warn", used="110")
    assert [f.budget for f in decide([second, first]).warnings] == [first, second]


def test_the_finding_carries_the_percentage_rounded_to_cents():
    assert budget(used="99.9").percentage == D("99.90")
    assert budget(limit="3", used="2").percentage == D("66.67")
    assert budget(limit="1000", used="1100").percentage == D("110.00")


# status and thresholds --------------------------------------------------------------------
@pytest.mark.parametrize(
    "used,status",
    [("0", "ok"), ("49.99", "ok"), ("50", "warning"), ("99.99", "warning"), ("100", "exceeded"), ("150", "exceeded")],
)
def test_status_is_ok_then_warning_then_exceeded(used, status):
    assert budget_status(D(used), D(100), THRESHOLDS) == status


def test_warning_needs_a_threshold_below_100_percent():
    assert budget_status(D(99), D(100), ()) == "ok"
    assert budget_status(D(99), D(100), (D(100), D(120))) == "ok"
    assert budget_status(D(100), D(100), ()) == "exceeded"
    assert budget_status(D("12.5"), D(100), (D("12.5"),)) == "warning"


def test_a_threshold_is_crossed_when_the_percentage_reaches_it_exactly():
    assert threshold_crossed(D(50), D(100), D(50))
    assert not threshold_crossed(D("49.999999999"), D(100), D(50))
    assert threshold_crossed(1, 3, D("33.33")) and not threshold_crossed(1, 3, D("33.34"))
    assert thresholds_crossed(D(85), D(100), THRESHOLDS) == [D(50), D(80)]
    assert thresholds_crossed(D(100), D(100), THRESHOLDS) == list(THRESHOLDS)
    assert thresholds_crossed(D(300), D(100), (D(250), D(1000))) == [D(250)]


@pytest.mark.parametrize("used,limit", [(D(100), D(100)), (D("99.999999999"), D(100)), (10**11, 10**11), (10**11 - 1, 10**11)])
def test_the_100_percent_threshold_is_crossed_exactly_when_the_budget_is_exceeded(used, limit):
    assert threshold_crossed(used, limit, D(100)) is exceeded(used, limit)


def test_percentage():
    assert percentage(D(1), D(3)) == D(100) / D(3)
    assert percentage(D(5), D(0)) == 0
    assert rounded_percentage(D(1), D(8)) == D("12.50") and rounded_percentage(D(1), D(3)) == D("33.33")
    assert rounded_percentage(10**9, 3 * 10**9) == D("33.33")


# periods --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "period,moment,start,end",
    [
        ("daily", at(2026, 11, 30, 23, 59, 59), at(2026, 11, 30), at(2026, 12, 1)),
        ("daily", at(2028, 2, 29, 12), at(2028, 2, 29), at(2028, 3, 1)),  # leap day
        ("daily", at(2026, 12, 31, 23, 59, 59, 999999), at(2026, 12, 31), at(2027, 1, 1)),
        ("weekly", at(2026, 11, 22, 23, 59, 59), at(2026, 11, 16), at(2026, 11, 23)),  # Sunday
        ("weekly", at(2026, 11, 23), at(2026, 11, 23), at(2026, 11, 30)),  # Monday
        ("weekly", at(2027, 1, 1), at(2026, 12, 28), at(2027, 1, 4)),  # ISO week across the year
        ("weekly", at(2028, 3, 1), at(2028, 2, 28), at(2028, 3, 6)),  # across a leap day
        ("monthly", at(2027, 1, 31, 23, 59, 59), at(2027, 1, 1), at(2027, 2, 1)),  # Jan 31 → Feb
        ("monthly", at(2027, 2, 1), at(2027, 2, 1), at(2027, 3, 1)),
        ("monthly", at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
        ("monthly", at(2028, 2, 29), at(2028, 2, 1), at(2028, 3, 1)),
        ("monthly", at(2027, 2, 28), at(2027, 2, 1), at(2027, 3, 1)),
        ("quarterly", at(2026, 2, 14), at(2026, 1, 1), at(2026, 4, 1)),
        ("quarterly", at(2026, 3, 31, 23, 59, 59), at(2026, 1, 1), at(2026, 4, 1)),
        ("quarterly", at(2026, 9, 30, 23, 59), at(2026, 7, 1), at(2026, 10, 1)),
        ("quarterly", at(2026, 10, 1), at(2026, 10, 1), at(2027, 1, 1)),
        ("quarterly", at(2026, 12, 31, 23, 59, 59), at(2026, 10, 1), at(2027, 1, 1)),
        ("quarterly", at(2028, 2, 29), at(2028, 1, 1), at(2028, 4, 1)),
        ("yearly", at(2028, 12, 31, 23, 59, 59), at(2028, 1, 1), at(2029, 1, 1)),
        ("yearly", at(2029, 1, 1), at(2029, 1, 1), at(2030, 1, 1)),
        ("yearly", at(2028, 2, 29), at(2028, 1, 1), at(2029, 1, 1)),
    ],
)
def test_period_bounds(period, moment, start, end):
    assert period_bounds(period, moment) == (start, end)


def test_every_day_of_a_year_lies_in_its_periods():
    moment = at(2028, 1, 1, 12)
    while moment.year == 2028:
        for period in PERIODS:
            start, end = period_bounds(period, moment)
            assert start <= moment < end and start.tzinfo == UTC
            assert period_bounds(period, start) == (start, end) and period_bounds(period, end)[0] == end
        assert period_bounds("weekly", moment)[0].weekday() == 0  # ISO weeks start on Monday
        moment += timedelta(days=1)


def test_other_offsets_and_naive_times_are_taken_in_utc():
    east = timezone(timedelta(hours=5))
    # 2026-12-01 03:00 at +05:00 is still November 30 in UTC
    assert period_bounds("monthly", datetime(2026, 12, 1, 3, tzinfo=east)) == (at(2026, 11, 1), at(2026, 12, 1))
    assert period_bounds("daily", datetime(2026, 12, 1, 3)) == (at(2026, 12, 1), at(2026, 12, 2))


def test_an_unknown_period_is_an_error():
    with pytest.raises(ValueError):
        period_bounds("hourly", at(2026, 1, 1))


def test_period_starts_and_month_arithmetic():
    assert period_starts(at(2028, 2, 29, 13)) == {
        "daily": at(2028, 2, 29), "weekly": at(2028, 2, 28), "monthly": at(2028, 2, 1),
        "quarterly": at(2028, 1, 1), "yearly": at(2028, 1, 1),
    }
    assert add_months(at(2026, 11, 1), 2) == at(2027, 1, 1)
    assert add_months(at(2026, 1, 1), -1) == at(2025, 12, 1)
    assert add_months(at(2026, 10, 1), 3) == at(2027, 1, 1)


# scopes ---------------------------------------------------------------------------------
def usage(**attributes):
    fields = dict.fromkeys(("team_id", "agent_id", "workflow_id", "user_id", "app_id"))
    return SimpleNamespace(**{**fields, **attributes})


def test_a_usage_always_counts_against_its_organization():
    assert usage_scopes(usage()) == [("organization", "")]


def test_a_usage_counts_against_every_scope_it_names_in_a_fixed_order():
    assert usage_scopes(usage(app_id="console", team_id="eng", user_id="jdoe", agent_id="bot", workflow_id="nightly")) == [
        ("organization", ""), ("team", "eng"), ("agent", "bot"), ("workflow", "nightly"), ("user", "jdoe"), ("app", "console"),
    ]
    assert usage_scopes(usage(team_id="", agent_id="bot")) == [("organization", ""), ("agent", "bot")]


def test_only_the_budgets_of_the_scopes_decide():
    by_scope = {("organization", ""): [budget("org", used="1")], ("agent", "bot"): [budget("agent", used="100")]}
    matching = lambda u: [b for pair in usage_scopes(u) for b in by_scope.get(pair, ())]  # noqa: E731
    assert decide(matching(usage(agent_id="other"))) == ALLOWED
    assert decide(matching(usage(agent_id="bot"))).deciding.budget.budget_id == "agent"
