"""Stream ids are stored as the originator ids of ledger events: `stream_id` must give the
uuid5 every stored event was appended under, for any parts."""
from __future__ import annotations

from uuid import uuid5

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.store import _NAMESPACE, stream_id
from ledger.usage.streams import usage_stream


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8")), min_size=1, max_size=4))
def test_a_stream_id_is_the_uuid5_of_its_parts(parts):
    assert stream_id(*parts) == uuid5(_NAMESPACE, "\x1f".join(parts))


def test_a_usage_stream_id_does_not_change():
    assert str(usage_stream("t-1", "e-1")) == "faf87b6b-2306-58c2-8c7e-48cae945ab52"  # as stored by earlier releases
