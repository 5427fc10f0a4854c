"""The auditors' reads of the stored ledger: pages of events with their entry hash, and
`LedgerSnapshot`, which reads events, chain rows and checkpoints in one consistent
snapshot and in big batches for `verify` and `export-ledger`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterator

from sqlalchemy import Connection, Engine, text

from ledger.chain.export import export_lines
from ledger.chain.hashes import GENESIS_HASH, Checkpoint, PublicKey, format_signed_at
from ledger.chain.verify import Verifier, VerifyReport
from ledger.store import EVENTS_TABLE


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


def verify_database(
    engine: Engine,
    trusted_keys: list[PublicKey],
    from_position: int = 0,
    progress=None,
    batch_size: int = 20_000,
) -> VerifyReport:
    """Recompute the chain from the stored events (one snapshot) and check it against
    ledger_chain and every signed checkpoint. Returns a VerifyReport."""
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
    """Write the JSON Lines export (ledger/chain/export.py export_lines) from one snapshot,
    streaming batch by batch (bounded memory). Returns the header."""
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
