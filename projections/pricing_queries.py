"""Queries on the pricing read model, and the price book the ledger prices usage with."""
from __future__ import annotations

import threading
from datetime import timezone

from sqlalchemy import Connection, Engine, select

from ledger.pricing.prices import ModelPrice, PriceBook
from projections.framework import projection_positions
from projections.pricing import PricingProjection
from projections.usage import from_nanos

PRICING = PricingProjection()


def overrides(conn: Connection) -> list[ModelPrice]:
    """Every override in ledger order; for the same model and effective_from the later one wins."""
    t = PRICING.prices
    latest: dict[tuple, ModelPrice] = {}
    for r in conn.execute(select(t).order_by(t.c.position)).mappings():
        latest[(r["provider"], r["model"], r["effective_from"])] = _price(r)
    return list(latest.values())


def history(conn: Connection) -> list[dict]:
    t = PRICING.prices
    rows = conn.execute(select(t).order_by(t.c.provider, t.c.model, t.c.effective_from, t.c.position)).mappings()
    return [dict(r, price=_price(r)) for r in rows]


def _price(r) -> ModelPrice:
    return ModelPrice(
        r["provider"],
        r["model"],
        from_nanos(r["input_nanos_per_1k"]),
        from_nanos(r["output_nanos_per_1k"]),
        r["effective_from"].replace(tzinfo=timezone.utc),
        "override",
        None if r["cached_input_nanos_per_1m"] is None else from_nanos(r["cached_input_nanos_per_1m"]),
        None if r["cache_write_input_nanos_per_1m"] is None else from_nanos(r["cache_write_input_nanos_per_1m"]),
    )


class PriceBookCache:
    """The ledger's `price_book` provider: defaults plus the overrides of the pricing read
    model, rebuilt only when the pricing projection's position moved (one small query)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._position: int | None = None
        self._book = PriceBook()

    def __call__(self) -> PriceBook:
        with self.engine.connect() as conn:
            position = conn.execute(
                select(projection_positions.c.position).where(projection_positions.c.name == PRICING.name)
            ).scalar()
            if position == self._position:
                return self._book
            book = PriceBook(overrides(conn))
        with self._lock:
            self._position, self._book = position, book
        return book
