"""HTTP load against a real server (gunicorn API + worker): single-event POSTs from many
keep-alive clients against `/healthz`, and an authenticated read against an
unauthenticated one. Clients are separate processes (the load generator must not share a
GIL), each on one persistent HTTP/1.1 connection that reconnects when the server closes it.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import time
import uuid

from bench.common import basic, dumps, event_dicts, median, percentile, utcnow


def _client(port: int, kind: str, seconds: float, rate: float, headers: dict, out) -> None:
    """One client: requests for `seconds`, paced to `rate` per second if rate > 0; puts
    (done, errors, latencies in ms) on `out`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    tag = uuid.uuid4().hex[:12]
    done = errors = 0
    latencies: list[float] = []
    now = utcnow()
    start = time.monotonic()
    deadline = start + seconds
    while True:
        due = start + done / rate if rate else 0
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() >= deadline:
            break
        if kind == "post":
            body = dumps(event_dicts(1, f"{tag}-{done}", now, days=0, seed=done)[0])
            method, path = "POST", "/api/v1/events"
        else:
            body, method, path = None, "GET", kind
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status in (200, 201, 202)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            ok = False
        latencies.append((time.perf_counter() - t0) * 1000)
        if ok:
            done += 1
        else:
            errors += 1
    conn.close()
    out.put((done, errors, latencies))


def drive(port: int, kind: str, seconds: float, clients: int, headers: dict, rate: float = 0) -> dict:
    """`clients` processes for `seconds`; rate: total requests/s to pace to (0: as fast as
    the server answers). Returns requests/s, errors and latency percentiles."""
    out = multiprocessing.Queue()
    per_client = rate / clients if rate else 0
    procs = [
        multiprocessing.Process(target=_client, args=(port, kind, seconds, per_client, headers, out)) for _ in range(clients)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    done = sum(r[0] for r in results)
    latencies = [ms for r in results for ms in r[2]]
    return {
        "rps": done / elapsed,
        "done": done,
        "errors": sum(r[1] for r in results),
        "p50": median(latencies) if latencies else 0.0,
        "p99": percentile(latencies, 99) if latencies else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def single_event_posts(port: int, worker_pid: int, client_id: str, secret: str, clients: int, seconds: float) -> dict:
    headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
    drive(port, "/healthz", 2, clients, {})  # warm up both workers
    drive(port, "post", 2, clients, headers)
    health = drive(port, "/healthz", seconds, clients, {})
    cpu0 = cpu_seconds(worker_pid)
    peak = drive(port, "post", seconds, clients, headers)
    worker_cpu = cpu_seconds(worker_pid) - cpu0
    half = drive(port, "post", seconds, clients, headers, rate=peak["rps"] / 2)
    return {"health": health, "peak": peak, "half": half, "worker_cpu_per_1000": worker_cpu / max(peak["done"], 1) * 1000}


def authenticated_read(port: int, client_id: str, secret: str, clients: int, seconds: float) -> dict:
    headers = {"Authorization": basic(client_id, secret)}
    drive(port, "/api/v1/usage/summary", 2, clients, headers)
    open_read = drive(port, "/api/v1/deployment/config", seconds, clients, {})
    authed = drive(port, "/api/v1/usage/summary", seconds, clients, headers)
    return {"open": open_read, "authed": authed}


if __name__ == "__main__":  # a quick look: python -m bench.http_load
    import sys

    from bench.common import process, provision, temporary_database, wait_http

    with temporary_database("postgres") as url:
        cid, sec = provision(url)
        with process(url, "api", "--port", "18777", "--workers", "2"), process(url, "work") as worker:
            wait_http("http://127.0.0.1:18777/healthz")
            print(json.dumps(single_event_posts(18777, worker.pid, cid, sec, 16, float(sys.argv[1]) if len(sys.argv) > 1 else 5)))
            print(json.dumps(authenticated_read(18777, cid, sec, 4, 5)))
