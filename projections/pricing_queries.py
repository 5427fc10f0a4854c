"""Queries on the pricing read model, and the price book the ledger prices usage with."""
from __future__ import annotations

import threading
from datetime import timezone

from decimal import Decimal

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from ledger.pricing.credits import CreditRate, CreditRateBook
from ledger.pricing.events import CreditRateSet, ModelPriceSet
from ledger.pricing.prices import ModelPrice, PriceBook
from ledger.store import LedgerStore
from projections.credits import CreditsProjection
from projections.framework import projection_positions, topics_of
from projections.pricing import PricingProjection
from projections.usage import from_nanos

PRICING = PricingProjection()
CREDITS = CreditsProjection()
RATE_TOPICS = topics_of(ModelPriceSet, CreditRateSet)


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


class LedgerRates:
    """The ledger's `books` (price book and credit-rate book): defaults plus every
    ModelPriceSet and CreditRateSet appended before the call, read from the ledger itself
    so that a price set a moment ago prices the next event, however far the read models
    lag (or while they are rebuilt).

    The first call starts from the pricing and credits read models (their rows up to their
    positions); every call then reads the price and rate events appended since the last
    position it saw (one indexed range of the ledger, filtered by topic)."""

    def __init__(self, store: LedgerStore, engine: Engine, window: int = 50_000):
        self.store = store
        self.engine = engine
        self.window = window
        self._lock = threading.Lock()
        self._seen: int | None = None
        self._prices: dict[int, ModelPrice] = {}
        self._rates: dict[int, CreditRate] = {}
        self._books: tuple[PriceBook, CreditRateBook] = (PriceBook(), CreditRateBook())

    def current(self) -> tuple[PriceBook, CreditRateBook]:
        with self._lock:
            fresh = self._seen is None
            if fresh:
                self._seen = self._from_read_models()
            if self._read_ledger() or fresh:
                self._books = (
                    PriceBook(p for _, p in sorted(self._prices.items())),
                    CreditRateBook(r for _, r in sorted(self._rates.items())),
                )
            return self._books

    def _from_read_models(self) -> int:
        """The rows the read models hold and the lowest position both have passed."""
        rates = CREDITS.rates
        try:
            with self.engine.connect() as conn:
                passed = dict(
                    conn.execute(
                        select(projection_positions.c.name, projection_positions.c.position).where(
                            projection_positions.c.name.in_([PRICING.name, CREDITS.name])
                        )
                    ).all()
                )
                for r in conn.execute(select(PRICING.prices)).mappings():
                    self._prices[r["position"]] = _price(r)
                for r in conn.execute(select(rates)).mappings():
                    self._rates[r["position"]] = CreditRate(
                        r["resource_type"], Decimal(r["credits_per_unit"]), r["effective_from"].replace(tzinfo=timezone.utc), "override"
                    )
        except DBAPIError:  # read models not built yet: read the ledger from the start
            self._prices.clear()
            self._rates.clear()
            return 0
        return min(passed.get(PRICING.name, 0), passed.get(CREDITS.name, 0))

    def _read_ledger(self) -> bool:
        """Take in the price and rate events up to the ledger's head; whether there were any.
        One round trip when the books are nearly current (every call after the first); the
        first reads windows of the ledger."""
        changed = False
        after = self._seen or 0
        head, recent = self.store.head_and_topics(after, RATE_TOPICS) if after else (self.store.max_position(), None)
        while after < head:
            stop = head if recent is not None else min(head, after + self.window)
            for recorded in recent if recent is not None else self.store.read(after, stop, RATE_TOPICS):
                event = recorded.event
                if isinstance(event, ModelPriceSet):
                    self._prices[recorded.position] = ModelPrice(
                        event.provider, event.model, event.input_per_1k, event.output_per_1k,
                        event.effective_from.astimezone(timezone.utc), "override",
                    )
                    changed = True
                elif isinstance(event, CreditRateSet):
                    self._rates[recorded.position] = CreditRate(
                        event.resource_type, event.credits_per_unit, event.effective_from.astimezone(timezone.utc), "override"
                    )
                    changed = True
            after = stop
        self._seen = max(after, self._seen or 0)
        return changed
