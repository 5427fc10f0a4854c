"""The node status read model: the latest heartbeat of every node (agent or orchestrator)."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import BigInteger, Column, Connection, DateTime, Index, Integer, MetaData, String, Table, Text, select, tuple_

from ledger.licensing.events import HeartbeatReceived
from ledger.store import Recorded
from projections.dispatch import json_text
from projections.framework import Projection, topics_of
from projections.sql import upsert_replace
from projections.usage import naive_utc


class NodeStatusProjection(Projection):
    """node_status: the latest heartbeat of every node (instance). Heartbeats are the most
    frequent portal event, so a batch is merged in memory and written once per node."""

    name = "node_status"
    version = 1
    topics = topics_of(HeartbeatReceived)

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.nodes = Table(
            f"{prefix}node_status",
            metadata,
            Column("tenant_id", String(64), primary_key=True),
            Column("org_id", String(64), primary_key=True),
            Column("instance_id", String(128), primary_key=True),
            Column("instance_type", String(16), nullable=False),
            Column("first_seen", DateTime, nullable=False),
            Column("last_seen", DateTime, nullable=False),
            Column("hostname", String(255)),
            Column("port", Integer),
            Column("host_info_json", Text),
            Column("heartbeats", BigInteger, nullable=False),
            Index(f"ix_{prefix}node_status_seen", "tenant_id", "org_id", "last_seen"),
        )

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        merged: dict[tuple[str, str, str], dict] = {}
        for recorded in batch:
            e = recorded.event
            if not isinstance(e, HeartbeatReceived):
                continue
            key = (e.tenant_id, e.org_id, e.instance_id)
            merged[key] = _merge_heartbeat(merged.get(key), e)
        if not merged:
            return
        t = self.nodes
        existing = {
            (r["tenant_id"], r["org_id"], r["instance_id"]): dict(r)
            for r in conn.execute(
                select(t).where(tuple_(t.c.tenant_id, t.c.org_id, t.c.instance_id).in_(list(merged)))
            ).mappings()
        }
        rows = []
        for key, fresh in merged.items():
            old = existing.get(key)
            if old is None:
                rows.append(fresh)
                continue
            newer = fresh["last_seen"] >= old["last_seen"]
            latest, earlier = (fresh, old) if newer else (old, fresh)
            rows.append({
                **latest,
                "first_seen": min(old["first_seen"], fresh["first_seen"]),
                "last_seen": max(old["last_seen"], fresh["last_seen"]),
                "hostname": latest["hostname"] if latest["hostname"] is not None else earlier["hostname"],
                "port": latest["port"] if latest["port"] is not None else earlier["port"],
                "host_info_json": latest["host_info_json"] if latest["host_info_json"] is not None else earlier["host_info_json"],
                "heartbeats": old["heartbeats"] + fresh["heartbeats"],
            })
        upsert_replace(conn, t, rows, ["tenant_id", "org_id", "instance_id"])


def _merge_heartbeat(row: dict | None, e: HeartbeatReceived) -> dict:
    """Fold one heartbeat into a node row: the latest values win, absent ones keep the last known."""
    at = naive_utc(e.recorded_at)
    fresh = {
        "tenant_id": e.tenant_id,
        "org_id": e.org_id,
        "instance_id": e.instance_id,
        "instance_type": e.instance_type,
        "first_seen": at,
        "last_seen": at,
        "hostname": e.hostname,
        "port": e.port,
        "host_info_json": json_text(e.host_info),
        "heartbeats": 1,
    }
    if row is None:
        return fresh
    return {
        **fresh,
        "first_seen": min(row["first_seen"], at),
        "last_seen": max(row["last_seen"], at),
        "hostname": e.hostname if e.hostname is not None else row["hostname"],
        "port": e.port if e.port is not None else row["port"],
        "host_info_json": fresh["host_info_json"] if e.host_info is not None else row["host_info_json"],
        "heartbeats": row["heartbeats"] + 1,
    }
