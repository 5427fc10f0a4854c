"""Holds under real concurrency: 200 reserves of $1 at once against a $50 block budget, through
real API processes (two `usage-ledger api` instances with gunicorn workers on PostgreSQL, one
on SQLite), with a worker projecting meanwhile. Exactly 50 are granted, every round. And a
worker killed with SIGKILL while holds expire leaves a ledger whose replay equals the read
model."""
from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.settings import Settings
from projections.framework import check as rebuild_check
from projections.registry import all_projections, setup_database
from runtime.bootstrap import bootstrap
from tests.conftest import ADMIN_KEY, basic
from tests.processes import free_port, start_cli, stop, wait_until

ROUNDS = 5
RESERVES = 200
LIMIT = 50


def call(base: str, method: str, path: str, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, json.loads(raw) if raw else None


class Deployment:
    def __init__(self, database_url: str, apis: int, **env: str):
        self.url = database_url
        self.bases = [f"http://127.0.0.1:{free_port()}" for _ in range(apis)]
        self.apis = [
            start_cli(database_url, "api", "--port", base.rsplit(":", 1)[1], "--workers", "2", ADMIN_API_KEY=ADMIN_KEY, **env)
            for base in self.bases
        ]
        self.worker = start_cli(database_url, "work", **env)
        for base in self.bases:
            wait_until(lambda base=base: self._up(base), 90, f"the API at {base}")

    @staticmethod
    def _up(base: str) -> bool:
        try:
            return call(base, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    def admin(self, method: str, path: str, body=None):
        return call(self.bases[0], method, path, body, {"X-Admin-API-Key": ADMIN_KEY})

    def close(self) -> None:
        for process in [*self.apis, self.worker]:
            try:
                stop(process, timeout=60)
            except subprocess.TimeoutExpired:  # a busy machine: a worker mid-batch may not stop in time
                stop(process, signal.SIGKILL)


@pytest.fixture
def deployment(backend, database_url):
    setup_database(Settings(database_url=database_url))
    d = Deployment(database_url, apis=2 if backend == "postgres" else 1)
    try:
        assert d.admin("POST", "/api/v1/admin/tenants", {"tenant_id": "acme", "name": "Acme"})[0] == 201
        assert d.admin("POST", "/api/v1/admin/tenants/acme/orgs", {"org_id": "prod", "name": "prod"})[0] == 201
        status, client = d.admin("POST", "/api/v1/admin/clients", {"tenant_id": "acme", "org_id": "prod", "name": "a"})
        assert status == 201
        d.agent = basic(client["client_id"], client["client_secret"])
        yield d
    finally:
        d.close()


def budget_for(d: Deployment, team: str) -> None:
    body = {"id": team, "name": team, "scope": "team", "scope_id": team, "limit_usd": LIMIT, "period": "monthly",
            "on_exceed": "block"}
    status, created = call(d.bases[0], "POST", "/api/v1/budgets", body, d.agent)
    assert status == 201, created
    for base in d.bases:  # every process sees the budget before the race starts
        assert call(base, "GET", f"/api/v1/budgets/{team}?min_position={created['position']}", headers=d.agent)[0] == 200


def race(d: Deployment, team: str) -> tuple[int, int]:
    def one(i: int) -> int:
        status, body = call(d.bases[i % len(d.bases)], "POST", "/api/v1/budgets/check",
                            {"reserve": True, "estimated_cost_usd": 1, "team_id": team}, d.agent)
        assert status in (200, 201), body
        return status

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(one, range(RESERVES)))
    return statuses.count(201), statuses.count(200)


def test_200_concurrent_reserves_grant_exactly_the_limit(deployment):
    for round_ in range(ROUNDS):
        team = f"team-{round_}"
        budget_for(deployment, team)
        assert race(deployment, team) == (LIMIT, RESERVES - LIMIT), f"round {round_}"


def test_a_killed_worker_leaves_holds_that_replay_identically(deployment):
    d = deployment
    budget_for(d, "t")
    holds = []
    for _ in range(20):
        status, body = call(d.bases[0], "POST", "/api/v1/budgets/check",
                            {"reserve": True, "estimated_cost_usd": 1, "team_id": "t", "ttl_seconds": 1}, d.agent)
        assert status == 201, body
        holds.append(body["hold_id"])
    services = bootstrap(Settings(database_url=d.url))
    try:
        expired = lambda: sum(1 for r in services.store.read() if type(r.event).__name__ == "BudgetHoldExpired")  # noqa: E731
        wait_until(lambda: expired() > 0, 60, "the first expiry")
        stop(d.worker, signal.SIGKILL)  # while the job is expiring the rest
        d.worker = start_cli(d.url, "work")
        wait_until(lambda: expired() == len(holds), 90, "every hold to be recorded expired")
        head = services.store.max_position()
        status, _ = call(d.bases[0], "GET", f"/api/v1/budgets/t/status?min_position={head}", headers=d.agent)
        assert status == 200
        status, answer = call(d.bases[0], "GET", f"/api/v1/budgets/t/status?min_position={head}", headers=d.agent)
        assert answer["held_usd"] == 0 and answer["available_usd"] == LIMIT
        for hold_id in holds:
            assert call(d.bases[0], "GET", f"/api/v1/budgets/holds/{hold_id}", headers=d.agent)[1]["state"] == "expired"
        live = next(p for p in all_projections() if p.name == "budget_status")
        shadow = next(p for p in all_projections(prefix="check_") if p.name == "budget_status")
        stop(d.worker)
        assert rebuild_check(services.engine, services.store, live, shadow, batch_size=1000) == []
    finally:
        services.close()
