"""Benchmark: `POST /api/v1/budgets/check` requests/s against the same server's `/healthz`.

Sets up a temporary PostgreSQL database with one org holding 100 budgets (organization,
team, agent, workflow, user and app scopes, every period) and some usage, starts the API
the way production does (`python -m usage_ledger.cli api`, gunicorn), and drives both endpoints with
the same load generator for the same time. Prints both figures and their ratio (SPEC.md §8
target: ≥ 0.6). The database is dropped afterwards.

    python -m bench.budget_check [--seconds 10] [--clients 4] [--workers 2]
        [--server postgresql://postgres@127.0.0.1:5432]
"""
from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import msgspec

from bench.common import BENCH_PEPPER, env_for, report, stop_all, temporary_database

ROOT = Path(__file__).resolve().parent.parent
TENANT, ORG, CLIENT, SECRET = "bench", "bench-org", "bench-agent", "bench-secret"
TEAMS = [f"team-{i}" for i in range(10)]
AGENTS = [f"agent-{i}" for i in range(20)]


def prepare(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    from ledger.application import Actor, Ledger
    from ledger.settings import Settings
    from ledger.store import LedgerStore
    from ledger.usage.rules import UsageIn
    from projections.db import make_engine
    from projections.framework import catch_up
    from projections.registry import all_projections, setup_database

    settings = Settings(database_url=database_url, secret_pepper=BENCH_PEPPER)
    setup_database(settings)
    store = LedgerStore(database_url)
    ledger = Ledger(store, settings)
    ledger.identity.create_tenant(TENANT, "Bench", "system:bench")
    ledger.identity.create_org(TENANT, ORG, "Bench org", "system:bench")
    ledger.identity.register_client(TENANT, ORG, "bench", "system:bench", client_id=CLIENT, secret=SECRET)
    actor = Actor(TENANT, ORG, f"client:{CLIENT}", CLIENT)
    periods = ("daily", "weekly", "monthly", "quarterly", "yearly")
    scopes = (
        [("organization", None)] * 10
        + [("team", t) for t in TEAMS] * 3
        + [("agent", a) for a in AGENTS]
        + [("workflow", f"wf-{i}") for i in range(10)]
        + [("user", f"user-{i}") for i in range(10)]
        + [("app", f"app-{i}") for i in range(10)]
    )
    for i, (scope, scope_id) in enumerate(scopes[:100]):
        ledger.cost_controls.create_budget(actor, "user:bench", {
            "budget_id": f"budget-{i:03d}", "name": f"Budget {i}", "scope": scope, "scope_id": scope_id,
            "limit_usd": 1_000_000, "period": periods[i % 5], "on_exceed": ("warn", "block", "downgrade")[i % 3],
            "downgrade_model": "gpt-4o-mini",
        })
    now = settings.clock.now()
    for batch in range(5):
        events = [
            {"event_id": f"e-{batch}-{i}", "event_type": "llm_request", "llm_provider": "openai", "llm_model": "gpt-4o",
             "prompt_tokens": 1000, "completion_tokens": 200, "team_id": TEAMS[i % 10], "agent_id": AGENTS[i % 20],
             "occurred_at": (now - timedelta(minutes=i)).isoformat()}
            for i in range(1000)
        ]
        ledger.usage.record(actor, msgspec.convert(events, list[UsageIn]))
    engine = make_engine(database_url, writer=True)
    for projection in all_projections():
        catch_up(engine, store, projection)
    engine.dispose()
    store.close()


def _request(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _drive(port: int, request: bytes, seconds: float, expect: bytes, counter) -> None:
    """One client: a fresh connection per request (gunicorn's sync workers close it anyway)."""
    done = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks)
        if answer.startswith(b"HTTP/1.1 200") and expect in answer:
            done += 1
        else:
            errors += 1
    with counter.get_lock():
        counter.value += done
    if errors:
        print(f"  {errors} unexpected answers", file=sys.stderr)


def measure(port: int, request: bytes, seconds: float, clients: int, expect: bytes) -> float:
    counter = multiprocessing.Value("l", 0)
    procs = [multiprocessing.Process(target=_drive, args=(port, request, seconds, expect, counter)) for _ in range(clients)]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return counter.value / (time.monotonic() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where budget_check.json goes")
    args = parser.parse_args()

    with temporary_database("postgres", server=args.server) as database_url:
        server = None
        try:
            print(f"preparing {database_url}: 100 budgets, 5,000 usage events", file=sys.stderr)
            prepare(database_url)
            port = free_port()
            env = env_for(database_url)
            server = subprocess.Popen(
                [sys.executable, "-m", "usage_ledger.cli", "api", "--port", str(port), "--workers", str(args.workers)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            health = _request("GET", "/healthz", None, {})
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                        conn.sendall(health)
                        if conn.recv(100).startswith(b"HTTP/1.1 200"):
                            break
                except OSError:
                    time.sleep(0.1)
            auth = "Basic " + base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
            body = json.dumps({"org_id": ORG, "team_id": TEAMS[3], "agent_id": AGENTS[7], "user_id": "user-2",
                               "estimated_cost_usd": 0.05}).encode()
            check = _request("POST", "/api/v1/budgets/check", body, {"Authorization": auth})
            measure(port, check, 2, args.clients, b'"allowed"')  # warm up both workers and their pools
            healthz_rps = measure(port, health, args.seconds, args.clients, b'"ok"')
            check_rps = measure(port, check, args.seconds, args.clients, b'"allowed"')
            result = {
                "budgets_in_org": 100,
                "gunicorn_workers": args.workers,
                "clients": args.clients,
                "seconds": args.seconds,
                "healthz_rps": round(healthz_rps, 1),
                "budget_check_rps": round(check_rps, 1),
                "ratio": round(check_rps / healthz_rps, 3) if healthz_rps else None,
                "target_ratio": 0.6,
            }
            report(result, args.out, "budget_check")
        finally:
            stop_all(server)


if __name__ == "__main__":
    main()
