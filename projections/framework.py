"""What every read model shares: its position, its parked errors, and the batch loop.

A projection supplies its tables and a function that turns a batch of ledger events into
row changes. `run_batch` is the one loop: it reads the next events of the notification log
(and, for a projection whose changes follow from the events alone, computes them) before
its transaction, then locks the projection's position row, applies the batch and records
the new position in the same transaction. An event that makes the projection raise is parked in
`projection_errors` and the projection moves on.
"""
from __future__ import annotations

import gc
import hashlib
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Callable, Iterable, NamedTuple, Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

from ledger.errors import Unavailable
from ledger.events import LedgerEvent
from ledger.store import LedgerStore, Recorded
from projections.feed import Feed, Reader, Undecodable
from projections.sql import driver_rows, driver_statement, insert_ignore

control = MetaData()

projection_positions = Table(
    "projection_positions",
    control,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False, default=0),
    Column("schema_version", Integer, nullable=False, default=0),
    Column("updated_at", DateTime, nullable=True),
)

projection_errors = Table(
    "projection_errors",
    control,
    Column("projection", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", DateTime, nullable=False),
)


def topics_of(*event_classes: type[LedgerEvent]) -> tuple[str, ...]:
    """The stored topics of these event classes (a topic is the class name), so that a
    projection names the classes it follows and a renamed class cannot drop silently."""
    return tuple(cls.__name__ for cls in event_classes)


class Projection:
    """One read model. Subclasses set name, version, topics (`topics_of(...)`) and
    implement define, and either apply or changes and write."""

    name: str = ""
    version: int = 1
    topics: tuple[str, ...] = ()
    # True: apply() receives the stored notifications undecoded (position `id`,
    # originator_id, originator_version, topic, state bytes), e.g. to hash them.
    wants_raw: bool = False

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.metadata = MetaData()
        self.define(self.metadata, prefix)

    def define(self, metadata: MetaData, prefix: str) -> None:
        raise NotImplementedError

    def changes(self, batch: Sequence[Recorded]) -> object:
        """The batch's row changes, when they follow from its events alone (no read of the
        read model): the loop then computes them before the batch's transaction (outside
        SQLite's one-writer lock) and `write` stores them in it. None (the default): `apply`
        does everything inside the transaction."""
        return None

    def write(self, conn: Connection, changes: object) -> None:
        """Store what `changes` returned (projections that implement `changes`)."""
        raise NotImplementedError

    def apply(self, conn: Connection, batch: Sequence[Recorded]) -> None:
        self.write(conn, self.changes(batch))

    @property
    def tables(self) -> list[Table]:
        return list(self.metadata.sorted_tables)

    def digest_order(self, table: Table) -> list:
        """Row order used to compare two copies of a table (its primary key)."""
        return list(table.primary_key.columns)


def utcnow_naive() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# positions ----------------------------------------------------------------------------
# the statements every batch runs, without SQLAlchemy's statement building (projections/sql.py)
_LOCK = {
    # the position row, locked for the batch; and, like SET LOCAL, asynchronous commit for
    # this transaction (a read model is derived data: if the server crashes before the
    # commit reaches disk, its rows and its position are lost together and replayed)
    "postgresql": "SELECT position, set_config('synchronous_commit', 'off', true) FROM projection_positions "
                  "WHERE name = %s FOR UPDATE",
    "sqlite": "SELECT position FROM projection_positions WHERE name = ?",  # the batch holds the write lock
}
_MOVE = "UPDATE projection_positions SET position = %s, updated_at = %s WHERE name = %s"
_MOVE_FROM = _MOVE + " AND position = %s"


def _lock_position(conn: Connection, projection: Projection) -> int:
    found = driver_rows(conn, _LOCK[conn.dialect.name], (projection.name,))
    if not found:  # first run of this projection
        insert_ignore(
            conn,
            projection_positions,
            [{"name": projection.name, "position": 0, "schema_version": projection.version}],
            ["name"],
        )
        found = driver_rows(conn, _LOCK[conn.dialect.name], (projection.name,))
    return found[0][0]


def positions(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(select(projection_positions.c.name, projection_positions.c.position)).all())


def parked_errors(conn: Connection) -> list[dict]:
    rows = conn.execute(select(projection_errors).order_by(projection_errors.c.parked_at)).mappings()
    return [dict(r) for r in rows]


def wait_for_positions(
    engine: Engine, names: Iterable[str], min_position: int, timeout: float, sleep=time.sleep,
    known: dict[str, int] | None = None,
) -> int:
    """Block until every named projection has passed min_position; returns the lowest
    position among them. Raises Unavailable (503) when the wait runs out. `known`: the
    positions this request already read (api/consistency.py); enough when they suffice."""
    names = list(names)
    if known is not None:
        lowest = min((known.get(n, 0) for n in names), default=0)
        if lowest >= min_position:
            return lowest
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        with engine.connect() as conn:
            found = positions(conn)
        lowest = min((found.get(n, 0) for n in names), default=0)
        if lowest >= min_position:
            return lowest
        if time.monotonic() >= deadline:
            raise Unavailable(
                "NOT_CAUGHT_UP",
                f"Read models have reached position {lowest}, not yet {min_position}; retry shortly",
                position=lowest,
            )
        sleep(pause)
        pause = min(pause * 2, 0.05)


# the loop -----------------------------------------------------------------------------
def run_batch(engine: Engine, reader: Reader) -> int:
    """Apply the next batch; returns how far the position moved (0 when caught up)."""
    reader.pace()
    ahead = _read_ahead(reader)
    if engine.dialect.name == "sqlite":
        with _sqlite_writer(engine):
            return _run_batch(engine, reader, ahead)
    return _run_batch(engine, reader, ahead)


_sqlite_writers: dict[str, threading.Lock] = {}
_sqlite_writers_guard = threading.Lock()


def _sqlite_writer(engine: Engine) -> threading.Lock:
    """SQLite has one writer at a time: the projector threads of a process take turns on a
    lock of their own instead of polling the database's write lock (whose busy handler
    sleeps for milliseconds at a time). Other processes still meet the database's lock."""
    with _sqlite_writers_guard:
        return _sqlite_writers.setdefault(str(engine.url), threading.Lock())


class _Ahead(NamedTuple):
    """The next window, read before the batch's transaction, with its row changes."""

    start: int
    end: int
    items: list
    changes: object  # Projection.changes of its decodable items (None: apply computes them)


def _read_ahead(reader: Reader) -> _Ahead | None:
    """Read and decode the window after the reader's position and compute its row changes
    before the batch's transaction: on SQLite outside the one-writer lock, so that one
    projector prepares its batch while another's statements run in SQLite (which releases
    the GIL). None when the position is not known yet (the first batch) or nothing is new;
    the transaction discards the window when another worker moved the position meanwhile."""
    start = reader.position
    if not start:
        return None
    head = reader.head()
    if head <= start:
        return None
    end, items = reader.window(start, head)
    return _Ahead(start, end, items, _changes(reader.projection, _decodable(items)))


def _decodable(items: list) -> list:
    return [item for item in items if not isinstance(item, Undecodable)]


def _changes(projection: Projection, batch: list) -> object:
    if not batch:
        return None
    try:
        return projection.changes(batch)
    except Exception:  # the transaction applies the batch event by event and parks the culprit
        return None


class _ApplyFailed(Exception):
    """A batch failed to apply: its transaction is rolled back, and the batch is applied
    again event by event, parking the events that fail."""


def _run_batch(engine: Engine, reader: Reader, ahead: _Ahead | None) -> int:
    if ahead is not None and not ahead.items:
        if _skip_window(engine, reader, ahead):
            return ahead.end - ahead.start
        ahead = None
    try:
        return _batch(engine, reader, ahead, one_by_one=False)
    except _ApplyFailed:
        return _batch(engine, reader, ahead, one_by_one=True)


def _batch(engine: Engine, reader: Reader, ahead: _Ahead | None, one_by_one: bool) -> int:
    """One transaction: lock the position, apply the window, move the position. The
    whole batch goes in without a savepoint (a failure rolls it all back: _ApplyFailed);
    `one_by_one` applies each event under its own savepoint and parks those that fail."""
    projection = reader.projection
    with engine.begin() as conn:
        start = _lock_position(conn, projection)
        if ahead is not None and ahead.start == start:
            end, items, changes = ahead.end, ahead.items, ahead.changes
        else:  # the first batch, or another worker moved the position since
            head = reader.head()
            if head <= start:
                return 0
            end, items = reader.window(start, head)
            changes = None
        for item in items:
            if isinstance(item, Undecodable):
                _park(conn, projection, item.notification.id, item.notification.topic, item.error)
        batch = _decodable(items)
        if one_by_one:
            _apply_one_by_one(conn, projection, batch)
        elif batch:
            try:
                if changes is None:
                    projection.apply(conn, batch)
                else:
                    projection.write(conn, changes)
            except Exception as error:
                raise _ApplyFailed from error
        driver_statement(conn, _MOVE, (end, utcnow_naive(), projection.name))
        return end - start


def _skip_window(engine: Engine, reader: Reader, ahead: _Ahead) -> bool:
    """A window with nothing this projection follows only moves its position: one
    compare-and-set statement (on PostgreSQL outside a transaction) instead of a batch
    transaction, so that most read models cost one statement per window of usage events.
    False when its position is not where this reader left it (another worker moved it):
    then the batch transaction decides."""
    move = (ahead.end, utcnow_naive(), reader.projection.name, ahead.start)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            moved = driver_statement(conn.execution_options(isolation_level="AUTOCOMMIT"), _MOVE_FROM, move)
    else:
        with engine.begin() as conn:
            moved = driver_statement(conn, _MOVE_FROM, move)
    if not moved:
        reader.position = ahead.start
    return bool(moved)


def _apply_one_by_one(conn: Connection, projection: Projection, batch: list) -> None:
    """Each event under its own savepoint; the events that fail are parked."""
    for recorded in batch:
        try:
            with conn.begin_nested():
                projection.apply(conn, [recorded])
        except Exception as error:
            if isinstance(recorded, Recorded):
                _park(conn, projection, recorded.position, recorded.event.type, error)
            else:  # a raw notification (wants_raw)
                _park(conn, projection, recorded.id, recorded.topic, error)


def _park(conn: Connection, projection: Projection, position: int, event_type: str, error: Exception) -> None:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()[:4000]
    insert_ignore(
        conn,
        projection_errors,
        [{"projection": projection.name, "position": position, "event_type": event_type, "error": text, "parked_at": utcnow_naive()}],
        ["projection", "position"],
    )


def tune_gc() -> None:
    """Projecting allocates millions of short-lived objects; collecting the young
    generation every 50,000 allocations instead of 700 makes catch-up about a quarter
    faster (bench/). Set by the worker and by every catch-up (rebuild, seal)."""
    gc.set_threshold(50_000, 20, 100)


def catch_up(
    engine: Engine,
    store: LedgerStore,
    projection: Projection,
    batch_size: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
    feed: Feed | None = None,
) -> int:
    """Run batches until the projection has reached the ledger's end; returns its position.
    Projections caught up at once on several threads share one read through `feed`."""
    tune_gc()
    reader = Reader(store, projection, batch_size, feed)
    try:
        while run_batch(engine, reader):
            if progress:
                with engine.connect() as conn:
                    progress(projection.name, positions(conn).get(projection.name, 0), store.max_position())
    finally:
        reader.close()
    with engine.connect() as conn:
        return positions(conn).get(projection.name, 0)


# schema, rebuild and check ------------------------------------------------------------
def create_control_tables(engine: Engine) -> None:
    control.create_all(engine)


def reset(engine: Engine, projection: Projection) -> None:
    """Drop and recreate the projection's tables and start it again from position 0."""
    with engine.begin() as conn:
        projection.metadata.drop_all(conn)
        projection.metadata.create_all(conn)
        conn.execute(delete(projection_errors).where(projection_errors.c.projection == projection.name))
        conn.execute(delete(projection_positions).where(projection_positions.c.name == projection.name))
        conn.execute(
            projection_positions.insert().values(
                name=projection.name, position=0, schema_version=projection.version, updated_at=utcnow_naive()
            )
        )


def migrate(engine: Engine, projections: Sequence[Projection]) -> list[str]:
    """Create missing tables; reset every projection whose schema version changed."""
    create_control_tables(engine)
    changed = []
    with engine.connect() as conn:
        versions = dict(conn.execute(select(projection_positions.c.name, projection_positions.c.schema_version)).all())
    for projection in projections:
        if projection.name in versions and versions[projection.name] != projection.version:
            reset(engine, projection)
            changed.append(projection.name)
        else:
            projection.metadata.create_all(engine)
    return changed


def table_digest(conn: Connection, table: Table, order: list) -> tuple[int, str]:
    """(row count, SHA-256 over every row in primary-key order)."""
    digest = hashlib.sha256()
    count = 0
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(select(table).order_by(*order))
    for row in result:
        digest.update(repr(tuple(_comparable(v) for v in row)).encode())
        count += 1
    return count, digest.hexdigest()


def _comparable(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return value


def check(
    engine: Engine,
    store: LedgerStore,
    live: Projection,
    shadow: Projection,
    batch_size: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[str]:
    """Replay the ledger into shadow tables up to the live position and compare every
    table; returns the names of the tables that differ (empty when identical)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            position = _lock_position_readonly(conn, live)
            live_digests = [table_digest(conn, t, live.digest_order(t)) for t in live.tables]
    shadow.metadata.drop_all(engine)
    shadow.metadata.create_all(engine)
    try:
        shadow_name = f"{live.name}{shadow.prefix and ':' + shadow.prefix}"
        shadow.name = shadow_name
        with engine.begin() as conn:
            conn.execute(delete(projection_positions).where(projection_positions.c.name == shadow_name))
        reader = Reader(_Bounded(store, position), shadow, batch_size)  # type: ignore[arg-type]
        try:
            while run_batch(engine, reader):
                if progress:
                    with engine.connect() as conn:
                        progress(live.name, positions(conn).get(shadow_name, 0), position)
        finally:
            reader.close()
        with engine.connect() as conn:
            shadow_digests = [table_digest(conn, t, shadow.digest_order(t)) for t in shadow.tables]
        return [
            live_table.name
            for live_table, a, b in zip(live.tables, live_digests, shadow_digests)
            if a != b
        ]
    finally:
        shadow.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(delete(projection_positions).where(projection_positions.c.name == shadow.name))
            conn.execute(delete(projection_errors).where(projection_errors.c.projection == shadow.name))


def _lock_position_readonly(conn: Connection, projection: Projection) -> int:
    value = conn.execute(
        select(projection_positions.c.position).where(projection_positions.c.name == projection.name)
    ).scalar()
    return value or 0


class _Bounded:
    """A store view that pretends the ledger ends at `stop` (used by check)."""

    def __init__(self, store: LedgerStore, stop: int):
        self._store, self._stop = store, stop

    def max_position(self) -> int:
        return min(self._store.max_position(), self._stop)

    def read_window(self, after, stop, topics=()):
        return self._store.read_window(after, min(stop, self._stop), topics)
