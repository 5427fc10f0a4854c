"""The one way to append to the ledger.

Every command of every concept appends through a Journal: a new stream (`start_stream`),
the next event of a stream (`extend_stream`), a one-off fact (`record_fact`) or a batch of
new events (`append`); `try_append` is for commands that decide themselves what a lost race
means (draw another key, skip a duplicate record). Each returns the ledger position it reached, so that callers can
read their own writes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Sequence
from uuid import UUID, uuid4

from ledger.errors import Conflict
from ledger.events import LedgerEvent
from ledger.store import LedgerStore, NewEvent, Recorded, StreamConflict


class Journal:
    def __init__(self, store: LedgerStore, clock):
        self.store = store
        self.clock = clock

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def stream(self, stream: UUID) -> list[Recorded]:
        """The events of one stream, oldest first (what commands fold their state from)."""
        return self.store.stream(stream)

    def last_in_stream(self, stream: UUID) -> Recorded | None:
        return self.store.last_in_stream(stream)

    def last_events(self, streams) -> dict[UUID, Recorded]:
        """The newest event of each of these streams that exists (one read)."""
        return self.store.last_events(streams)

    def append(self, new_events: Sequence[NewEvent]) -> list[int]:
        """Append atomically; StreamConflict when one of the streams moved on meanwhile."""
        return self.store.append(new_events)

    def exclusive(self, streams: Sequence[UUID]):
        """A context in which no other process holding it too reads or appends these
        streams; it yields their newest events, read once they are held."""
        return self.store.exclusive(streams)

    def start_stream(self, stream: UUID, event: LedgerEvent, code: str, message: str) -> int:
        """The first event of a stream; Conflict(code, message) when the stream exists."""
        try:
            return self.store.append_to_stream(stream, event, 0)
        except StreamConflict as error:
            raise Conflict(code, message) from error

    def extend_stream(self, stream: UUID, event: LedgerEvent, version: int) -> int:
        """The event after `version` of a stream; Conflict when someone else got there first."""
        try:
            return self.store.append_to_stream(stream, event, version)
        except StreamConflict as error:
            raise Conflict("CONCURRENT_UPDATE", "Changed by someone else meanwhile; retry") from error

    def try_append(self, stream: UUID, event: LedgerEvent, version: int) -> int | None:
        """The event after `version` of a stream; None when the stream moved on meanwhile."""
        try:
            return self.store.append_to_stream(stream, event, version)
        except StreamConflict:
            return None

    def record_fact(self, event: LedgerEvent) -> int:
        """A fact that belongs to no stream of its own (an access attempt, a delivery)."""
        return self.store.append([NewEvent(uuid4(), 1, event)])[0]
