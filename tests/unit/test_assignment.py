"""The split of the read models over worker processes: balanced, and the same in every process."""
from __future__ import annotations

from projections.registry import all_projections
from workers.assignment import COSTS, DEFAULT_COST, split

NAMES = [p.name for p in all_projections()]


def _load(share: set[str]) -> float:
    return sum(COSTS.get(n, DEFAULT_COST) for n in share)


def test_every_projection_is_run_by_exactly_one_worker():
    for workers in (1, 2, 3, 5):
        shares = split(NAMES, workers)
        assert len(shares) == workers
        assert sorted(n for share in shares for n in share) == sorted(NAMES)


def test_the_heavy_projections_are_spread_and_the_loads_are_close():
    first, second = split(NAMES, 2)
    assert {"usage_rollups", "usage_events"} & first and {"usage_rollups", "usage_events"} & second
    heaviest = max(COSTS.values())
    assert abs(_load(first) - _load(second)) <= heaviest / 2


def test_every_process_computes_the_same_split_whatever_order_it_lists_the_projections_in():
    assert split(NAMES, 3) == split(list(reversed(NAMES)), 3)
