"""The projector's ledger reader: windows of positions, read-ahead, and what it does when
another worker moves the position or an event cannot be decoded."""
from __future__ import annotations

from eventsourcing.persistence import StoredEvent
from sqlalchemy import func, select

from ledger.store import stream_id
from projections.framework import Reader, check, parked_errors, positions, run_batch
from projections.usage import UsageRollupsProjection, UsageTables
from tests.conftest import usage

USAGE = UsageTables()


class CountingStore:
    """The ledger store, counting the windows read from it."""

    def __init__(self, store):
        self.store, self.windows = store, []

    def max_position(self) -> int:
        return self.store.max_position()

    def read_window(self, after, stop, topics=()):
        self.windows.append((after, stop))
        return self.store.read_window(after, stop, topics)


def rollup_events(h) -> int:
    with h.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(USAGE.daily.c.events), 0))).scalar_one())


def test_catching_up_reads_each_window_once_ahead_of_the_batch_that_applies_it(h, agent):
    h.post_events(agent, [usage(f"r-{i}", prompt_tokens=i) for i in range(40)])
    head = h.store.max_position()
    store = CountingStore(h.store)
    reader = Reader(store, UsageRollupsProjection(), batch_size=7)
    try:
        moved = [run_batch(h.engine, reader) for _ in range(head // 7 + 2)]
    finally:
        reader.close()
    assert sum(moved) == head and moved[-1] == 0
    windows = sorted(store.windows)
    assert windows == [(a, min(a + 7, head)) for a in range(0, head, 7)]  # contiguous, none read twice
    assert rollup_events(h) == 40


def test_two_workers_taking_turns_discard_each_others_stale_read_ahead(h, agent):
    for b in range(3):
        h.post_events(agent, [usage(f"t-{b}-{i}", prompt_tokens=i) for i in range(25)])
    h.post_events(agent, [usage("t-0-3", prompt_tokens=3)])  # a duplicate: no new position
    first, second = (Reader(h.store, UsageRollupsProjection(), batch_size=5) for _ in range(2))
    try:
        turns = 0
        while run_batch(h.engine, first) + run_batch(h.engine, second):
            turns += 1
    finally:
        first.close(), second.close()
    assert turns > 5
    with h.engine.connect() as conn:
        assert positions(conn)["usage_rollups"] == h.store.max_position()
    assert rollup_events(h) == 75
    assert check(h.engine, h.store, UsageRollupsProjection(), UsageRollupsProjection("shadow_")) == []


def test_an_event_that_cannot_be_decoded_is_parked_and_the_window_still_applies(h, agent):
    h.post_events(agent, [usage("d-1")])
    h.store.recorder.insert_events([StoredEvent(stream_id("garbage"), 1, "UsageRecorded", b"{not json")])
    h.post_events(agent, [usage("d-2")])
    h.project()
    with h.engine.connect() as conn:
        parked = {(p["projection"], p["event_type"]) for p in parked_errors(conn)}
        assert positions(conn)["usage_rollups"] == h.store.max_position()
    assert ("usage_rollups", "UsageRecorded") in parked and ("usage_events", "UsageRecorded") in parked
    assert rollup_events(h) == 2
