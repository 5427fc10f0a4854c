"""The sealing projector and its tables: ledger_chain and ledger_checkpoints.

`SealingProjection` sees every stored event (raw, undecoded) in position order and keeps
`ledger_chain(position, prev_position, entry_hash)` (ledger/chain/hashes.py defines the hash).
Every `LEDGER_CHECKPOINT_EVERY` sealed events it signs a checkpoint in the same
transaction; `sign_checkpoint_if_due` (a worker job) signs one every
`LEDGER_CHECKPOINT_MINUTES` when anything new was sealed.

ledger_chain is a read model: `usage-ledger rebuild` recomputes it from the events.
ledger_checkpoints is not: a checkpoint is a signed statement of what the ledger held at
`signed_at`, so it is kept across rebuilds (re-signing history would attest nothing).
Verify and export read them back through projections/ledger_snapshot.py.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)

from ledger.chain.hashes import GENESIS_HASH, Checkpoint, PublicKey, Signer, chain_hashes, format_signed_at
from ledger.errors import Invalid
from ledger.settings import Settings
from projections.framework import Projection
from projections.sql import insert_ignore, insert_rows

log = logging.getLogger("usage_ledger.sealing")

checkpoint_metadata = MetaData()
ledger_checkpoints = Table(
    "ledger_checkpoints",
    checkpoint_metadata,
    Column("position", BigInteger, primary_key=True),
    Column("entry_hash", LargeBinary(32), nullable=False),
    Column("signed_at", DateTime, nullable=False),  # naive UTC
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
)


def create_checkpoint_table(engine: Engine) -> None:
    checkpoint_metadata.create_all(engine)


# signing configuration ----------------------------------------------------------------
_signers: dict[tuple[str, float], Signer] = {}


def signer_for(settings: Settings) -> Signer | None:
    """The checkpoint signer, or None when no key file is configured (no checkpoints)."""
    path = settings.ledger_signing_key_file
    if not path:
        return None
    try:
        stamp = Path(path).stat().st_mtime
    except OSError:
        stamp = 0.0
    key = (path, stamp)
    if key not in _signers:
        _signers[key] = Signer.from_file(path)
    return _signers[key]


def served_public_key(settings: Settings) -> PublicKey | None:
    """The public key the API serves: LEDGER_PUBLIC_KEY_FILE, else the signing key's .pub."""
    candidates = [settings.ledger_public_key_file]
    if settings.ledger_signing_key_file:
        candidates += [f"{settings.ledger_signing_key_file}.pub", settings.ledger_signing_key_file]
    for path in candidates:
        if path and Path(path).exists():
            return PublicKey.from_file(path)
    return None


def signing_status(settings: Settings) -> dict:
    """What status and verify say about signing."""
    if not settings.ledger_signing_key_file:
        return {"signing": "not configured: no checkpoints are signed (set LEDGER_SIGNING_KEY_FILE)"}
    try:
        signer = signer_for(settings)
    except Invalid as error:
        return {"signing": f"key unreadable: {error.message}"}
    return {"signing": "configured", "key_id": signer.key_id}


