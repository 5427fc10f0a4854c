"""Faults: nothing acknowledged is lost, nothing is counted twice."""
from __future__ import annotations

import base64
import json
import random
import signal
import threading
import time

import psycopg
import pytest
from sqlalchemy import func, select

from ledger.codec import encode_event
from ledger.usage.events import Usage, UsageRecorded
from ledger.store import LedgerStore, stream_id
from projections.framework import positions
from projections.usage import USAGE_PROJECTIONS, UsageTables
from tests.conftest import PG_SERVER, Harness, basic, make_settings, usage
from tests.processes import run_cli, start_cli, stop, wait_until
from tests.tcp_proxy import TcpProxy
from workers.leadership import advisory_key

USAGE = UsageTables()


def caught_up(h) -> bool:
    head = h.store.max_position()
    with h.engine.connect() as conn:
        found = positions(conn)
    return all(found.get(name, 0) >= head for name in USAGE_PROJECTIONS)


def slowest(h) -> int:
    """The lowest position among the usage read models (the ones this ingest feeds)."""
    with h.engine.connect() as conn:
        found = positions(conn)
    return min(found.get(name, 0) for name in USAGE_PROJECTIONS)


def counted(h) -> tuple[int, int]:
    with h.engine.connect() as conn:
        raw = conn.execute(select(func.count()).select_from(USAGE.events)).scalar_one()
        hourly = conn.execute(select(func.coalesce(func.sum(USAGE.hourly.c.events), 0))).scalar_one()
    return raw, int(hourly)


@pytest.fixture
def pg(postgres_url, clock):
    harness = Harness(make_settings(postgres_url, clock, db_pool_size=10))
    harness.tenant("acme")
    harness.agent_headers = harness.agent()
    yield harness
    harness.close()


def test_forty_kill_nines_during_sustained_ingest_lose_and_double_nothing(pg):
    h, agent = pg, pg.agent_headers
    rng = random.Random(11)
    stop_ingest = threading.Event()
    acknowledged = [0]

    def ingest():
        b = 0
        while not stop_ingest.is_set():
            response = h.post_events(agent, [usage(f"s-{b}-{i}") for i in range(100)])
            assert response.status_code == 202
            acknowledged[0] += response.json["accepted"]
            b += 1

    feeder = threading.Thread(target=ingest)
    feeder.start()
    kills = 0
    try:
        while kills < 40:
            worker = start_cli(h.settings.database_url, "work", PROJECTOR_BATCH_SIZE=str(rng.choice((7, 50, 300))))
            try:
                before = slowest(h)
                wait_until(lambda: slowest(h) > before, 60, "some progress")
            finally:
                stop(worker, signal.SIGKILL)
            kills += 1
    finally:
        stop_ingest.set()
        feeder.join()
    worker = start_cli(h.settings.database_url, "work")
    try:
        wait_until(lambda: caught_up(h), 120, "the restarted worker to catch up")
    finally:
        stop(worker)
    assert h.ledger_count() - 2 - 1 == acknowledged[0]  # minus tenant, org and client events
    assert counted(h) == (acknowledged[0], acknowledged[0])
    check = run_cli(h.settings.database_url, "rebuild", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def _advisory_holders(h, projection: str) -> int:
    # through the harness's pool: a new connection may find the server's 100 taken while
    # worker processes of this file and the file beside it hold theirs (tests/conftest.py)
    with h.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::bigint << 32) | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
            (advisory_key(projection),),
        ).scalar_one()


def test_exactly_one_worker_is_active_per_projection_and_a_standby_takes_over(pg):
    h, agent = pg, pg.agent_headers
    workers = [start_cli(h.settings.database_url, "work") for _ in range(3)]
    try:
        h.post_events(agent, [usage(f"a-{i}") for i in range(100)])
        wait_until(lambda: caught_up(h), 30, "the workers to catch up")
        for name in USAGE_PROJECTIONS:
            assert _advisory_holders(h, name) == 1
        for worker in workers[:2]:
            stop(worker, signal.SIGKILL)
        started = time.monotonic()
        h.post_events(agent, [usage(f"b-{i}") for i in range(100)])
        wait_until(lambda: caught_up(h), 15, "the standby to take over")
        handover = time.monotonic() - started
        assert handover < 10
        for name in USAGE_PROJECTIONS:
            assert _advisory_holders(h, name) == 1
        assert counted(h) == (200, 200)
    finally:
        for worker in workers:
            stop(worker, signal.SIGKILL)


class WorkerLog:
    """The JSON log lines of a `usage-ledger work` process, read as it writes them."""

    def __init__(self, process):
        self.lines: list[dict] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                pass  # not a log line

    def said(self, message: str, **fields) -> list[dict]:
        return [line for line in list(self.lines)
                if line.get("message") == message and all(line.get(k) == v for k, v in fields.items())]


