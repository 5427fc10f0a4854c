"""`verify` throughput (SPEC.md §8: ≥ 50k events/s), on PostgreSQL and SQLite.

    python -m bench.verify_bench [--events 300000] [--backends postgres,sqlite]

For each backend: append N events (LedgerStore.append, 1,000 per call), seal them with
checkpoints every 10,000, then time
- the raw read of the same rows in the same batches (the baseline: no hashing),
- `verify` against the database (recompute every hash, compare with ledger_chain and the
  signed checkpoints),
- `export-ledger` and `verify --file` of that export.
Prints a markdown table and writes bench/results/verify.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from ledger.chain.hashes import PublicKey, generate_key_files
from ledger.clock import SystemClock
from ledger.settings import Settings
from ledger.store import LedgerStore
from ledger.chain.export import verify_export
from projections.db import make_engine
from projections.ledger_snapshot import LedgerSnapshot, export_ledger, verify_database
from projections.registry import setup_database
from tests.chain_support import append_events, seal

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
RESULTS = Path(__file__).resolve().parent / "results"


def _database(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir}/verify-bench.db"
    name = f"ul_bench_verify_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _raw_read(engine) -> float:
    started = time.perf_counter()
    rows = 0
    with LedgerSnapshot(engine) as snapshot:
        for events, chain, _ in snapshot.batches(0):
            rows += len(events)
    return time.perf_counter() - started


def run_backend(backend: str, events: int, workdir: Path) -> dict:
    url = _database(backend, workdir)
    key_file, public_file, _ = generate_key_files(workdir / f"{backend}-{uuid.uuid4().hex[:6]}.pem")
    settings = Settings(database_url=url, clock=SystemClock(), ledger_signing_key_file=str(key_file))
    try:
        setup_database(settings)
        store, engine = LedgerStore(url), make_engine(url, writer=True)
        started = time.perf_counter()
        append_events(store, events, batch=1000)
        append_s = time.perf_counter() - started
        started = time.perf_counter()
        seal(engine, store, settings)
        seal_s = time.perf_counter() - started
        key = PublicKey.from_file(public_file)

        raw_s = min(_raw_read(engine) for _ in range(2))
        best = None
        for _ in range(2):
            started = time.perf_counter()
            report = verify_database(engine, [key])
            elapsed = time.perf_counter() - started
            assert report.intact and report.events_verified == events, report.damage
            best = elapsed if best is None else min(best, elapsed)
        export_path = workdir / f"{backend}-export.jsonl"
        started = time.perf_counter()
        with open(export_path, "wb") as handle:
            export_ledger(engine, handle, datetime.now(timezone.utc))
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        with open(export_path, "rb") as handle:
            file_report = verify_export(handle, [key])
        file_s = time.perf_counter() - started
        assert file_report.intact and file_report.events_verified == events
        size = export_path.stat().st_size
        export_path.unlink()
        store.close()
        engine.dispose()
        return {
            "backend": backend,
            "events": events,
            "checkpoints": report.checkpoints_verified,
            "append_events_per_s": round(events / append_s),
            "seal_events_per_s": round(events / seal_s),
            "raw_read_events_per_s": round(events / raw_s),
            "verify_db_events_per_s": round(events / best),
            "verify_db_vs_raw_read": round(raw_s / best, 2),
            "export_events_per_s": round(events / export_s),
            "export_bytes": size,
            "verify_file_events_per_s": round(events / file_s),
        }
    finally:
        _drop(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--out", default=str(RESULTS), help="where verify.json goes")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        for backend in args.backends.split(","):
            print(f"{backend}: {args.events} events …", flush=True)
            results.append(run_backend(backend, args.events, Path(tmp)))
    columns = list(results[0])
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in results:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    target = 50_000
    for row in results:
        verdict = "meets" if row["verify_db_events_per_s"] >= target else "BELOW"
        print(f"{row['backend']}: verify {row['verify_db_events_per_s']} events/s ({verdict} the {target}/s target)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
