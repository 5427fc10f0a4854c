"""Helpers for the tamper-evidence tests: writing many events fast, sealing, and damaging
the database directly the way someone with database access would."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid5

from sqlalchemy import Engine, text

from ledger.chain.hashes import GENESIS_HASH, Signer, chain_hashes
from ledger.identity.events import TenantCreated
from ledger.usage.events import Usage, UsageRecorded
from ledger.store import EVENTS_TABLE, LedgerStore, NewEvent
from projections.framework import catch_up
from projections.ledger_chain import SealingProjection

NAMESPACE = UUID("7d3c1a52-5c55-4b55-9a3e-0e2f1b6a9c01")
RECORDED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def usage_event(i: int) -> NewEvent:
    """A deterministic UsageRecorded (same bytes on every backend and every run)."""
    usage = Usage(
        event_id=f"evt-{i}",
        occurred_at=RECORDED_AT - timedelta(seconds=i),
        event_type="llm_request",
        client_id="cli_test",
        llm_provider="openai",
        llm_model="gpt-4o" if i % 3 else "gpt-4o-mini",
        prompt_tokens=1000 + i % 97,
        completion_tokens=200 + i % 13,
        total_tokens=1200 + i % 97 + i % 13,
        cost_usd=Decimal("0.0125"),
        metadata={"note": "café ☕", "n": i} if i % 50 == 0 else None,
    )
    event = UsageRecorded(tenant_id="acme", org_id="prod", recorded_at=RECORDED_AT, actor="client:cli_test", usage=usage)
    return NewEvent(uuid5(NAMESPACE, f"usage:{i}"), 1, event)


def tenant_event(i: int) -> NewEvent:
    event = TenantCreated(tenant_id=f"tenant-{i}", recorded_at=RECORDED_AT, actor="admin", name=f"Tenant {i}")
    return NewEvent(uuid5(NAMESPACE, f"tenant:{i}"), 1, event)


def append_events(store: LedgerStore, count: int, start: int = 0, batch: int = 1000) -> None:
    """Append `count` events in batches (every 10th a TenantCreated, the rest usage)."""
    for first in range(start, start + count, batch):
        store.append(
            [tenant_event(i) if i % 10 == 0 else usage_event(i) for i in range(first, min(first + batch, start + count))]
        )


def seal(engine: Engine, store: LedgerStore, settings) -> int:
    return catch_up(engine, store, SealingProjection(settings=settings), batch_size=1000)


# damage, done the way an insider with database access would --------------------------
def position_column(engine: Engine) -> str:
    return "notification_id" if engine.dialect.name == "postgresql" else "rowid"


def read_state(engine: Engine, position: int) -> bytes:
    with engine.connect() as conn:
        value = conn.execute(
            text(f"SELECT state FROM {EVENTS_TABLE} WHERE {position_column(engine)} = :p"), {"p": position}
        ).scalar_one()
    return value.encode() if isinstance(value, str) else bytes(value)


def edit_state(engine: Engine, position: int, old: bytes, new: bytes) -> None:
    state = read_state(engine, position)
    assert old in state, state
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {EVENTS_TABLE} SET state = :s WHERE {position_column(engine)} = :p"),
            {"s": state.replace(old, new, 1), "p": position},
        )


def delete_events(engine: Engine, where: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {EVENTS_TABLE} WHERE {where.format(pos=position_column(engine))}"))


def delete_chain_rows(engine: Engine, where: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM ledger_chain WHERE {where}"))


def insert_event_at(engine: Engine, position: int, new_event: NewEvent) -> None:
    from ledger.codec import encode_event

    pg = engine.dialect.name == "postgresql"
    stream = new_event.stream_id if pg else new_event.stream_id.hex
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {EVENTS_TABLE} ({position_column(engine)}, originator_id, originator_version, topic, state) "
                "VALUES (:p, :o, :v, :t, :s)"
            ),
            {"p": position, "o": stream, "v": new_event.version, "t": new_event.event.type, "s": encode_event(new_event.event)},
        )


def swap_positions(engine: Engine, a: int, b: int) -> None:
    pos = position_column(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {EVENTS_TABLE} SET {pos} = -1 WHERE {pos} = :a"), {"a": a})
        conn.execute(text(f"UPDATE {EVENTS_TABLE} SET {pos} = :a WHERE {pos} = :b"), {"a": a, "b": b})
        conn.execute(text(f"UPDATE {EVENTS_TABLE} SET {pos} = :b WHERE {pos} = -1"), {"b": b})


def rehash_chain_from(engine: Engine, position: int) -> None:
    """Recompute ledger_chain from `position` on, as an attacker without the key would."""
    pos = position_column(engine)
    stream = "replace(originator_id::text, '-', '')" if engine.dialect.name == "postgresql" else "originator_id"
    with engine.begin() as conn:
        prev = conn.execute(
            text("SELECT entry_hash FROM ledger_chain WHERE position < :p ORDER BY position DESC LIMIT 1"), {"p": position}
        ).scalar()
        rows = conn.execute(
            text(
                f"SELECT {pos}, {stream}, originator_version, topic, CAST(state AS {'bytea' if pos != 'rowid' else 'BLOB'}) "
                f"FROM {EVENTS_TABLE} WHERE {pos} >= :p ORDER BY {pos}"
            ),
            {"p": position},
        ).all()
        hashes = chain_hashes(bytes(prev) if prev else GENESIS_HASH, [tuple(r) for r in rows])
        for row, digest in zip(rows, hashes):
            conn.execute(text("UPDATE ledger_chain SET entry_hash = :h WHERE position = :p"), {"h": digest, "p": row[0]})


def chain_hash_at(engine: Engine, position: int) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(text("SELECT entry_hash FROM ledger_chain WHERE position = :p"), {"p": position}).scalar_one())


def set_checkpoint(engine: Engine, position: int, **values) -> None:
    with engine.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(text(f"UPDATE ledger_checkpoints SET {sets} WHERE position = :position"), {**values, "position": position})


def resign_checkpoint(engine: Engine, position: int, signer: Signer, claim_key_id: str | None = None) -> None:
    """Replace a checkpoint's signature with one made by `signer`."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT entry_hash, signed_at FROM ledger_checkpoints WHERE position = :p"), {"p": position}).one()
    signed_at = row.signed_at if isinstance(row.signed_at, datetime) else datetime.fromisoformat(row.signed_at)
    checkpoint = signer.sign(position, bytes(row.entry_hash), signed_at)
    if claim_key_id:
        from ledger.chain.hashes import checkpoint_message

        message = checkpoint_message(position, bytes(row.entry_hash).hex(), checkpoint.signed_at, claim_key_id)
        set_checkpoint(engine, position, signature=signer._key.sign(message), key_id=claim_key_id)
    else:
        set_checkpoint(engine, position, signature=checkpoint.signature, key_id=checkpoint.key_id)
