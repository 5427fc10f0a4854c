"""`make bench`: every figure is measured against a baseline in the same run, on the same
machine, and written as a table to bench/results/ (markdown + JSON).

    python -m bench.run                 # default sizes: 100k and 1M events (about 20 minutes)
    python -m bench.run --large         # adds a 5M-event ledger (about 20 minutes more)
    python -m bench.run --only ingest,ledger
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from bench.common import (
    ROOT,
    PostgresCpu,
    basic,
    children_cpu_seconds,
    cpu_per_event_note,
    dumps,
    event_dicts,
    http,
    median,
    peak_rss_kb,
    percentile,
    post_batches,
    process,
    provision,
    temporary_database,
    utcnow,
    wait_http,
)
from bench.consistency_ab import bench_session_consistency
from bench.filling import catch_up_all, fill_ledger
from bench.ingest_formats import bench_ingest_formats

RESULTS = ROOT / "bench" / "results"
rows: list[dict] = []


def record(name: str, figure: float, unit: str, baseline: float | None = None, baseline_name: str = "",
           target: str = "", ratio: float | None = None, note: str = "", met: bool | None = None) -> None:
    """One row. `met`: whether the target is reached; by default a target "≥ x" is read as
    ratio ≥ x. A row whose target is missed is marked ✗ in the table."""
    if ratio is None and baseline:
        ratio = figure / baseline
    if met is None and target.startswith("≥ ") and ratio is not None and target[2:].replace(".", "").isdigit():
        met = ratio >= float(target[2:])
    row = {"benchmark": name, "figure": round(figure, 3), "unit": unit, "baseline": baseline_name,
           "baseline_figure": None if baseline is None else round(baseline, 3),
           "ratio": None if ratio is None else round(ratio, 3), "target": target, "note": note, "met": met}
    rows.append(row)
    print(json.dumps(row), flush=True)


# --- ledger filling: bench/filling.py ------------------------------------------------
def catch_up_workers(url: str, processes: int) -> float:
    """Every read model caught up from zero by `processes` real worker processes
    (`usage-ledger work`, which split the read models between them); returns seconds from
    their start until every position reached the ledger head, and records the workers'
    peak memory (the highest VmHWM among them) and the CPU seconds they and PostgreSQL used
    (`catch_up_workers.cpu`)."""
    from ledger.store import LedgerStore
    from projections.db import make_engine
    from projections.framework import positions
    from projections.registry import all_projections

    names = [p.name for p in all_projections()]
    store = LedgerStore(url)
    head = store.max_position()
    store.close()
    engine = make_engine(url)
    peak_kb = 0
    children = children_cpu_seconds()
    with PostgresCpu() as postgres, contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        workers = [stack.enter_context(process(url, "work")) for _ in range(processes)]
        while True:
            time.sleep(0.2)
            for w in workers:
                peak_kb = max(peak_kb, peak_rss_kb(w.pid))
            with engine.connect() as conn:
                found = positions(conn)
            if all(found.get(n, 0) >= head for n in names):
                seconds = time.perf_counter() - t0
                break
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a worker process stopped during the catch-up")
        for w in workers:
            peak_kb = max(peak_kb, peak_rss_kb(w.pid))
    engine.dispose()
    catch_up_workers.peak_mb = peak_kb / 1024
    catch_up_workers.cpu = (children_cpu_seconds() - children, postgres.seconds)  # the workers were waited for
    return seconds


def raw_decoded_read(url: str) -> tuple[int, float]:
    from ledger.codec import decode_event
    from ledger.store import LedgerStore

    store = LedgerStore(url)
    t0 = time.perf_counter()
    position, count = 0, 0
    while True:
        notifications = store.recorder.select_notifications(position, 2000, inclusive_of_start=False)
        if not notifications:
            break
        for n in notifications:
            decode_event(n.state)
        position, count = notifications[-1].id, count + len(notifications)
    seconds = time.perf_counter() - t0
    store.close()
    return count, seconds


def reader_read(url: str) -> tuple[int, float]:
    """The projectors' own read path with nothing applied: windows of the usage topics,
    binary rows, decode, read-ahead and the projectors' GC settings."""
    import gc

    from ledger.settings import Settings
    from ledger.store import LedgerStore
    from projections.framework import Projection, Reader, tune_gc
    from projections.usage import USAGE_TOPICS

    class Nothing(Projection):
        name, topics = "nothing", USAGE_TOPICS

        def define(self, metadata, prefix):
            pass

    thresholds = gc.get_threshold()
    tune_gc()
    store = LedgerStore(url)
    reader = Reader(store, Nothing(), Settings().projector_batch_size)
    try:
        head, position, count = store.max_position(), 0, 0
        t0 = time.perf_counter()
        while position < head:
            position, items = reader.window(position, head)
            count += len(items)
        return count, time.perf_counter() - t0
    finally:
        reader.close()
        store.close()
        gc.set_threshold(*thresholds)


