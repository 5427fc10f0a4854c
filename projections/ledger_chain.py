"""The sealing projector and the auditors' reads: ledger_chain, ledger_checkpoints, export.

`SealingProjection` sees every stored event (raw, undecoded) in position order and keeps
`ledger_chain(position, prev_position, entry_hash)` (ledger/chain/hashes.py defines the hash).
Every `LEDGER_CHECKPOINT_EVERY` sealed events it signs a checkpoint in the same
transaction; `sign_checkpoint_if_due` (a worker job) signs one every
`LEDGER_CHECKPOINT_MINUTES` when anything new was sealed.

ledger_chain is a read model: `usage-ledger rebuild` recomputes it from the events.
ledger_checkpoints is not: a checkpoint is a signed statement of what the ledger held at
`signed_at`, so it is kept across rebuilds (re-signing history would attest nothing).

`LedgerSnapshot` reads events, chain rows and checkpoints in one consistent snapshot and
in big batches for `verify` and `export-ledger`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

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
from ledger.store import EVENTS_TABLE
from projections.framework import Projection
from projections.sql import insert_ignore

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
        values = []
        for (position, *_), digest in zip(rows, hashes):
            values.append({"position": position, "prev_position": prev_position, "entry_hash": digest})
            prev_position = position
        conn.execute(self.chain.insert(), values)
        signer = self._signer()
        if signer is not None:
            self._checkpoint_every_n(conn, signer, values)

    def _checkpoint_every_n(self, conn: Connection, signer: Signer, sealed: list[dict]) -> None:
        every = max(int(self.settings.ledger_checkpoint_every), 1)
        last = conn.execute(select(func.max(ledger_checkpoints.c.position))).scalar() or 0
        first_new = sealed[0]["position"]
        since = conn.execute(
            select(func.count()).select_from(self.chain).where(
                self.chain.c.position > last, self.chain.c.position < first_new
            )
        ).scalar_one()
        now = self.settings.clock.now()
        for row in sealed:
            if row["position"] <= last:  # a replay under existing checkpoints signs nothing new
                continue
            since += 1
            if since >= every:
                write_checkpoint(conn, signer.sign(row["position"], row["entry_hash"], now))
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


def _position_column(conn_or_engine) -> str:
    return "notification_id" if conn_or_engine.dialect.name == "postgresql" else "rowid"


def ledger_page(conn: Connection, after: int, limit: int) -> list:
    """Stored events after `after` with their entry hash (None while not yet sealed)."""
    pos = _position_column(conn)
    return conn.execute(
        text(
            f"SELECT e.{pos} AS position, e.originator_id, e.originator_version, e.topic, e.state, c.entry_hash "
            f"FROM {EVENTS_TABLE} e LEFT JOIN ledger_chain c ON c.position = e.{pos} "
            f"WHERE e.{pos} > :after ORDER BY e.{pos} LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    ).all()


class LedgerSnapshot:
    """Events, chain rows and checkpoints read in one snapshot (one read transaction), in
    batches of raw tuples: the verifier's and the exporter's view of the database."""

    def __init__(self, engine: Engine, batch_size: int = 20_000):
        self.engine = engine
        self.batch_size = batch_size
        self.is_postgres = engine.dialect.name == "postgresql"
        self._dbapi = None

    def __enter__(self) -> "LedgerSnapshot":
        self._dbapi = self.engine.raw_connection()
        cursor = self._dbapi.cursor()
        if self.is_postgres:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            cursor.execute("BEGIN")
            cursor.execute(f"SELECT 1 FROM {EVENTS_TABLE} LIMIT 1")  # take the WAL snapshot now
        cursor.close()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.is_postgres:
                self._dbapi.rollback()
            else:
                self._dbapi.cursor().execute("ROLLBACK")
        finally:
            self._dbapi.close()

    def _query(self, sql: str, params: tuple) -> list:
        cursor = self._dbapi.cursor()
        try:
            cursor.execute(sql.replace("?", "%s") if self.is_postgres else sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _has_chain_table(self) -> bool:
        sql = (
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'ledger_chain'"
            if self.is_postgres
            else "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_chain'"
        )
        return bool(self._query(sql, ()))

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._query(
            "SELECT position, entry_hash, signed_at, signature, key_id FROM ledger_checkpoints ORDER BY position", ()
        ) if self._has_checkpoint_table() else []
        return [
            Checkpoint(p, bytes(h), format_signed_at(_as_datetime(s)), bytes(sig), k) for p, h, s, sig, k in rows
        ]

    def _has_checkpoint_table(self) -> bool:
        sql = (
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'ledger_checkpoints'"
            if self.is_postgres
            else "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_checkpoints'"
        )
        return bool(self._query(sql, ()))

    def chain_row_before(self, position: int) -> tuple[int, bytes] | None:
        rows = self._query("SELECT position, entry_hash FROM ledger_chain WHERE position < ? ORDER BY position DESC LIMIT 1", (position,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def counts(self) -> dict:
        pos = "notification_id" if self.is_postgres else "rowid"
        (events, last), = self._query(f"SELECT COUNT(*), COALESCE(MAX({pos}), 0) FROM {EVENTS_TABLE}", ())
        sealed = self._query("SELECT COALESCE(MAX(position), 0) FROM ledger_chain", ())[0][0] if self._has_chain_table() else 0
        return {"events": events, "last_position": last, "sealed_through": sealed}

    def batches(self, after: int = 0) -> Iterator[tuple[list, list, int | None]]:
        """(events, chain rows, upper bound) per batch, in position order. Events are
        (position, stream hex, version, type, state); chain rows (position, prev_position,
        entry_hash); each batch holds the chain rows in (previous bound, bound]; the last
        batch (bound None) holds the chain rows after the last event."""
        if self.is_postgres:
            events_sql = (
                f"SELECT notification_id, replace(originator_id::text, '-', ''), originator_version, topic, state "
                f"FROM {EVENTS_TABLE} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            chain_sql = "SELECT position, prev_position, entry_hash FROM ledger_chain WHERE position > %s AND position <= %s ORDER BY position"
            tail_sql = "SELECT position, prev_position, entry_hash FROM ledger_chain WHERE position > %s ORDER BY position"
        else:
            events_sql = (
                f"SELECT rowid, originator_id, originator_version, topic, CAST(state AS BLOB) "
                f"FROM {EVENTS_TABLE} WHERE rowid > ? ORDER BY rowid LIMIT ?"
            )
            chain_sql = "SELECT position, prev_position, entry_hash FROM ledger_chain WHERE position > ? AND position <= ? ORDER BY position"
            tail_sql = "SELECT position, prev_position, entry_hash FROM ledger_chain WHERE position > ? ORDER BY position"
        has_chain = self._has_chain_table()
        # PostgreSQL: binary results carry bytea as raw bytes (text would double them as hex)
        cursor = self._dbapi.driver_connection.cursor(binary=True) if self.is_postgres else self._dbapi.cursor()
        try:
            while True:
                cursor.execute(events_sql, (after, self.batch_size))
                events = cursor.fetchall()
                if not events:
                    break
                bound = events[-1][0]
                chain = []
                if has_chain:
                    cursor.execute(chain_sql, (after, bound))
                    chain = cursor.fetchall()
                yield events, chain, bound
                after = bound
                if len(events) < self.batch_size:
                    break
            tail = []
            if has_chain:
                cursor.execute(tail_sql, (after,))
                tail = cursor.fetchall()
            yield [], tail, None
        finally:
            cursor.close()


def _as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# verify and export --------------------------------------------------------------------
def verify_database(
    engine: Engine,
    trusted_keys: list[PublicKey],
    from_position: int = 0,
    progress=None,
    batch_size: int = 20_000,
):
    """Recompute the chain from the stored events (one snapshot) and check it against
    ledger_chain and every signed checkpoint. Returns a VerifyReport."""
    from ledger.chain.verify import Verifier

    with LedgerSnapshot(engine, batch_size) as snapshot:
        checkpoints = snapshot.checkpoints()
        counts = snapshot.counts()
        start_after, start_hash, notes = 0, GENESIS_HASH, []
        if from_position > 1:
            start_after, start_hash, notes = _anchor(snapshot, checkpoints, trusted_keys, from_position)
        verifier = Verifier(checkpoints, trusted_keys, start_after, start_hash, progress, counts["last_position"])
        report = verifier.run(snapshot.batches(start_after))
    report.warnings[:0] = notes
    report.last_position = max(report.last_position, counts["last_position"])
    return report


def _anchor(snapshot: LedgerSnapshot, checkpoints: list[Checkpoint], keys: list[PublicKey], from_position: int):
    """Where `verify --from P` starts: the latest valid signed checkpoint before P, else
    the ledger_chain row before P (taken as given, and said so)."""
    trusted = {k.key_id: k for k in keys}
    for cp in sorted((c for c in checkpoints if c.position < from_position), key=lambda c: -c.position):
        if not trusted or (cp.key_id in trusted and trusted[cp.key_id].verifies(cp)):
            how = "signed" if trusted else "unchecked (no public key)"
            return cp.position, cp.entry_hash, [f"started after the {how} checkpoint at {cp.position}"]
    row = snapshot.chain_row_before(from_position)
    if row is None:
        return 0, GENESIS_HASH, []
    return row[0], row[1], [f"started after position {row[0]}, taking its ledger_chain hash as given (no signed checkpoint before {from_position})"]


def export_ledger(engine: Engine, handle, exported_at: datetime, progress=None, batch_size: int = 20_000) -> dict:
    """Write the JSON Lines export (ledger/chain/verify.py export_lines) from one snapshot,
    streaming batch by batch (bounded memory). Returns the header."""
    from ledger.chain.verify import export_lines

    with LedgerSnapshot(engine, batch_size) as snapshot:
        checkpoints = snapshot.checkpoints()
        counts = snapshot.counts()
        header = {
            "exported_at": format_signed_at(exported_at),
            **counts,
            "checkpoints": len(checkpoints),
            "key_ids": sorted({c.key_id for c in checkpoints}),
        }
        report = (lambda position: progress(position, counts["last_position"])) if progress else None
        for chunk in export_lines(header, checkpoints, snapshot.batches(0), report):
            handle.write(chunk)
    return header
