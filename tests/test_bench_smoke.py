"""`make bench` must keep working: its ledger benchmarks run end to end at a tiny size
(figures are not asserted here; bench/ is where they are measured)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_postgres

ROOT = Path(__file__).resolve().parent.parent


def _bench(out: Path, *args: str) -> list[dict]:
    """Run `python -m bench.run ARGS --out OUT`; the rows it wrote."""
    require_postgres()
    # small pools: the figures are not measured here, and `make test` runs this file beside
    # another one on the same PostgreSQL server (100 connections in all)
    env = {**os.environ, "DB_POOL_SIZE": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", *args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "results.json").read_text())["rows"]


def test_the_ledger_benchmarks_run_and_write_their_table(tmp_path):
    out = tmp_path / "results"
    rows = _bench(out, "--only", "ledger", "--scale", "0.002")
    names = [r["benchmark"] for r in rows]
    assert any(n.startswith("projector catch-up, usage_rollups alone, 2,0") and "(postgres)" in n for n in names)
    assert any(n.startswith("projector catch-up, all 16 read models at once") for n in names)
    assert any(n.startswith("the projectors' reader alone") for n in names)
    assert any(n.startswith("30-day org summary at 1,000 events (sqlite)") for n in names)
    for row in rows:
        assert row["figure"] > 0 and (row["ratio"] is None or row["ratio"] > 0), row
    assert "| benchmark | figure |" in (out / "results.md").read_text()


def test_the_http_benchmark_runs_and_writes_its_rows(tmp_path):
    """Single-event POSTs and the authenticated read, a second each, on real servers."""
    rows = {r["benchmark"]: r for r in _bench(tmp_path / "results", "--only", "http", "--seconds", "1")}
    assert any(n.startswith("single-event POSTs, 16 keep-alive clients") for n in rows)
    assert any(n.startswith("authenticated read: GET /api/v1/usage/summary") for n in rows)
    for row in rows.values():
        assert row["figure"] > 0 and row["ratio"] > 0, row


def test_the_consistency_and_budget_benchmarks_run_and_write_their_rows(tmp_path):
    """The session-consistency A/B on both backends and the budget check and hold rows,
    a second per load, on real servers."""
    rows = {r["benchmark"]: r for r in _bench(tmp_path / "results", "--only", "consistency,budget", "--seconds", "1")}
    consistency = [n for n in rows if n.startswith("ingest with session consistency on")]
    assert len(consistency) == 4 and {"(postgres)" in n for n in consistency} == {True, False}, consistency
    assert any(n.startswith("POST /api/v1/budgets/check, 100 budgets") for n in rows)
    assert any(n.startswith("budget holds: reserve + commit pairs") for n in rows)
    race = next(r for n, r in rows.items() if n.startswith("budget holds: 200 concurrent reserves"))
    assert race["figure"] == 50, race  # exactly the cap, however fast the machine
    for name, row in rows.items():
        assert row["figure"] > 0, row
        assert row["ratio"] is None or row["ratio"] > 0, row


def test_the_catch_up_profile_by_read_model_runs_and_prints_its_table():
    """`python -m bench.by_read_model` (docs/performance.md) at a tiny size, on SQLite."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.by_read_model", "--events", "2000", "--backend", "sqlite"], cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    from projections.registry import all_projections

    names = {p.name for p in all_projections()}
    assert {row.split(" | ")[0].lstrip("| ").split(" (")[0] for row in rows[1:-2]} == names, run.stdout
    assert rows[-1].startswith("| all at once, measured") and "(the shared read)" in run.stdout, run.stdout