# the sealing projector ----------------------------------------------------------------
class SealingProjection(Projection):
    name = "ledger_chain"
    version = 1
    topics = ()  # every event
    wants_raw = True

    def __init__(self, prefix: str = "", settings: Settings | None = None):
        self._settings = settings
        super().__init__(prefix)

    @property
    def settings(self) -> Settings:
        if self._settings is None:  # the worker's settings come from the environment too
            self._settings = Settings.from_env()
        return self._settings

    def define(self, metadata: MetaData, prefix: str) -> None:
        self.chain = Table(
            f"{prefix}ledger_chain",
            metadata,
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("prev_position", BigInteger, nullable=False),  # 0 before the first
            Column("entry_hash", LargeBinary(32), nullable=False),
        )

    def _signer(self) -> Signer | None:
        if self.prefix:  # a shadow copy (rebuild --check) never signs
            return None
        try:
            return signer_for(self.settings)
        except Invalid as error:  # never let a key problem stop sealing (the chain must not skip events)
            log.error("checkpoints not signed: %s", error.message)
            return None

    def apply(self, conn: Connection, batch: Sequence) -> None:
        head = conn.execute(
            select(self.chain.c.position, self.chain.c.entry_hash).order_by(self.chain.c.position.desc()).limit(1)
        ).first()
        prev_position, prev_hash = (head[0], bytes(head[1])) if head else (0, GENESIS_HASH)
        rows = [
            (n.id, _hex(n.originator_id), n.originator_version, n.topic, _bytes(n.state))
            for n in batch
            if n.id > prev_position
        ]
        if not rows:
            return
        hashes = chain_hashes(prev_hash, rows)
        values = []  # (position, prev_position, entry_hash)
        for (position, *_), digest in zip(rows, hashes):
            values.append((position, prev_position, digest))
            prev_position = position
        insert_rows(conn, self.chain, values, ("position", "prev_position", "entry_hash"))  # COPY on PostgreSQL
        signer = self._signer()
        if signer is not None:
            self._checkpoint_every_n(conn, signer, values)

    def _checkpoint_every_n(self, conn: Connection, signer: Signer, sealed: list[tuple]) -> None:
        every = max(int(self.settings.ledger_checkpoint_every), 1)
        last = conn.execute(select(func.max(ledger_checkpoints.c.position))).scalar() or 0
        first_new = sealed[0][0]
        since = conn.execute(
            select(func.count()).select_from(self.chain).where(
                self.chain.c.position > last, self.chain.c.position < first_new
            )
        ).scalar_one()
        now = self.settings.clock.now()
        for position, _, entry_hash in sealed:
            if position <= last:  # a replay under existing checkpoints signs nothing new
                continue
            since += 1
            if since >= every:
                write_checkpoint(conn, signer.sign(position, entry_hash, now))
                since = 0


def _bytes(state) -> bytes:
    return state.encode() if isinstance(state, str) else bytes(state)


def _hex(originator_id) -> str:
    return originator_id.hex if hasattr(originator_id, "hex") and not isinstance(originator_id, str) else str(originator_id).replace("-", "")


def write_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    insert_ignore(
        conn,
        ledger_checkpoints,
        [
            {
                "position": checkpoint.position,
                "entry_hash": checkpoint.entry_hash,
                "signed_at": datetime.strptime(checkpoint.signed_at, "%Y-%m-%dT%H:%M:%S.%fZ"),
                "signature": checkpoint.signature,
                "key_id": checkpoint.key_id,
            }
        ],
        ["position"],
    )


def sign_checkpoint_if_due(engine: Engine, settings: Settings, chain_table: str = "ledger_chain") -> Checkpoint | None:
    """The time-based checkpoint: sign the sealed head when the last checkpoint is older
    than LEDGER_CHECKPOINT_MINUTES (or there is none) and something new was sealed."""
    signer = signer_for(settings)
    if signer is None:
        return None
    now = settings.clock.now()
    with engine.begin() as conn:
        head = conn.execute(
            text(f"SELECT position, entry_hash FROM {chain_table} ORDER BY position DESC LIMIT 1")
        ).first()
        if head is None:
            return None
        last = conn.execute(
            select(ledger_checkpoints.c.position, ledger_checkpoints.c.signed_at)
            .order_by(ledger_checkpoints.c.position.desc())
            .limit(1)
        ).first()
        if last is not None:
            if last.position >= head.position:
                return None  # nothing new was sealed
            age = now.astimezone(timezone.utc).replace(tzinfo=None) - last.signed_at
            if age.total_seconds() < settings.ledger_checkpoint_minutes * 60:
                return None
        checkpoint = signer.sign(head.position, bytes(head.entry_hash), now)
        write_checkpoint(conn, checkpoint)
        return checkpoint


# reads --------------------------------------------------------------------------------
def _checkpoint_from_row(row) -> Checkpoint:
    return Checkpoint(
        row.position, bytes(row.entry_hash), format_signed_at(row.signed_at), bytes(row.signature), row.key_id
    )


def list_checkpoints(conn: Connection, after: int = 0, limit: int | None = None) -> list[Checkpoint]:
    query = select(ledger_checkpoints).where(ledger_checkpoints.c.position > after).order_by(ledger_checkpoints.c.position)
    if limit is not None:
        query = query.limit(limit)
    return [_checkpoint_from_row(r) for r in conn.execute(query)]


def last_checkpoint(conn: Connection) -> Checkpoint | None:
    row = conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.position.desc()).limit(1)).first()
    return _checkpoint_from_row(row) if row else None


def sealed_through(conn: Connection) -> int:
    return conn.execute(text("SELECT COALESCE(MAX(position), 0) FROM ledger_chain")).scalar_one()
