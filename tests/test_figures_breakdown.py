"""The breakdown is exact for any window: whole days and hours from the rollups, the edges
from the raw events; never a partial bucket dropped or counted whole."""
from __future__ import annotations

import pytest

from projections import usage_analytics_queries as q
from tests.conftest import usage

COSTS = {
    "2026-10-31T11:00:00Z": "1",
    "2026-10-31T13:00:00Z": "2",
    "2026-10-31T23:45:00Z": "3",
    "2026-11-01T05:00:00Z": "4",
    "2026-11-01T11:59:59.999999Z": "5",
    "2026-11-01T12:30:00Z": "6",
}


@pytest.fixture
def spread(h, agent):
    events = [usage(f"e-{i}", occurred_at=at, cost_usd=cost) for i, (at, cost) in enumerate(COSTS.items())]
    assert h.post_events(agent, events).status_code == 202
    h.project()
    return agent


def breakdown(h, agent, group_by: str, start: str, end: str) -> dict:
    response = h.http.get(f"/api/v1/usage/breakdown?group_by={group_by}&start={start}&end={end}", headers=agent)
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize(
    "start,end,by_day,events",
    [
        ("2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z", {"2026-10-31": 5.0, "2026-11-01": 9.0}, 4),
        ("2026-10-31T23:30:00Z", "2026-11-01T00:00:00Z", {"2026-10-31": 3.0}, 1),
        ("2026-10-31T23:00:00Z", "2026-10-31T23:30:00Z", {}, 0),
        ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z", {"2026-10-31": 6.0, "2026-11-01": 15.0}, 6),
        ("2026-10-31T13:00:00Z", "2026-10-31T13:00:00.000001Z", {"2026-10-31": 2.0}, 1),
    ],
)
def test_any_window_gives_the_exact_sum(h, spread, start, end, by_day, events):
    days = breakdown(h, spread, "day", start, end)
    assert {item["key"]: item["cost_usd"] for item in days["breakdown"]} == by_day
    for group_by in ("day", "model", "provider", "team"):
        totals = breakdown(h, spread, group_by, start, end)["totals"]
        assert (totals["cost_usd"], totals["events"]) == (sum(by_day.values()), events)


def test_a_window_is_cut_into_rollup_buckets_and_raw_edges():
    from datetime import datetime

    parts = q.window_parts(datetime(2026, 10, 30, 22, 30), datetime(2026, 11, 2, 1, 15))
    assert [(s, a.isoformat(), b.isoformat()) for s, a, b in parts] == [
        ("raw", "2026-10-30T22:30:00", "2026-10-30T23:00:00"),
        ("hourly", "2026-10-30T23:00:00", "2026-10-31T00:00:00"),
        ("daily", "2026-10-31T00:00:00", "2026-11-02T00:00:00"),
        ("hourly", "2026-11-02T00:00:00", "2026-11-02T01:00:00"),
        ("raw", "2026-11-02T01:00:00", "2026-11-02T01:15:00"),
    ]
