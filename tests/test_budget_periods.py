"""Budget periods in UTC (pure rules, no database)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledger.budgets.rules import period_bounds

UTC = timezone.utc


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    "period,moment,start,end",
    [
        ("daily", at(2026, 11, 30, 23, 59, 59), at(2026, 11, 30), at(2026, 12, 1)),
        ("daily", at(2028, 2, 29, 12), at(2028, 2, 29), at(2028, 3, 1)),
        ("weekly", at(2026, 11, 22, 23, 59, 59), at(2026, 11, 16), at(2026, 11, 23)),  # Sunday
        ("weekly", at(2026, 11, 23), at(2026, 11, 23), at(2026, 11, 30)),  # Monday
        ("weekly", at(2027, 1, 1), at(2026, 12, 28), at(2027, 1, 4)),  # ISO week across the year
        ("monthly", at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
        ("monthly", at(2028, 2, 29), at(2028, 2, 1), at(2028, 3, 1)),
        ("monthly", at(2027, 2, 28), at(2027, 2, 1), at(2027, 3, 1)),
        ("quarterly", at(2026, 9, 30, 23, 59), at(2026, 7, 1), at(2026, 10, 1)),
        ("quarterly", at(2026, 10, 1), at(2026, 10, 1), at(2027, 1, 1)),
        ("quarterly", at(2026, 2, 14), at(2026, 1, 1), at(2026, 4, 1)),
        ("yearly", at(2028, 12, 31, 23, 59, 59), at(2028, 1, 1), at(2029, 1, 1)),
    ],
)
def test_period_bounds(period, moment, start, end):
    assert period_bounds(period, moment) == (start, end)


def test_other_offsets_are_converted_to_utc_first():
    east = timezone(timedelta(hours=5))
    # 2026-12-01 03:00 at +05:00 is still November 30 in UTC
    assert period_bounds("monthly", datetime(2026, 12, 1, 3, tzinfo=east)) == (at(2026, 11, 1), at(2026, 12, 1))
