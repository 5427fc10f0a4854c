"""Benchmark: budget holds through HTTP, against the plain check on the same server.

On the org of `bench.budget_check` (100 budgets, 5,000 usage events, PostgreSQL, the API
under gunicorn as in production):
- plain checks/s and reserve+commit pairs/s, same body, same clients (target ratio ≥ 0.5);
- p50/p99 latency of a reserve under 8 concurrent clients;
- correctness: 200 concurrent reserves of $1 against a $50 block budget, granted == 50.

    python -m bench.budget_holds [--seconds 8] [--clients 4] [--workers 2]
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
from concurrent.futures import ThreadPoolExecutor


from bench.common import env_for, report, stop_all, temporary_database
from bench.budget_check import AGENTS, CLIENT, ORG, ROOT, SECRET, TEAMS, _request, free_port, measure, prepare


def _ask(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _pairs(port: int, auth: str, reserve: bytes, seconds: float, commit: bool, queue) -> None:
    """One client: reserve, then (with `commit`) commit the hold; reports (pairs, reserve latencies)."""
    headers = {"Authorization": auth}
    request = _request("POST", "/api/v1/budgets/check", reserve, headers)
    done, latencies = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, body = _ask(port, request)
        latencies.append(time.perf_counter() - started)
        if status != 201:
            continue
        if commit:
            hold_id = json.loads(body)["hold_id"]
            actual = json.dumps({"actual_cost_usd": 0.04}).encode()
            status, _ = _ask(port, _request("POST", f"/api/v1/budgets/holds/{hold_id}/commit", actual, headers))
            if status != 200:
                continue
        done += 1
    queue.put((done, latencies))


def drive(port: int, auth: str, reserve: bytes, seconds: float, clients: int, commit: bool) -> tuple[float, list[float]]:
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_pairs, args=(port, auth, reserve, seconds, commit, queue)) for _ in range(clients)]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    return sum(r[0] for r in results) / elapsed, sorted(x for r in results for x in r[1])


def race(port: int, auth: str) -> int:
    """200 concurrent reserves of $1 against a fresh $50 block budget: how many were granted."""
    headers = {"Authorization": auth}
    budget = json.dumps({"id": "race", "name": "race", "scope": "workflow", "scope_id": "race", "limit_usd": 50,
                         "period": "monthly", "on_exceed": "block"}).encode()
    status, body = _ask(port, _request("POST", "/api/v1/budgets", budget, headers))
    assert status == 201, body
    position = json.loads(body)["position"]
    _ask(port, _request("GET", f"/api/v1/budgets/race?min_position={position}", None, headers))
    _ask(port, _request("GET", f"/api/v1/budgets/race?min_position={position}", None, headers))
    reserve = json.dumps({"org_id": ORG, "workflow_id": "race", "reserve": True, "estimated_cost_usd": 1}).encode()
    request = _request("POST", "/api/v1/budgets/check", reserve, headers)
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda _: _ask(port, request)[0], range(200)))
    return statuses.count(201)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where budget_holds.json goes")
    args = parser.parse_args()

    with temporary_database("postgres", server=args.server) as database_url:
        server = worker = None
        try:
            print(f"preparing {database_url}: 100 budgets, 5,000 usage events", file=sys.stderr)
            prepare(database_url)
            port = free_port()
            env = env_for(database_url, PROJECTOR_POLL_SECONDS="0.05")
            server = subprocess.Popen(
                [sys.executable, "-m", "usage_ledger.cli", "api", "--port", str(port), "--workers", str(args.workers)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            worker = subprocess.Popen([sys.executable, "-m", "usage_ledger.cli", "work"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(200):
                try:
                    if _ask(port, _request("GET", "/healthz", None, {}))[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            auth = "Basic " + base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
            scope = {"org_id": ORG, "team_id": TEAMS[3], "agent_id": AGENTS[7], "user_id": "user-2", "estimated_cost_usd": 0.05}
            check = _request("POST", "/api/v1/budgets/check", json.dumps(scope).encode(), {"Authorization": auth})
            reserve = json.dumps({**scope, "reserve": True}).encode()
            measure(port, check, 2, args.clients, b'"allowed"')  # warm up both workers and their pools
            check_rps = measure(port, check, args.seconds, args.clients, b'"allowed"')
            pairs_rps, _ = drive(port, auth, reserve, args.seconds, args.clients, commit=True)
            _, latencies = drive(port, auth, reserve, args.seconds, 8, commit=False)
            granted = race(port, auth)
            result = {
                "budgets_in_org": 100,
                "budgets_per_request": 15,
                "gunicorn_workers": args.workers,
                "clients": args.clients,
                "seconds": args.seconds,
                "check_rps": round(check_rps, 1),
                "reserve_commit_pairs_per_s": round(pairs_rps, 1),
                "ratio": round(pairs_rps / check_rps, 3) if check_rps else None,
                "target_ratio": 0.5,
                "reserve_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
                "reserve_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                "reserves_measured": len(latencies),
                "race_granted": granted,
                "race_cap": 50,
            }
            report(result, args.out, "budget_holds")
        finally:
            stop_all(server, worker)


if __name__ == "__main__":
    main()
