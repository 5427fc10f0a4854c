"""Exact integer sums on SQLite past 64 bits: exact_add in the upserts, SUM of an ExactInt
column as native sums of 32-bit halves plus the rare decimal texts; never REAL."""
from __future__ import annotations

import random

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text

from projections.db import make_engine
from projections.exact import INT64_MAX, INT64_MIN, ExactInt
from projections.sql import upsert_add


def _table():
    metadata = MetaData()
    table = Table("t", metadata, Column("k", String(8), primary_key=True), Column("i", Integer, primary_key=True),
                  Column("v", ExactInt(wide=True)), Column("n", ExactInt()))
    return metadata, table


def test_sums_of_any_integers_are_exact_and_sort_by_value(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db", writer=True)
    metadata, t = _table()
    metadata.create_all(engine)
    rng = random.Random(7)
    values = {
        "a": [INT64_MAX, INT64_MAX, 5, -3, None, 10**30],
        "b": [rng.randrange(-(2**62), 2**62) for _ in range(500)],
        "c": [INT64_MIN, -(10**25), 1],
        "d": [None, None],
        "e": [10**18] * 40,
    }
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"k": k, "i": i, "v": v, "n": None if v is None or not INT64_MIN <= v <= INT64_MAX else v}
                                  for k, vs in values.items() for i, v in enumerate(vs)])
    with engine.connect() as conn:
        found = dict(conn.execute(select(t.c.k, func.sum(t.c.v)).group_by(t.c.k)).all())
        assert conn.execute(text("SELECT count(*) FROM t WHERE typeof(v) = 'real'")).scalar() == 0
        ordered = [k for k, _ in conn.execute(select(t.c.k, func.sum(t.c.v).label("s")).where(t.c.k != "d").group_by(t.c.k).order_by(text("s")))]
        narrow = conn.execute(select(func.sum(t.c.n)).where(t.c.k == "e")).scalar()
    expected = {k: (None if all(v is None for v in vs) else sum(v for v in vs if v is not None)) for k, vs in values.items()}
    assert found == expected
    assert narrow == 40 * 10**18  # a sum of 64-bit values past 64 bits
    positive = [k for k in sorted(expected, key=lambda k: expected[k] or 0) if k != "d" and expected[k] >= 0]
    assert [k for k in ordered if expected[k] >= 0] == positive


def test_upserts_add_exactly_past_64_bits(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db", writer=True)
    metadata, t = _table()
    metadata.create_all(engine)
    total = 0
    for step in (INT64_MAX, INT64_MAX, 10**20, -(10**20), -INT64_MAX, 3):
        total += step
        with engine.begin() as conn:
            upsert_add(conn, t, [("k", 1, step, 0)], ["k", "i"], ["v", "n"], columns=("k", "i", "v", "n"))
        with engine.connect() as conn:
            stored, kind = conn.execute(text("SELECT v, typeof(v) FROM t")).one()
            assert conn.execute(select(t.c.v)).scalar_one() == total
        assert kind == ("integer" if INT64_MIN <= total <= INT64_MAX else "text"), (stored, kind)
