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

from bench.common import basic, children_cpu_seconds, dumps, event_dicts, median, percentile, stat_cpu_seconds, utcnow


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


def _cpu(pid: int, with_children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its children that were waited for)."""
    return stat_cpu_seconds(open(f"/proc/{pid}/stat").read(), with_children)


def cpu_seconds(pid: int) -> float:
    return _cpu(pid, with_children=True)


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(CPU seconds of `root` and its descendants, such as an API's gunicorn master and
    workers; of every PostgreSQL server process running now)."""
    import os

    parents: dict[int, int] = {}
    postgres = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            if "(postgres)" in stat:
                postgres += stat_cpu_seconds(stat)
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue  # a process that ended meanwhile
    total, tree = 0.0, {root}
    for pid in sorted(parents):  # children have higher pids than their parents here
        if pid in tree or parents[pid] in tree:
            tree.add(pid)
            try:
                total += _cpu(pid)
            except OSError:
                pass
    return total, postgres


class Cpu:
    """CPU seconds by role, to say where a request's cost goes: the API's process tree
    (gunicorn master and workers), the worker's, every PostgreSQL server process, and the
    load generator's clients (processes of this one, reaped after each run)."""

    def __init__(self, api_pid: int, worker_pid: int):
        self.api_pid, self.worker_pid = api_pid, worker_pid

    def sample(self) -> dict[str, float]:
        api, postgres = tree_cpu_seconds(self.api_pid)
        return {"api": api, "worker": _cpu(self.worker_pid), "postgres": postgres, "clients": children_cpu_seconds()}

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], done: int) -> dict[str, float]:
        """Milliseconds of CPU per request, by role, between two samples."""
        return {role: (after[role] - before[role]) / max(done, 1) * 1000 for role in before}


def cpu_note(label: str, per_request: dict[str, float]) -> str:
    parts = ", ".join(f"{role} {ms:.2f}" for role, ms in per_request.items())
    return f"CPU ms per request {label}: {parts} (total {sum(per_request.values()):.2f})"


def single_event_posts(port: int, cpu: Cpu, client_id: str, secret: str, clients: int, seconds: float) -> dict:
    headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
    drive(port, "/healthz", 2, clients, {})  # warm up both workers
    drive(port, "post", 2, clients, headers)
    before = cpu.sample()
    health = drive(port, "/healthz", seconds, clients, {})
    middle = cpu.sample()
    peak = drive(port, "post", seconds, clients, headers)
    after = cpu.sample()
    half = drive(port, "post", seconds, clients, headers, rate=peak["rps"] / 2)
    return {
        "health": health, "peak": peak, "half": half,
        "worker_cpu_per_1000": (after["worker"] - middle["worker"]) / max(peak["done"], 1) * 1000,
        "cpu_health": Cpu.per_request(before, middle, health["done"]), "cpu_post": Cpu.per_request(middle, after, peak["done"]),
    }


def authenticated_read(port: int, cpu: Cpu, client_id: str, secret: str, clients: int, seconds: float) -> dict:
    headers = {"Authorization": basic(client_id, secret)}
    drive(port, "/api/v1/usage/summary", 2, clients, headers)
    before = cpu.sample()
    open_read = drive(port, "/api/v1/deployment/config", seconds, clients, {})
    middle = cpu.sample()
    authed = drive(port, "/api/v1/usage/summary", seconds, clients, headers)
    after = cpu.sample()
    return {
        "open": open_read, "authed": authed,
        "cpu_open": Cpu.per_request(before, middle, open_read["done"]), "cpu_authed": Cpu.per_request(middle, after, authed["done"]),
    }


if __name__ == "__main__":  # a quick look: python -m bench.http_load
    import sys

    from bench.common import process, provision, temporary_database, wait_http

    with temporary_database("postgres") as url:
        cid, sec = provision(url)
        with process(url, "api", "--port", "18777", "--workers", "2") as api, process(url, "work") as worker:
            wait_http("http://127.0.0.1:18777/healthz")
            cpu = Cpu(api.pid, worker.pid)
            print(json.dumps(single_event_posts(18777, cpu, cid, sec, 16, float(sys.argv[1]) if len(sys.argv) > 1 else 5)))
            print(json.dumps(authenticated_read(18777, cpu, cid, sec, 4, 5)))
