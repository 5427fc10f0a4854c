"""Shared pieces of the benchmarks: temporary databases, server processes, event generators."""
from __future__ import annotations

import base64
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from ledger.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
ADMIN_KEY = "bench-admin-key"
# the pepper of the servers the bench starts: the one in-process Settings use by default, so
# that client secrets provisioned (or apps built) in process and in those servers agree
BENCH_PEPPER = Settings.secret_pepper


@contextmanager
def temporary_database(backend: str = "postgres", tmpdir: str = "/tmp", server: str = PG_SERVER):
    if backend == "sqlite":
        path = Path(tmpdir) / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    name = f"ul_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(database_url: str, **extra) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url, ADMIN_API_KEY=ADMIN_KEY, PYTHONUNBUFFERED="1")
    env["SECRET_PEPPER"] = BENCH_PEPPER  # serve, api and work refuse to start without one
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextmanager
def process(database_url: str, *args: str, **extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "usage_ledger.cli", *args], cwd=ROOT, env=env_for(database_url, **extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 60):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.headers, response.read()


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http("GET", url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"), ("axon", "axon-embed-1"))


def event_dicts(
    count: int, prefix: str, now: datetime, days: float = 30, seed: int = 1, combos: int = 160, span: float | None = None
) -> list[dict]:
    """Synthetic usage. `combos` bounds the distinct attribution combinations (model, team,
    agent, user, event type), which decides how many rollup rows an hour of traffic makes.
    Events fall in [now - days, now - days + span] (span defaults to the whole window)."""
    rng = random.Random(seed)
    events = []
    window = max(1, int((days if span is None else span) * 86400))
    for n in range(count):
        i = rng.randrange(combos)
        provider, model = MODELS[i % len(MODELS)]
        moment = now - timedelta(days=days) + timedelta(seconds=rng.randrange(0, window))
        events.append(
            {
                "event_id": f"{prefix}-{n}",
                "event_type": "llm_request" if i % 3 else "api_call",
                "occurred_at": moment.isoformat(),
                "llm_provider": provider,
                "llm_model": model,
                "prompt_tokens": rng.randrange(10, 2000),
                "completion_tokens": rng.randrange(0, 800),
                "latency_ms": rng.randrange(20, 3000),
                "http_status_code": 200 if rng.random() > 0.05 else 500,
                "team_id": f"team-{i % 5}",
                "agent_id": f"agent-{i % 11}",
                "user_id": f"user-{i % 17}",
                "instance_id": f"node-{i % 4}",
                "policies_evaluated": i % 4,
            }
        )
    return events


def peak_rss_kb(pid: int | str = "self") -> int:
    """A process's peak resident memory in KiB (its VmHWM; 0 once it is gone). Children
    started with `python -c` read their own: ru_maxrss survives exec, so it reported the
    bench process's peak for every child."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stat_cpu_seconds(stat: str, with_children: bool = False) -> float:
    """User + system CPU seconds in a process's /proc/PID/stat text (and of its children
    that were waited for)."""
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15 if with_children else 13])  # utime stime [cutime cstime]
    return ticks / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU seconds of this machine's PostgreSQL server processes over a block, counting the
    backends that end during it (a catch-up's connections close before its end): every
    process is sampled every 0.1 s and kept by (pid, start time) at its last reading.

        with PostgresCpu() as pg:
            ...
        pg.seconds
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # ended meanwhile: its last reading stays
            if "(postgres)" in stat:
                started = stat.rsplit(")", 1)[1].split()[19]  # a pid and its start time name one process
                self.seen[(entry, started)] = stat_cpu_seconds(stat)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> "PostgresCpu":
        self._sample()
        self._base = sum(self.seen.values())
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = sum(self.seen.values()) - self._base


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that were waited for, so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cpu_per_event_note(events: int, wall: float, worker: float, postgres: float | None) -> str:
    """Where a catch-up's time goes: CPU per event of the worker process(es) and of
    PostgreSQL (None: SQLite) against the wall time per event (2 cores: CPU twice the wall
    time is both busy)."""
    per = lambda seconds: seconds / max(events, 1) * 1e6  # noqa: E731
    server = "" if postgres is None else f", PostgreSQL {per(postgres):.1f} µs"
    return f"CPU per event: worker {per(worker):.1f} µs{server}, against {per(wall):.1f} µs of wall time"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def provision(database_url: str) -> tuple[str, str]:
    """Tenant 'bench', org 'main' and one agent client, through the application."""
    from ledger.application import Ledger
    from ledger.settings import Settings
    from ledger.store import LedgerStore
    from projections.registry import setup_database

    settings = Settings(database_url=database_url, secret_pepper=BENCH_PEPPER)
    setup_database(settings)
    store = LedgerStore(database_url)
    try:
        ledger = Ledger(store, settings)
        ledger.identity.create_tenant("bench", "Bench", "bench")
        ledger.identity.create_org("bench", "main", "Main", "bench")
        client = ledger.identity.register_client("bench", "main", "bench agent", "bench")
        return client.client_id, client.client_secret
    finally:
        store.close()


def dumps(obj) -> bytes:
    return json.dumps(obj).encode()


def post_batches(port: int, headers: dict, bodies: list[bytes], clients: int) -> float:
    """POST the 1,000-event bodies to /api/v1/events from `clients` threads; events/s."""
    import threading
    import time

    def post(chunk):
        for body in chunk:
            http("POST", f"http://127.0.0.1:{port}/api/v1/events", body, headers)

    threads = [threading.Thread(target=post, args=(bodies[i::clients],)) for i in range(clients)]
    t0 = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    return len(bodies) * 1000 / (time.perf_counter() - t0)


def report(result: dict, out: str, name: str) -> None:
    """Print a benchmark's result and write it to `out`/`name`.json."""
    print(json.dumps(result, indent=2))
    results = Path(out)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def stop_all(*processes) -> None:
    """Terminate the servers a benchmark started (those that did start), killing any that hang."""
    for process in processes:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
