"""Read models that apply each event with a handler registered for its class.

To follow a new event class, add it with its handler to `handlers()`; the projection's
topics follow from the classes, never from strings.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from sqlalchemy import Connection

from ledger.events import LedgerEvent
from ledger.store import Recorded
from projections.framework import Projection

Handler = Callable[[Connection, Recorded], None]


def json_text(value: Any) -> str | None:
    """The canonical JSON text kept in a read model's `*_json` column."""
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


class DispatchingProjection(Projection):
    def handlers(self) -> dict[type[LedgerEvent], Handler]:
        raise NotImplementedError

    @property
    def topics(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(cls.__name__ for cls in self.handlers())

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        handlers = self.handlers()
        for recorded in batch:
            handler = handlers.get(type(recorded.event))
            if handler is not None:
                handler(conn, recorded)