# --- benchmarks -----------------------------------------------------------------------
def bench_ingest(backend: str, batches_per_client: int, clients: int = 4) -> None:
    """HTTP ingest of 1,000-event batches from several clients vs raw insert_events."""
    from eventsourcing.persistence import StoredEvent

    from bench.http_load import tree_cpu_seconds
    from ledger.usage.streams import usage_stream
    from ledger.codec import encode_event
    from ledger.usage.events import UsageRecorded
    from api.usage_codec import decode_usage_body
    from ledger.usage.rules import validate_items
    from ledger.pricing.prices import PriceBook

    now = utcnow()
    bodies = [dumps({"events": event_dicts(1000, f"h{c}-{b}", now, seed=c * 1000 + b)})
              for c in range(clients) for b in range(batches_per_client)]
    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        port = 18000 + (hash(url) % 1000)
        with process(url, "api", "--port", str(port), "--workers", "2") as api:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
            with PostgresCpu() as postgres:
                api_cpu, clients_cpu = tree_cpu_seconds(api.pid)[0], time.process_time()
                http_rate = post_batches(port, headers, bodies, clients)
                api_cpu, clients_cpu = tree_cpu_seconds(api.pid)[0] - api_cpu, time.process_time() - clients_cpu
    per_event = lambda seconds: seconds / (len(bodies) * 1000) * 1e6  # noqa: E731
    spent = (f"CPU per event: API {per_event(api_cpu):.1f} µs, "
                + (f"PostgreSQL {per_event(postgres.seconds):.1f} µs, " if backend == "postgres" else "")
                + f"clients {per_event(clients_cpu):.1f} µs, against {1e6 / http_rate:.1f} µs of wall time")
    # baseline: the same events, already encoded, through the library's batched insert_events
    # (its own recorder, as it ships); and through our store's recorder, which sends the
    # events in binary on PostgreSQL (ledger/store.py `_binary_insert`)
    stored_batches = []
    for body in bodies:
        usages = validate_items(decode_usage_body(body), client_id="bench", now=utcnow(), backdating_days=40, prices=PriceBook())
        stored_batches.append([
            StoredEvent(usage_stream("bench", u.event_id), 1, "UsageRecorded",
                        encode_event(UsageRecorded(tenant_id="bench", org_id="main", recorded_at=now, actor="b", usage=u)))
            for u in usages
        ])
    raw_rate = insert_events_rate(backend, stored_batches, stock=True)
    ours = insert_events_rate(backend, stored_batches, stock=False) if backend == "postgres" else raw_rate
    record(f"ingest via HTTP, {clients} clients × 1,000-event batches ({backend})", http_rate, "events/s",
           raw_rate, "eventsourcing insert_events, 1,000 per call", "≥ 0.6",
           note=spent if backend != "postgres" else
           f"our store's insert_events (binary parameters) {ours:,.0f} events/s: ratio {http_rate / ours:.3f}; {spent}")
    if backend == "postgres":
        copy_rate = copy_events(stored_batches)
        stages = ingest_stages(bodies[:6])
        record(f"ingest via HTTP, {clients} clients × 1,000-event batches, against COPY ({backend})", http_rate, "events/s",
               copy_rate, "binary COPY of the same rows into the same events table, 1,000 per transaction", "≥ 0.5",
               note=f"{spent}; one client's batch, in-process: " + ", ".join(f"{k} {v:.0%}" for k, v in stages.items()))


