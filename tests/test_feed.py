"""One read of the ledger for every projection of a worker process (projections/feed.py)."""
from __future__ import annotations

from projections.feed import Feed
from projections.framework import Reader, check, positions, run_batch
from projections.usage import UsageEventsProjection, UsageRollupsProjection
from tests.conftest import usage
from tests.test_projection_reader import CountingStore, rollup_events


def test_projections_sharing_a_feed_read_each_window_once_and_each_get_their_events(h, agent):
    h.post_events(agent, [usage(f"f-{i}", prompt_tokens=i) for i in range(30)])
    head = h.store.max_position()
    store = CountingStore(h.store)
    feed = Feed(store, batch_size=8)
    readers = [Reader(store, p, 8, feed) for p in (UsageRollupsProjection(), UsageEventsProjection())]
    try:
        while sum(run_batch(h.engine, r) for r in readers):
            pass
    finally:
        [r.close() for r in readers]
        feed.close()
    assert sorted(store.windows) == sorted(set(store.windows))  # no window read twice
    assert store.windows and all(stop == head or stop % 8 == 0 for _, stop in store.windows)
    with h.engine.connect() as conn:
        found = positions(conn)
    assert found["usage_rollups"] == found["usage_events"] == head
    assert rollup_events(h) == 30
    assert check(h.engine, h.store, UsageRollupsProjection(), UsageRollupsProjection("shadow_")) == []
    assert check(h.engine, h.store, UsageEventsProjection(), UsageEventsProjection("shadow_")) == []


def test_a_projection_that_starts_elsewhere_joins_the_shared_windows(h, agent):
    h.post_events(agent, [usage(f"g-{i}") for i in range(20)])
    rollups = Reader(h.store, UsageRollupsProjection(), 6)
    try:
        run_batch(h.engine, rollups)  # alone: 6 positions ahead of usage_events
    finally:
        rollups.close()
    feed = Feed(h.store, batch_size=6)
    readers = [Reader(h.store, p, 6, feed) for p in (UsageRollupsProjection(), UsageEventsProjection())]
    try:
        while sum(run_batch(h.engine, r) for r in readers):
            pass
    finally:
        [r.close() for r in readers]
        feed.close()
    assert rollup_events(h) == 20
    assert check(h.engine, h.store, UsageEventsProjection(), UsageEventsProjection("shadow_")) == []
