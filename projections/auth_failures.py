"""Failed credential attempts per subject (ledger/identity/throttle.py decides; this keeps
the state). One small table shared by every API process; each change is a compare-and-set
on the row's version, retried when another process got there first.

Not a read model: it is not derived from the ledger and `rebuild` leaves it alone.
"""
from __future__ import annotations

from dataclasses import astuple, fields

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, bindparam, delete, insert, select, update

from ledger.identity.throttle import Failures, after_failure, retry_after

metadata = MetaData()

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("subject", String(320), primary_key=True),
    Column("window_start", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("lockouts", Integer, nullable=False),
    Column("blocked_until", BigInteger, nullable=False),
    Column("reported_at", BigInteger, nullable=False),
    Column("unreported", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)
_FIELDS = [f.name for f in fields(Failures)]
_ATTEMPTS = 8


def create_table(engine: Engine) -> None:
    metadata.create_all(engine)


def _load(engine: Engine, subjects: list[str]) -> dict[str, Failures]:
    query = select(auth_failures).where(auth_failures.c.subject.in_(bindparam("s", expanding=True)))
    with engine.connect() as conn:
        rows = conn.execute(query, {"s": subjects}).mappings().all()
    return {r["subject"]: Failures(**{name: r[name] for name in _FIELDS}) for r in rows}


def wait_seconds(engine: Engine, subjects: list[str], now: int) -> int:
    """The longest lockout still running among these subjects (0: none)."""
    return max((retry_after(state, now) for state in _load(engine, subjects).values()), default=0)


def record_failure(engine: Engine, subject: str, now: int, limit: int) -> int:
    """Count one failure; returns how many failures to write to the ledger now (0: none)."""
    for _ in range(_ATTEMPTS):
        state = _load(engine, [subject]).get(subject)
        new, report = after_failure(state or Failures(), now, limit)
        values = dict(zip(_FIELDS, astuple(new)))
        with engine.begin() as conn:
            if state is None:
                statement = (
                    insert(auth_failures).prefix_with("OR IGNORE") if conn.dialect.name == "sqlite" else _pg_insert_ignore()
                ).values(subject=subject, **values).returning(auth_failures.c.subject)
                done = len(conn.execute(statement).all())
            else:
                done = conn.execute(
                    update(auth_failures)
                    .where(auth_failures.c.subject == subject, auth_failures.c.version == state.version)
                    .values(**values)
                ).rowcount
        if done == 1:
            return report
    return 0  # heavy contention on one subject: the failure is not counted twice


def _pg_insert_ignore():
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(auth_failures).on_conflict_do_nothing(index_elements=["subject"])


def clear(engine: Engine, subject: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(auth_failures).where(auth_failures.c.subject == subject))
