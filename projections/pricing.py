"""Pricing read model: every ModelPriceSet override, kept as history (one row per event).

Prices are integer nano-dollars per 1,000 tokens, exact on SQLite and PostgreSQL.
"""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, MetaData, String, Table

from ledger.pricing.events import ModelPriceSet
from ledger.store import Recorded
from projections.framework import Projection, topics_of
from projections.sql import insert_ignore
from projections.usage import naive_utc, to_nanos


class PricingProjection(Projection):
    name = "pricing"
    version = 2
    topics = topics_of(ModelPriceSet)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.prices = Table(
            f"{prefix}model_prices",
            metadata,
            Column("position", BigInteger, primary_key=True),
            Column("provider", String(128), nullable=False),
            Column("model", String(256), nullable=False),
            Column("input_nanos_per_1k", BigInteger, nullable=False),
            Column("output_nanos_per_1k", BigInteger, nullable=False),
            Column("effective_from", DateTime, nullable=False),
            Column("set_at", DateTime, nullable=False),
            Column("actor", String(256), nullable=False),
            Column("cached_input_nanos_per_1m", BigInteger),  # NULL: the input price
            Column("cache_write_input_nanos_per_1m", BigInteger),
            Index(f"ix_{prefix}model_prices_model", "provider", "model", "effective_from"),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        rows = [
            {
                "position": r.position,
                "provider": r.event.provider,
                "model": r.event.model,
                "input_nanos_per_1k": to_nanos(r.event.input_per_1k),
                "output_nanos_per_1k": to_nanos(r.event.output_per_1k),
                "effective_from": naive_utc(r.event.effective_from),
                "set_at": naive_utc(r.event.recorded_at),
                "actor": r.event.actor,
                "cached_input_nanos_per_1m": _nanos_or_none(r.event.cached_input_per_1m),
                "cache_write_input_nanos_per_1m": _nanos_or_none(r.event.cache_write_input_per_1m),
            }
            for r in batch
            if isinstance(r.event, ModelPriceSet)
        ]
        insert_ignore(conn, self.prices, rows, ["position"])


def _nanos_or_none(value):
    return None if value is None else to_nanos(value)
