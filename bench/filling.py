"""Filling a bench ledger and catching its read models up, as the benches share them."""
from __future__ import annotations

import subprocess
import sys

from bench.common import ROOT, PostgresCpu, dumps, event_dicts, utcnow


def fill_ledger(url: str, count: int, prefix: str, combos: int = 160) -> None:
    """Append `count` usage events straight through the ledger application in batches of 1,000."""
    from api.usage_codec import decode_usage_body
    from ledger.application import Actor, Ledger
    from ledger.settings import Settings
    from ledger.store import LedgerStore

    settings = Settings(database_url=url, backdating_days=40)
    store = LedgerStore(url)
    ledger = Ledger(store, settings)
    actor = Actor("bench", "main", "client:bench", "bench")
    now = utcnow()
    batches = count // 1000
    step = 30 / batches  # days per batch: the ledger fills in time order, as live traffic does
    try:
        for b in range(batches):
            events = event_dicts(1000, f"{prefix}{b}", now, days=30 - b * step, span=step, seed=b, combos=combos)
            ledger.usage.record(actor, decode_usage_body(dumps({"events": events})))
            if b % 100 == 0:
                print(f"  filled {b * 1000}/{count}", file=sys.stderr, flush=True)
    finally:
        store.close()


def catch_up_all(url: str, names: tuple[str, ...] = ()) -> float:
    """Project (every read model, or the named ones) in a separate process as one worker
    does: one thread per projection, one ledger pool and one engine, and one shared read of
    the log (Feed); returns seconds, and records its peak memory and the CPU seconds it
    and PostgreSQL used (`catch_up_all.cpu`: worker, PostgreSQL or None on SQLite)."""
    code = (
        "import sys, time, threading\n"
        "from bench.common import peak_rss_kb\n"
        "from ledger.store import LedgerStore\nfrom projections.db import make_engine\n"
        "from projections.framework import Feed, catch_up\nfrom projections.registry import all_projections\n"
        f"url = {url!r}\n"
        "t0, c0 = time.perf_counter(), time.process_time()\n"
        "from ledger.settings import Settings\nbatch = Settings().projector_batch_size\n"
        "s = LedgerStore(url, pool_size=3); e = make_engine(url, writer=True, pool_size=3, pool_timeout=30)\n"
        "feed = Feed(s, batch)\n"
        "def run(p):\n    catch_up(e, s, p, batch, feed=feed)\n"
        f"ts = [threading.Thread(target=run, args=(p,)) for p in all_projections() if not {names!r} or p.name in {names!r}]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(time.perf_counter() - t0, peak_rss_kb(), time.process_time() - c0)\n"
    )
    with PostgresCpu() as postgres:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds, rss_kb, cpu = out.stdout.split()
    catch_up_all.peak_mb = int(rss_kb) / 1024
    catch_up_all.cpu = (float(cpu), postgres.seconds if url.startswith("postgresql") else None)
    return float(seconds)
