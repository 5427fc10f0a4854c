"""The projector as real worker processes: catch-up, SIGTERM, kill -9, two workers, poison events."""
from __future__ import annotations

import json
import random
import signal

import pytest
from sqlalchemy import func, select

from ledger.usage.events import UsageRecorded
from projections.framework import parked_errors, positions
from projections.usage import USAGE_PROJECTIONS
from projections.usage import UsageRollupsProjection, UsageTables
from tests.conftest import usage
from tests.processes import run_cli, start_cli, stop, wait_until

USAGE = UsageTables()


def caught_up(h) -> bool:
    head = h.store.max_position()
    with h.engine.connect() as conn:
        found = positions(conn)
    return all(found.get(name, 0) >= head for name in USAGE_PROJECTIONS)


def totals(h) -> tuple[int, int, int]:
    with h.engine.connect() as conn:
        raw = conn.execute(select(func.count()).select_from(USAGE.events)).scalar_one()
        hourly = conn.execute(select(func.coalesce(func.sum(USAGE.hourly.c.events), 0))).scalar_one()
        daily = conn.execute(select(func.coalesce(func.sum(USAGE.daily.c.events), 0))).scalar_one()
    return raw, int(hourly), int(daily)


def ingest(h, agent, batches: int, size: int, prefix: str) -> int:
    for b in range(batches):
        response = h.post_events(agent, [usage(f"{prefix}-{b}-{i}", prompt_tokens=i) for i in range(size)])
        assert response.status_code == 202
    return batches * size


def test_a_worker_process_projects_and_stops_cleanly_on_sigterm(h, agent):
    worker = start_cli(h.settings.database_url, "work")
    try:
        position = h.post_events(agent, [usage(f"w-{i}") for i in range(50)]).json["position"]
        wait_until(lambda: caught_up(h), 30, "the worker to catch up")
        response = h.http.get(f"/api/v1/usage/summary?min_position={position}", headers=agent)
        assert response.status_code == 200 and response.json["total_llm_requests"] == 50
    finally:
        assert stop(worker, signal.SIGTERM) == 0


def test_killed_mid_batch_many_times_the_read_models_still_equal_a_replay(h, agent):
    rng = random.Random(7)
    expected = 0
    for round_ in range(6):
        worker = start_cli(h.settings.database_url, "work", PROJECTOR_BATCH_SIZE="97")
        try:
            expected += ingest(h, agent, batches=3, size=300, prefix=f"k{round_}")
            wait_until(lambda: _position(h) > 0, 30, "the worker to start projecting")
            wait_until(lambda: rng.random() < 0.5 or caught_up(h), 5, "a moment to kill", interval=0.01)
        finally:
            stop(worker, signal.SIGKILL)
    worker = start_cli(h.settings.database_url, "work")
    try:
        wait_until(lambda: caught_up(h), 60, "the restarted worker to catch up")
    finally:
        stop(worker)
    assert totals(h) == (expected, expected, expected)
    check = run_cli(h.settings.database_url, "rebuild", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout.strip().splitlines()[-1]) == {"identical": True, "differing": {}}


def test_rebuild_check_notices_a_read_model_that_differs(h, agent):
    ingest(h, agent, batches=1, size=20, prefix="d")
    h.project()
    with h.engine.begin() as conn:
        conn.execute(USAGE.hourly.update().values(events=USAGE.hourly.c.events + 1))
    check = run_cli(h.settings.database_url, "rebuild", "--check")
    assert check.returncode == 1
    assert json.loads(check.stdout.strip().splitlines()[-1])["differing"] == {"usage_rollups": ["usage_hourly"]}
    assert run_cli(h.settings.database_url, "rebuild").returncode == 0
    assert run_cli(h.settings.database_url, "rebuild", "--check").returncode == 0


def test_two_and_three_workers_on_postgres_never_double_count(postgres_url, clock):
    from tests.conftest import Harness, make_settings

    h = Harness(make_settings(postgres_url, clock))
    try:
        h.tenant("acme")
        agent = h.agent()
        workers = [start_cli(postgres_url, "work", PROJECTOR_BATCH_SIZE="50") for _ in range(3)]
        try:
            expected = ingest(h, agent, batches=8, size=250, prefix="two")
            wait_until(lambda: caught_up(h), 60, "three workers to catch up")
            assert totals(h) == (expected, expected, expected)
            stop(workers[0], signal.SIGKILL)  # whichever was active, the others take over
            stop(workers[1], signal.SIGKILL)
            expected += ingest(h, agent, batches=2, size=250, prefix="after")
            wait_until(lambda: caught_up(h), 30, "a standby worker to take over")
            assert totals(h) == (expected, expected, expected)
        finally:
            for worker in workers:
                stop(worker, signal.SIGKILL)
        assert run_cli(postgres_url, "rebuild", "--check").returncode == 0
    finally:
        h.close()


def test_a_poison_event_is_parked_and_the_rest_keep_flowing(h, agent, monkeypatch):
    ingest(h, agent, batches=1, size=5, prefix="ok")
    original = UsageRollupsProjection.apply

    def apply(self, conn, batch):
        if any(isinstance(r.event, UsageRecorded) and r.event.usage.event_id == "ok-0-2" for r in batch):
            raise RuntimeError("cannot project this one")
        return original(self, conn, batch)

    monkeypatch.setattr(UsageRollupsProjection, "apply", apply)
    h.project()
    assert totals(h) == (5, 4, 4)  # usage_events kept flowing; the rollups parked one event
    with h.engine.connect() as conn:
        parked = parked_errors(conn)
    assert [(p["projection"], p["event_type"]) for p in parked] == [("usage_rollups", "UsageRecorded")]
    assert "cannot project this one" in parked[0]["error"]
    readyz = h.http.get("/readyz", headers={"X-Admin-API-Key": h.settings.admin_api_key}).json
    assert readyz["status"] == "degraded" and readyz["parked_errors"][0]["projection"] == "usage_rollups"
    assert run_cli(h.settings.database_url, "status").returncode == 2


def test_fifty_concurrent_posts_of_the_same_event_store_it_once(postgres_url, clock):
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import Harness, make_settings

    h = Harness(make_settings(postgres_url, clock, db_pool_size=10))
    try:
        h.tenant("acme")
        agent = h.agent()
        before = h.ledger_count()
        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(lambda _: h.post_events(agent, [usage("same-id")]), range(50)))
        assert [r.status_code for r in responses].count(202) == 50
        assert sum(r.json["accepted"] for r in responses) == 1
        assert sum(r.json["duplicates"] for r in responses) == 49
        assert h.ledger_count() == before + 1
        with ThreadPoolExecutor(max_workers=20) as pool:
            conflicting = list(
                pool.map(lambda i: h.post_events(agent, [usage("contended", prompt_tokens=i)]), range(20))
            )
        codes = sorted(r.status_code for r in conflicting)
        assert codes.count(202) == 1 and codes.count(409) == 19
        assert h.ledger_count() == before + 2
    finally:
        h.close()


def _position(h) -> int:
    with h.engine.connect() as conn:
        return min(positions(conn).get(name, 0) for name in USAGE_PROJECTIONS)


@pytest.fixture
def agent(h):
    h.tenant("acme")
    return h.agent()
