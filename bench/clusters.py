"""`make bench BENCH_ARGS="--clusters 2"`: ingest and catch-up per ledger cluster and in
total, against one cluster in the same run, and the CPU each PostgreSQL server used.

The first cluster is the bench's usual server (BENCH_POSTGRES_URL); the others are
PostgreSQL servers started here from the machine's binaries (initdb, pg_ctl) on free
ports, stopped afterwards. Ingest appends through the ledger application (batches of
1,000, one writer process per cluster; the one-cluster baseline runs the same number of
writers against one server). Catch-up projects every read model of each cluster at once.
On a machine with fewer cores than servers the total cannot grow with the clusters: the
rows say what this machine did.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

from bench.common import PG_SERVER, ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(server_url: str) -> float:
    """CPU the server used so far: its postmaster, the backends it reaped and the live ones."""
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
    try:
        pid = int(Path(data, "postmaster.pid").read_text().split()[0])
    except OSError:  # not readable from here (another host or user): not measured
        return float("nan")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
        if int(entry) == pid:
            total += utime + stime + cutime + cstime
        elif ppid == pid:
            total += utime + stime
    return total / CLK_TCK


def _fill(url: str, count: int, prefix: str) -> subprocess.Popen:
    code = f"from bench.filling import fill_ledger; fill_ledger({url!r}, {count}, {prefix!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL)


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]


def _new_database(server_url: str) -> str:
    name = f"ul_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def _drop(url: str) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _timed_parallel(jobs) -> tuple[float, list[float]]:
    """Run callables at once; (wall seconds, each one's seconds)."""
    took = [0.0] * len(jobs)

    def run(i, job):
        t0 = time.perf_counter()
        job()
        took[i] = time.perf_counter() - t0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, took


def bench_clusters(clusters: int, events_per_cluster: int, record, out: Path) -> list[dict]:
    from projections.registry import setup_database
    from ledger.settings import Settings
    from bench.filling import catch_up_all
    from tests.pg_cluster import PostgresServer, postgres_bin

    binaries = postgres_bin()
    if binaries is None:
        raise SystemExit("--clusters needs PostgreSQL's initdb and pg_ctl on this machine")
    servers = [PostgresServer(binaries, durable=True) for _ in range(clusters - 1)]
    urls_made: list[str] = []
    results: list[dict] = []
    try:
        for server in servers:
            server.start()
        server_urls = [PG_SERVER] + [s.url for s in servers]
        total = events_per_cluster * clusters

        # one cluster: the same writers, one server ---------------------------------
        one = _new_database(PG_SERVER)
        urls_made.append(one)
        setup_database(Settings(database_url=one))
        cpu0 = server_cpu_seconds(PG_SERVER)
        wall, _ = _timed_parallel([
            (lambda i=i: _fill(one, events_per_cluster, f"one{i}-").wait()) for i in range(clusters)
        ])
        cpu_one = server_cpu_seconds(PG_SERVER) - cpu0
        if _count(one) < total:
            raise SystemExit(f"the one-cluster fill wrote {_count(one)} of {total} events")
        record(f"ledger append, {clusters} writers into 1 cluster ({total:,} events)", total / wall, "events/s",
               note=f"PostgreSQL CPU {cpu_one:.1f} s")
        one_rate = total / wall
        t_one = catch_up_all(one)
        record(f"catch-up, every read model, 1 cluster ({total:,} events)", total / t_one, "events/s")

        # N clusters: one writer each -----------------------------------------------
        urls = [_new_database(server) for server in server_urls]
        urls_made.extend(urls)
        for url in urls:
            setup_database(Settings(database_url=url))
        cpu_before = [server_cpu_seconds(s) for s in server_urls]
        wall, each = _timed_parallel([
            (lambda url=url, i=i: _fill(url, events_per_cluster, f"c{i}-").wait()) for i, url in enumerate(urls)
        ])
        cpu = [server_cpu_seconds(s) - b for s, b in zip(server_urls, cpu_before)]
        for url in urls:
            if _count(url) < events_per_cluster:
                raise SystemExit(f"a cluster's fill wrote {_count(url)} of {events_per_cluster} events")
        for i, seconds in enumerate(each):
            record(f"ledger append, cluster {i + 1} of {clusters} ({events_per_cluster:,} events)",
                   events_per_cluster / seconds, "events/s", note=f"its PostgreSQL server's CPU {cpu[i]:.1f} s")
        record(f"ledger append, {clusters} clusters in total ({total:,} events)", total / wall, "events/s",
               baseline=one_rate, baseline_name="the same writers into 1 cluster",
               note=f"{os.cpu_count()} cores shared by every server and writer")
        t_wall, t_each = _timed_parallel([(lambda url=url: catch_up_all(url)) for url in urls])
        for i, seconds in enumerate(t_each):
            record(f"catch-up, every read model, cluster {i + 1} of {clusters}", events_per_cluster / seconds, "events/s")
        record(f"catch-up, every read model, {clusters} clusters in total", total / t_wall, "events/s",
               baseline=total / t_one, baseline_name="1 cluster, same events")
        results = [{"servers": server_urls, "cpu_seconds": cpu, "cpu_seconds_one_cluster": cpu_one}]
    finally:
        for url in urls_made:
            try:
                _drop(url)
            except psycopg.Error:
                pass
        for server in servers:
            server.destroy()
    out.mkdir(parents=True, exist_ok=True)
    (out / "clusters.json").write_text(json.dumps({"clusters": clusters, "events_per_cluster": events_per_cluster,
                                                   "servers": results}, indent=2))
    return results