def insert_events_rate(backend: str, stored_batches: list, stock: bool) -> float:
    """Events/s of insert_events, 1,000 per call, into a fresh ledger: through the library's
    own recorder (`stock`) or through our store's."""
    from ledger.store import EVENTS_TABLE, LedgerStore

    with temporary_database(backend) as url:
        provision(url)
        store = LedgerStore(url)
        recorder = store.recorder
        if stock and backend == "postgres":
            from eventsourcing.postgres import PostgresApplicationRecorder

            recorder = PostgresApplicationRecorder(store.datastore, events_table_name=EVENTS_TABLE)
        total = sum(len(b) for b in stored_batches)
        t0 = time.perf_counter()
        for batch in stored_batches:
            recorder.insert_events(batch)
        seconds = time.perf_counter() - t0
        store.close()
    return total / seconds


def copy_events(stored_batches: list) -> float:
    """Events/s of binary COPY of already encoded rows into a fresh ledger's events table."""
    import psycopg

    from ledger.store import EVENTS_TABLE

    total = sum(len(b) for b in stored_batches)
    with temporary_database("postgres") as url:
        provision(url)
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            for batch in stored_batches:
                with conn.transaction(), conn.cursor() as curs:
                    with curs.copy(f"COPY {EVENTS_TABLE} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(["uuid", "int8", "text", "bytea"])
                        for e in batch:
                            copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
            return total / (time.perf_counter() - t0)


def ingest_stages(bodies: list[bytes]) -> dict[str, float]:
    """Where one 1,000-event batch's time goes, measured in-process against a fresh
    PostgreSQL ledger: decoding and validation (pricing included), encoding, the database
    (duplicate check and append), and the rest of the HTTP request (Flask, auth,
    session-consistency marks, the answer) from a test client."""
    from api import create_app
    from api.usage_codec import decode_usage_body
    from ledger.application import Actor, Ledger
    from ledger.codec import encode_event
    from ledger.settings import Settings
    from ledger.store import LedgerStore
    from ledger.usage.events import UsageRecorded
    from ledger.usage.rules import validate_items
    from ledger.pricing.prices import PriceBook

    spent = dict.fromkeys(("validation", "encoding", "database", "HTTP and the rest"), 0.0)
    with temporary_database("postgres") as url:
        client_id, secret = provision(url)
        settings = Settings(database_url=url, backdating_days=40)
        store = LedgerStore(url)
        ledger = Ledger(store, settings)
        actor = Actor("bench", "main", f"client:{client_id}", client_id)
        now = utcnow()
        for body in bodies[: len(bodies) // 2]:
            t0 = time.perf_counter()
            usages = validate_items(decode_usage_body(body), client_id=client_id, now=now, backdating_days=40, prices=PriceBook())
            t1 = time.perf_counter()
            for u in usages:
                encode_event(UsageRecorded(tenant_id="bench", org_id="main", recorded_at=now, actor="b", usage=u))
            t2 = time.perf_counter()
            ledger.usage.record(actor, decode_usage_body(body))
            t3 = time.perf_counter()
            spent["validation"] += t1 - t0
            spent["encoding"] += t2 - t1
            spent["database"] += (t3 - t2) - (t2 - t0)  # record() decodes, validates and encodes again
        store.close()
        app = create_app(Settings(database_url=url, backdating_days=40))
        client = app.test_client()
        headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
        per_batch = sum(spent.values()) / (len(bodies) // 2)
        for body in bodies[len(bodies) // 2:]:
            t0 = time.perf_counter()
            assert client.post("/api/v1/events", data=body, headers=headers).status_code == 202
            spent["HTTP and the rest"] += max(time.perf_counter() - t0 - per_batch, 0)
    total = sum(spent.values())
    return {k: v / total for k, v in spent.items()}


WORKER_PROCESSES = 2  # one per core of the reference machine
HEAVY_PROJECTIONS = ("usage_rollups", "usage_events", "ledger_chain", "budget_status", "credits", "axon_audit")


def reset_read_models(url: str) -> None:
    from projections.db import make_engine
    from projections.framework import reset
    from projections.registry import all_projections

    engine = make_engine(url, writer=True)
    for projection in all_projections():
        reset(engine, projection)
    engine.dispose()


def bench_ledger(backend: str, count: int, projectors: tuple[str, ...], all_at_once: bool, repeats: int = 60) -> dict:
    """One ledger of `count` usage events serves every figure at that size: its append rate;
    a raw decoded read of the log (the baseline); each named projector catching up alone
    from zero; the 30-day org summary from the rollups vs the same aggregate over the raw
    table; and, if asked, every read model catching up at once, as one worker runs them."""
    from projections.usage import USAGE_PROJECTIONS

    with temporary_database(backend) as url:
        provision(url)
        t0 = time.perf_counter()
        fill_ledger(url, count, "s")
        ingest_seconds = time.perf_counter() - t0
        n, read_seconds = raw_decoded_read(url)
        read_rate = n / read_seconds
        read, seconds = reader_read(url)
        record(f"the projectors' reader alone, nothing applied, {read:,} usage events ({backend})", read / seconds,
               "events/s", read_rate, "select_notifications + decode",
               note="read_window (binary rows) + decode + read-ahead: part of each projector's ratio is this faster read")
        rates = {}
        for name in dict.fromkeys((*USAGE_PROJECTIONS, *projectors)):  # the summary needs the usage ones
            seconds = catch_up_all(url, (name,))
            rates[name] = n / seconds
            if name in projectors:
                record(f"projector catch-up, {name} alone, {n:,} events ({backend})", rates[name], "events/s",
                       read_rate, "select_notifications + decode", "≥ 0.5",
                       note=f"peak memory {catch_up_all.peak_mb:.0f} MiB; {cpu_per_event_note(n, seconds, *catch_up_all.cpu)}")
        p50, raw50 = bench_summary(url, backend, count, repeats)
        if all_at_once:
            reset_read_models(url)
            seconds = catch_up_all(url)
            record(f"projector catch-up, all 16 read models at once in one worker, {n:,} events ({backend})", n / seconds,
                   "events/s", read_rate, "select_notifications + decode", "≥ 0.3" if backend == "sqlite" else "",
                   note=f"one process, one thread per read model, one shared read; peak memory {catch_up_all.peak_mb:.0f} MiB; "
                        f"{cpu_per_event_note(n, seconds, *catch_up_all.cpu)}")
            if backend == "postgres":
                reset_read_models(url)
                seconds = catch_up_workers(url, WORKER_PROCESSES)
                record(f"projector catch-up, all 16 read models, {WORKER_PROCESSES} worker processes (usage-ledger work), "
                       f"{n:,} events ({backend})", n / seconds, "events/s", read_rate, "select_notifications + decode",
                       "≥ 0.5", note="the workers split the read models between them; from process start to every position at the head; "
                                     f"{cpu_per_event_note(n, seconds, *catch_up_workers.cpu)}")
                record(f"worker peak memory during the {n:,}-event catch-up ({backend})", catch_up_workers.peak_mb, "MiB",
                       target="< 300 MiB", met=catch_up_workers.peak_mb < 300, note="highest VmHWM among the worker processes")
    return {"events": count, "ingest_rate": count / ingest_seconds, "project_rate": rates["usage_rollups"],
            "summary_p50_ms": p50, "raw_p50_ms": raw50}


def bench_summary(url: str, backend: str, count: int, repeats: int) -> tuple[float, float]:
    """30-day org summary from the rollups vs the same aggregate over the raw usage_events
    table (the usage read models must have caught up); returns both p50s in ms."""
    from sqlalchemy import func, select

    from projections.db import make_engine
    from projections.usage_queries import USAGE, Scope, aggregates, summary

    engine = make_engine(url)
    end = utcnow().replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=30)
    scope = Scope("bench", "main")
    t = USAGE.events

    def rollup_query():
        with engine.connect() as conn:
            return summary(conn, scope, start, end)

    def raw_query():
        with engine.connect() as conn:
            return conn.execute(
                select(t.c.event_type, func.count(), func.sum(t.c.total_tokens), func.sum(t.c.cost_nanos),
                       func.sum(t.c.latency_ms), func.count().filter(t.c.success))
                .where(t.c.tenant_id == "bench", t.c.org_id == "main", t.c.occurred_at >= start, t.c.occurred_at < end)
                .group_by(t.c.event_type)
            ).all()

    def hourly_query():
        with engine.connect() as conn:
            return aggregates(conn, scope, end - timedelta(days=1), end, "hourly")

    timings = {}
    for name, query in (("rollup", rollup_query), ("raw", raw_query), ("hourly", hourly_query)):
        query()
        samples = []
        for _ in range(repeats if name != "raw" else max(10, repeats // 4)):
            t0 = time.perf_counter()
            query()
            samples.append((time.perf_counter() - t0) * 1000)
        timings[name] = samples
    engine.dispose()
    p50, p99 = median(timings["rollup"]), percentile(timings["rollup"], 99)
    raw50 = median(timings["raw"])
    record(f"30-day org summary at {count:,} events ({backend}) p50", p50, "ms", raw50,
           "same aggregate over raw usage_events (p50)", "≥ 50× faster, p99 < 20 ms", ratio=raw50 / p50,
           met=raw50 / p50 >= 50 and percentile(timings["rollup"], 99) < 20,
           note=f"p99 {p99:.1f} ms; raw p99 {percentile(timings['raw'], 99):.1f} ms; "
                f"hourly 24 h p50 {median(timings['hourly']):.1f} ms p99 {percentile(timings['hourly'], 99):.1f} ms")
    return p50, raw50


def bench_lag(backend: str, seconds: float = 20) -> None:
    """Append → visible in /api/v1/usage/summary, under sustained background ingest."""
    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        port = 19000 + (hash(url) % 1000)
        headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
        with process(url, "api", "--port", str(port), "--workers", "2"), process(url, "work"):
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            stop = threading.Event()
            sent = [0]

            def background():
                b = 0
                while not stop.is_set():
                    http("POST", f"{base}/api/v1/events", dumps({"events": event_dicts(200, f"bg{b}", utcnow(), days=1, seed=b)}), headers)
                    sent[0] += 200
                    b += 1
                    time.sleep(0.1)

            worker = threading.Thread(target=background)
            worker.start()
            lags = []
            deadline = time.monotonic() + seconds
            i = 0
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                _, h, _ = http("POST", f"{base}/api/v1/events", dumps(event_dicts(1, f"lag{i}", utcnow(), days=0)[0]), headers)
                position = int(h["X-Ledger-Position"])
                http("GET", f"{base}/api/v1/usage/summary?min_position={position}", headers=headers)
                lags.append((time.perf_counter() - t0) * 1000)
                i += 1
                time.sleep(0.05)
            stop.set()
            worker.join()
            elapsed = seconds
        record(f"event-to-queryable lag p99 under {sent[0] / elapsed:,.0f} events/s sustained ingest ({backend})",
               percentile(lags, 99), "ms", target="p99 < 1000 ms", met=percentile(lags, 99) < 1000, note=f"p50 {median(lags):.0f} ms over {len(lags)} samples")


def bench_http(backend: str = "postgres", seconds: float = 10) -> None:
    """Single-event POSTs from 16 keep-alive clients against /healthz on the same server
    (API with 2 gunicorn workers, and a worker projecting), the latency at half the peak
    rate, the worker's CPU per 1,000 events; then an authenticated read against an
    unauthenticated one on the same server."""
    from bench.consistency_ab import CaughtUp
    from bench.http_load import Cpu, authenticated_read, cpu_note, single_event_posts

    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        port = 20000 + (hash(url) % 1000)
        with process(url, "api", "--port", str(port), "--workers", "2") as api, process(url, "work") as worker:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            cpu = Cpu(api.pid, worker.pid)
            posts = single_event_posts(port, cpu, client_id, secret, 16, seconds)
            # the reads measure authentication and the read, not the projection backlog the
            # posts left (the client's own reads wait for its writes: session consistency)
            with CaughtUp(url) as caught_up:
                caught_up()
            reads = authenticated_read(port, cpu, client_id, secret, 4, seconds)
    peak, half, health = posts["peak"], posts["half"], posts["health"]
    record(f"single-event POSTs, 16 keep-alive clients, unique ids ({backend})", peak["rps"], "requests/s",
           health["rps"], "GET /healthz on the same server, 16 clients", "≥ 0.5, p99 < 25 ms at half the peak rate",
           met=peak["rps"] / health["rps"] >= 0.5 and half["p99"] < 25,
           note=f"peak p50 {peak['p50']:.1f} ms p99 {peak['p99']:.1f} ms; at {half['rps']:,.0f}/s p50 {half['p50']:.1f} ms "
                f"p99 {half['p99']:.1f} ms; worker CPU {posts['worker_cpu_per_1000']:.2f} s per 1,000 events; "
                f"errors {peak['errors'] + half['errors']}; {cpu_note('POST', posts['cpu_post'])}; "
                f"{cpu_note('healthz', posts['cpu_health'])}")
    record(f"authenticated read: GET /api/v1/usage/summary, agent Basic auth, 4 clients ({backend})", reads["authed"]["rps"],
           "requests/s", reads["open"]["rps"], "unauthenticated GET /api/v1/deployment/config, same server", "≥ 0.5",
           note=f"p50 {reads['authed']['p50']:.1f} ms vs {reads['open']['p50']:.1f} ms; {cpu_note('read', reads['cpu_authed'])}; "
                f"{cpu_note('open', reads['cpu_open'])}")


def bench_export(backend: str, count: int = 50_000) -> None:
    with temporary_database(backend) as url:
        provision(url)
        fill_ledger(url, count, "x", combos=160)
        catch_up_all(url, ("usage_events",))
        code = (
            "import time, base64\nfrom api import create_app\nfrom ledger.settings import Settings\n"
            "from bench.common import peak_rss_kb\n"
            "from ledger.store import LedgerStore\n"
            f"app = create_app(Settings(database_url={url!r}, admin_api_key='k'))\n"
            "c = app.test_client()\nh = {'X-Admin-API-Key': 'k', 'X-Tenant-ID': 'bench', 'X-Org-ID': 'main'}\n"
            "before = peak_rss_kb()\n"
            "t0 = time.perf_counter(); r = c.get('/api/v1/export/usage?days=40', headers=h, buffered=False)\n"
            "n = sum(chunk.count(b'\\n') for chunk in r.response)\n"
            "print(time.perf_counter() - t0, n - 1, before, peak_rss_kb())\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        seconds, lines, before, after = out.stdout.split()
        record(f"export of {int(lines):,} rows as CSV, streamed ({backend})", float(seconds), "s",
               note=f"peak RSS {int(after) / 1024:.0f} MiB (before the export {int(before) / 1024:.0f} MiB)")


def bench_budget_check(seconds: float = 8) -> None:
    """bench/budget_check.py: /budgets/check with 100 budgets vs /healthz on the same server."""
    subprocess.run([sys.executable, "-m", "bench.budget_check", "--seconds", str(seconds), "--out", str(RESULTS)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    result = json.loads((RESULTS / "budget_check.json").read_text())
    record("POST /api/v1/budgets/check, 100 budgets in the org (postgres)", result["budget_check_rps"], "requests/s",
           result["healthz_rps"], "GET /healthz on the same gunicorn server", "≥ 0.6")


def bench_budget_holds(seconds: float = 8) -> None:
    """bench/budget_holds.py: reserve+commit pairs vs plain checks, reserve latency, the race."""
    subprocess.run([sys.executable, "-m", "bench.budget_holds", "--seconds", str(seconds), "--out", str(RESULTS)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    r = json.loads((RESULTS / "budget_holds.json").read_text())
    record("budget holds: reserve + commit pairs through HTTP, 15 budgets per request (postgres)",
           r["reserve_commit_pairs_per_s"], "pairs/s", r["check_rps"], "plain POST /api/v1/budgets/check, same run", "≥ 0.5")
    record("budget holds: reserve latency p50, 8 concurrent clients (postgres)", r["reserve_p50_ms"], "ms",
           note=f"{r['reserves_measured']} reserves")
    record("budget holds: reserve latency p99, 8 concurrent clients (postgres)", r["reserve_p99_ms"], "ms")
    record("budget holds: 200 concurrent reserves of $1 on a $50 block budget (postgres)", r["race_granted"], "granted",
           target="50", note=f"{r['race_granted']} of {r['race_cap']}")


def bench_verify(events: int = 200_000) -> None:
    """bench/verify_bench.py: `usage-ledger verify` throughput on both backends."""
    subprocess.run([sys.executable, "-m", "bench.verify_bench", "--events", str(events), "--out", str(RESULTS)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    for row in json.loads((RESULTS / "verify.json").read_text()):
        record(f"usage-ledger verify, {events:,} events ({row['backend']})", row["verify_db_events_per_s"], "events/s",
               target="≥ 50,000 events/s", met=row["verify_db_events_per_s"] >= 50_000, note=f"offline verify --file {row.get('verify_file_events_per_s', '?')} events/s")


def growth_plot(points: list[dict]) -> None:
    if not points:  # only the ledger benchmarks give growth points
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    events = [p["events"] for p in points]
    left.plot(events, [p["ingest_rate"] for p in points], marker="o", label="ledger append")
    left.plot(events, [p["project_rate"] for p in points], marker="o", label="usage_rollups catch-up")
    left.set_xscale("log"), left.set_xlabel("events in ledger"), left.set_ylabel("events/s"), left.legend()
    right.plot(events, [p["summary_p50_ms"] for p in points], marker="o", label="summary from rollups")
    right.plot(events, [p["raw_p50_ms"] for p in points], marker="o", label="same over raw rows")
    right.set_xscale("log"), right.set_yscale("log"), right.set_xlabel("events in ledger"), right.set_ylabel("p50 ms"), right.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "growth.png", dpi=100)


def write_results(points: list[dict], name: str = "results") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "growth": points}, indent=2))
    lines = ["| benchmark | figure | baseline | ratio | target | note |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        baseline = f"{r['baseline_figure']:,} ({r['baseline']})" if r.get("baseline_figure") is not None else ""
        mark = {True: " ✓", False: " ✗"}.get(r.get("met"), "")
        lines.append(f"| {r['benchmark']} | {r['figure']:,} {r['unit']} | {baseline} | {r['ratio'] if r['ratio'] is not None else ''} | {r['target']}{mark} | {r['note']} |")
    if points:
        lines += ["", "| events | ledger append events/s | projection events/s | summary p50 ms | raw aggregate p50 ms |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {p['events']:,} | {p['ingest_rate']:,.0f} | {p['project_rate']:,.0f} | {p['summary_p50_ms']:.2f} | {p['raw_p50_ms']:.1f} |" for p in points]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", action="store_true", help="also measure at 5M events")
    parser.add_argument("--only", default="", help="comma-separated: ingest,consistency,ledger,lag,http,export,budget,verify")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the ledger sizes (a smoke run: 0.002)")
    parser.add_argument("--out", default=str(RESULTS), help="where the tables and the plot go")
    parser.add_argument("--seconds", type=float, default=None,
                        help="how long each HTTP load runs (default: each part's own: consistency 5, http 10, budget 8)")
    parser.add_argument("--clusters", type=int, default=0,
                        help="scale-out: N ledger clusters (N-1 PostgreSQL servers started here) against 1; alone, only this "
                             "(table: clusters-results.md)")
    parser.add_argument("--cluster-events", type=int, default=50_000, help="events per cluster for --clusters (times --scale)")
    args = parser.parse_args()
    RESULTS = Path(args.out)
    size = lambda events: int(max(1000, round(events * args.scale, -3)))  # noqa: E731
    only = set(filter(None, args.only.split(",")))
    if args.clusters >= 2:
        from bench.clusters import bench_clusters

        bench_clusters(args.clusters, size(args.cluster_events), record, RESULTS)
        if not only:
            write_results([], "clusters-results")
            return
    want = lambda name: not only or name in only  # noqa: E731
    points: list[dict] = []
    if want("ingest"):
        bench_ingest("postgres", batches_per_client=15)
        bench_ingest("sqlite", batches_per_client=5, clients=2)
        bench_ingest_formats("postgres", batches_per_client=3, clients=4, record=record)
        bench_ingest_formats("sqlite", batches_per_client=3, clients=2, record=record)
    if want("consistency"):
        for backend in ("postgres", "sqlite"):
            bench_session_consistency(backend, record, **({"seconds": args.seconds} if args.seconds else {}))
    if want("ledger"):
        points.append(bench_ledger("postgres", size(100_000), ("usage_rollups",), all_at_once=False))
        points.append(bench_ledger("postgres", size(1_000_000), HEAVY_PROJECTIONS, all_at_once=True))
        if args.large:
            points.append(bench_ledger("postgres", size(5_000_000), ("usage_rollups", "usage_events"), all_at_once=False, repeats=100))
        bench_ledger("sqlite", size(100_000), ("usage_rollups", "usage_events"), all_at_once=True)
    if want("lag"):
        bench_lag("postgres")
    if want("http"):
        bench_http("postgres", seconds=args.seconds or 10)
    if want("export"):
        bench_export("postgres")
    if want("budget"):
        bench_budget_check(args.seconds or 8)
        bench_budget_holds(args.seconds or 8)
    if want("verify"):
        bench_verify()
    write_results(points)
    if points:  # the growth plot needs the ledger runs
        growth_plot(points)


if __name__ == "__main__":
    main()
