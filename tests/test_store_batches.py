"""Large appends (written with COPY on PostgreSQL): positions in order, conflicts as inserts."""
from __future__ import annotations

import pytest

from ledger.codec import decode_event
from ledger.store import COPY_THRESHOLD, NewEvent, StreamConflict, stream_id
from tests.conftest import usage


def _events(h, agent, prefix: str, count: int) -> list[NewEvent]:
    h.post_events(agent, [usage(f"{prefix}-seed")])
    template = h.store.read()[-1].event
    return [NewEvent(stream_id(prefix, str(i)), 1, template) for i in range(count)]


def test_a_large_batch_gets_consecutive_positions_in_its_own_order(h, agent):
    events = _events(h, agent, "big", COPY_THRESHOLD + 7)
    before = h.store.max_position()
    positions = h.store.append(events)
    assert positions == sorted(positions) and positions[0] > before and len(positions) == len(events)
    stored = h.store.read_window(before, h.store.max_position())
    assert [n.id for n in stored] == positions
    assert [str(n.originator_id).replace("-", "") for n in stored] == [e.stream_id.hex for e in events]
    assert all(decode_event(n.state) == events[0].event for n in stored)


def test_a_large_batch_with_a_taken_version_conflicts_and_appends_nothing(h, agent):
    events = _events(h, agent, "taken", COPY_THRESHOLD + 3)
    h.store.append(events[5:6])
    head = h.store.max_position()
    with pytest.raises(StreamConflict):
        h.store.append(events)
    assert h.store.max_position() == head
    assert h.store.append(events[:5] + events[6:])[-1] > head  # the store still appends afterwards