def test_a_worker_that_starts_later_takes_its_share(pg):
    h, agent = pg, pg.agent_headers
    # small pools: two workers hold a connection per projection they run besides, and this
    # file runs beside another on a server of 100 connections (tests/conftest.py)
    small = {"DB_POOL_SIZE": "2"}
    first = start_cli(h.settings.database_url, "work", **small)
    second = None
    try:
        first_log = WorkerLog(first)
        h.post_events(agent, [usage(f"a-{i}") for i in range(50)])
        wait_until(lambda: caught_up(h), 30, "the first worker to catch up")
        second = start_cli(h.settings.database_url, "work", **small)
        second_log = WorkerLog(second)
        wait_until(lambda: second_log.said("share of the projections", worker=2, of=2), 30, "the second worker's share")
        share = second_log.said("share of the projections", worker=2, of=2)[-1]["projections"]
        assert share and set(share) & set(USAGE_PROJECTIONS), share  # a balanced split gives it a heavy one
        taken = lambda: {line["projection"] for line in second_log.said("active")}  # noqa: E731
        wait_until(lambda: set(share) <= taken(), 30, "the second worker to take its share")
        assert set(share) <= {line["projection"] for line in first_log.said("handing over")}
        h.post_events(agent, [usage(f"b-{i}") for i in range(50)])
        wait_until(lambda: caught_up(h), 30, "both workers to catch up")
        for name in USAGE_PROJECTIONS:
            assert _advisory_holders(h, name) == 1
        assert counted(h) == (100, 100)
    finally:
        for worker in (first, second):
            if worker is not None:
                stop(worker, signal.SIGKILL)


def test_an_append_that_commits_late_is_not_skipped(pg):
    """A transaction holds its insert open while later appends wait; the projector runs
    meanwhile and must still apply the late event once it commits."""
    h, agent = pg, pg.agent_headers
    h.post_events(agent, [usage("first")])
    h.project()
    slow = psycopg.connect(h.settings.database_url)
    late = UsageRecorded(
        tenant_id="acme", org_id="prod", recorded_at=h.settings.clock.now(), actor="test",
        usage=Usage(event_id="late", occurred_at=h.settings.clock.now(), event_type="api_call", client_id="x"),
    )
    store = LedgerStore(h.settings.database_url)
    # the library's own insert path, but on a connection we hold open
    with slow.transaction():
        store.recorder._lock_table(slow.cursor())
        slow.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)",
            (stream_id("usage", "acme", "late"), "UsageRecorded", encode_event(late)),
        )
        results = []
        later = threading.Thread(target=lambda: results.append(h.post_events(agent, [usage("later")])))
        later.start()
        h.project()  # runs while "late" is uncommitted and "later" is waiting for the lock
        assert counted(h) == (1, 1)
    later.join(timeout=30)
    assert results[0].status_code == 202
    h.project()
    assert counted(h) == (3, 3)
    with h.engine.connect() as conn:
        ids = {r[0] for r in conn.execute(select(USAGE.events.c.event_id))}
    assert ids == {"first", "late", "later"}
    slow.close()
    store.close()


def test_a_database_outage_answers_503_and_loses_nothing_acknowledged(postgres_url, clock):
    proxy = TcpProxy(int(PG_SERVER.rsplit(":", 1)[1]))
    dbname = postgres_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}"
    h = Harness(make_settings(url, clock, db_pool_size=4, db_pool_timeout=1))
    try:
        h.tenant("acme")
        agent = h.agent()
        baseline = h.ledger_count()
        acknowledged, statuses = 0, []
        for b in range(30):
            if b == 10:
                proxy.cut()
            if b == 20:
                proxy.restore()
            response = h.post_events(agent, [usage(f"o-{b}-{i}") for i in range(10)])
            statuses.append(response.status_code)
            if response.status_code == 202:
                acknowledged += response.json["accepted"]
            else:
                assert response.status_code == 503, response.json
                assert response.headers["Retry-After"]
                assert response.json["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert 503 in statuses[10:20]
        wait_until(lambda: h.post_events(agent, [usage("after")]).status_code == 202, 30, "recovery")
        acknowledged += 1
        assert statuses[-1] == 202
        with psycopg.connect(postgres_url) as conn:  # count on a fresh connection, not through the proxy
            stored = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
        assert stored - baseline == acknowledged
    finally:
        h.close()
        proxy.close()


def test_an_exhausted_pool_answers_quickly_instead_of_hanging(pg):
    h = Harness(make_settings(pg.settings.database_url, pg.settings.clock, db_pool_size=1, db_pool_timeout=0.5))
    try:
        agent = h.agent("acme", "prod")
        datastore = h.app.extensions["usage_ledger"].store.datastore
        held = [datastore.pool.getconn() for _ in range(2)]  # pool_size 1 + overflow 1
        try:
            started = time.monotonic()
            response = h.post_events(agent, [usage("starved")])
            elapsed = time.monotonic() - started
        finally:
            for conn in held:
                datastore.pool.putconn(conn)
        assert response.status_code in (429, 503)
        assert response.json["error"]["code"] in ("DATABASE_UNAVAILABLE", "TOO_MANY_REQUESTS")
        assert elapsed < 10
        assert h.post_events(agent, [usage("fed")]).status_code == 202
    finally:
        h.close()


def test_wrong_secrets_are_compared_in_constant_time(h, monkeypatch):
    import hmac as hmac_module

    import ledger.identity.rules

    calls = []
    real = hmac_module.compare_digest
    monkeypatch.setattr(ledger.identity.rules.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    h.tenant("acme")
    agent = h.agent()
    client_id = base64.b64decode(agent["Authorization"][6:]).decode().split(":")[0]
    calls.clear()

    assert h.post_events(basic(client_id, "wrong"), [usage("x")]).status_code == 401
    assert h.post_events(basic("cli_unknown", "wrong"), [usage("x")]).status_code == 401
    assert len(calls) == 2  # an unknown client costs the same comparison as a known one
