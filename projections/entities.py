"""The entities read model: names of apps, users and agents (EntityRegistered), so that
credit reports show "Sales Dashboard" rather than an id."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Column, Connection, DateTime, MetaData, String, Table, and_, or_, select

from ledger.identity.events import EntityRegistered
from ledger.store import Recorded
from projections.framework import Projection, topics_of
from projections.sql import upsert_replace
from projections.usage import naive_utc


class EntitiesProjection(Projection):
    name = "entities"
    version = 1
    topics = topics_of(EntityRegistered)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.entities = Table(
            f"{prefix}entities",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("entity_type", String(16), primary_key=True),
            Column("entity_id", String(128), primary_key=True),
            Column("name", String(200), nullable=False),
            Column("slug", String(200)),
            Column("owner_id", String(128)),
            Column("display_name", String(200)),
            Column("registered_at", DateTime, nullable=False),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        rows = {}
        for recorded in batch:
            e = recorded.event
            if isinstance(e, EntityRegistered):
                rows[(e.tenant_id, e.entity_type, e.entity_id)] = {
                    "tenant_id": e.tenant_id,
                    "entity_type": e.entity_type,
                    "entity_id": e.entity_id,
                    "name": e.name,
                    "slug": e.slug,
                    "owner_id": e.owner_id,
                    "display_name": e.display_name,
                    "registered_at": naive_utc(e.recorded_at),
                }
        upsert_replace(conn, self.entities, list(rows.values()), ["tenant_id", "entity_type", "entity_id"])


ENTITIES = EntitiesProjection()


def entities_by_key(conn: Connection, tenant_id: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """(entity_type, entity_id) → the registered entity, for the given keys of one tenant."""
    if not keys:
        return {}
    t = ENTITIES.entities
    found: dict[tuple[str, str], dict] = {}
    items = sorted(keys)
    for start in range(0, len(items), 200):
        chunk = items[start : start + 200]
        rows = conn.execute(
            select(t).where(
                t.c.tenant_id == tenant_id,
                or_(*[and_(t.c.entity_type == kind, t.c.entity_id == eid) for kind, eid in chunk]),
            )
        ).mappings()
        for row in rows:
            found[(row["entity_type"], row["entity_id"])] = dict(row)
    return found
