"""The closing table of "figures you can trust": for the demo data's 31-day window (today − 30
.. today, UTC), each output's cost and credits total against the exact sum read from the
ledger itself (UsageRecorded, minus voids, as amended; gauge credits accrued by the gauge
rule within the window up to now).

    python -m bench.figures_table [--database-url URL] [--days 90] [--per-day 150]

Without --database-url it loads `usage-ledger demo` into a fresh SQLite file first. The
clock is frozen at the start, so gauge credits do not move between the reads.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "figures-table-admin"
TENANT, ORG = "acme", "acme-prod"
NANO = Decimal("0.000000001")


def _load_demo(database_url: str, days: int, per_day: int) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), "SECRET_PEPPER": "figures-table-pepper"}
    done = subprocess.run([sys.executable, "-m", "usage_ledger.cli", "demo", "--days", str(days), "--per-day", str(per_day)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(done.stderr)


def _exact_from_ledger(store, start: datetime, end: datetime, now: datetime) -> dict:
    """Cost and credits (nanos) of acme-prod's usage in [start, end), read from the ledger."""
    from ledger.pricing.credits import CreditRate, CreditRateBook, gauge_credits, is_gauge
    from ledger.pricing.events import CreditRateSet
    from ledger.usage.events import UsageAmended, UsageRecorded, UsageVoided
    from projections.credits import split_days, to_nanos_exact

    live: dict[str, object] = {}
    rates = []
    for recorded in store.read():
        event = recorded.event
        if isinstance(event, CreditRateSet):
            rates.append(CreditRate(event.resource_type, event.credits_per_unit, event.effective_from, "override"))
            continue
        if getattr(event, "tenant_id", None) != TENANT or getattr(event, "org_id", None) != ORG:
            continue
        if isinstance(event, UsageRecorded):
            live[event.usage.event_id] = event.usage
        elif isinstance(event, UsageVoided):
            live.pop(event.voided.event_id, None)
        elif isinstance(event, UsageAmended):
            live[event.current.event_id] = event.current
    book = CreditRateBook(rates)
    naive = lambda m: m.astimezone(timezone.utc).replace(tzinfo=None)  # noqa: E731
    cost = credits = events = axon_cost = 0
    series: dict[tuple, list] = defaultdict(list)
    for usage in live.values():
        at = naive(usage.occurred_at)
        if is_gauge(usage.resource_type):
            series[(usage.resource_type, usage.app_id or "", usage.user_id or "", usage.agent_id or "")].append(
                (at, usage.event_id, Decimal(usage.quantity or 0)))
        if not start <= at < end:
            continue
        events += 1
        nanos = int(Decimal(usage.cost_usd or 0) / NANO)
        cost += nanos
        axon_cost += nanos if usage.operation else 0
        credits += int(Decimal(usage.credits or 0) / NANO)
    stop = min(end, now)
    for key, readings in series.items():  # the gauge rule: level × rate × time held, per UTC day
        readings.sort()
        for (at, _id, level), following in zip(readings, [*readings[1:], None]):
            until = following[0] if following else stop
            for _day, segment, seconds in split_days(max(at, start), min(until, stop)):
                rate = book.rate_for(key[0], segment.replace(tzinfo=timezone.utc))
                credits += to_nanos_exact(gauge_credits(level, rate, seconds))
    return {"events": events, "cost": cost, "credits": credits, "axon_cost": axon_cost}


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _nanos(text: str | float | None) -> int:
    return 0 if text in (None, "") else int(Decimal(str(text)) / NANO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--per-day", type=int, default=150)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    database_url = args.database_url
    if not database_url:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='figures-')}/demo.db"
        _load_demo(database_url, args.days, args.per_day)

    from api import create_app
    from ledger.clock import FixedClock
    from ledger.settings import Settings
    from projections.framework import catch_up
    from projections.registry import all_projections, setup_database
    from runtime.bootstrap import bootstrap

    now = datetime.now(timezone.utc).replace(microsecond=0)
    settings = Settings(database_url=database_url, admin_api_key=ADMIN_KEY, clock=FixedClock(now),
                        session_consistency=False, secret_pepper="figures-table-pepper")
    setup_database(settings)
    services = bootstrap(settings, writer=True)
    for projection in all_projections():
        catch_up(services.engine, services.store, projection)
    http = create_app(settings).test_client()
    headers = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": TENANT, "X-Org-ID": ORG}
    get = lambda path: http.get(path, headers=headers)  # noqa: E731

    today = now.date()
    first = today - timedelta(days=30)
    start, end = datetime(first.year, first.month, first.day), datetime(today.year, today.month, today.day) + timedelta(days=1)
    dates = f"start_date={first}&end_date={today}"
    exact = _exact_from_ledger(services.store, start, end, now.replace(tzinfo=None))

    rows: list[tuple[str, int | None, int | None, int | None]] = []  # output, events, cost nanos, credits nanos
    summary = get(f"/api/v1/usage/summary?{dates}").json
    rows.append(("summary JSON (estimated_cost_nanos)", summary["total_events"], summary["estimated_cost_nanos"], None))
    raw, cursor = [], ""
    while True:
        page = get(f"/api/v1/usage?granularity=raw&limit=1000&{dates}{cursor}").json
        raw += page["data"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    rows.append(("raw JSON (Σ cost_nanos, credits_nanos)", len(raw), sum(r["cost_nanos"] for r in raw),
                 sum(r["credits_nanos"] or 0 for r in raw)))
    raw_csv = _csv(get(f"/api/v1/usage?granularity=raw&format=csv&{dates}").get_data(as_text=True))
    rows.append(("raw CSV (Σ cost_usd, credits)", len(raw_csv), sum(_nanos(r["cost_usd"]) for r in raw_csv),
                 sum(_nanos(r["credits"]) for r in raw_csv)))
    for granularity in ("hourly", "daily"):
        data = get(f"/api/v1/usage?granularity={granularity}&{dates}").json["data"]
        rows.append((f"{granularity} JSON (Σ estimated_cost_nanos)", sum(r["event_count"] for r in data),
                     sum(r["estimated_cost_nanos"] for r in data), None))
        data = _csv(get(f"/api/v1/usage?granularity={granularity}&format=csv&{dates}").get_data(as_text=True))
        rows.append((f"{granularity} CSV (Σ 6-decimal estimated_cost_usd)", sum(int(r["event_count"]) for r in data),
                     sum(_nanos(r["estimated_cost_usd"]) for r in data), None))
        rows.append((f"{granularity} CSV (Σ estimated_cost_nanos)", sum(int(r["event_count"]) for r in data),
                     sum(int(r["estimated_cost_nanos"]) for r in data), None))
    window = f"start={first}&end={today}"
    totals = get(f"/api/v1/usage/breakdown?group_by=model&{window}").json["totals"]
    rows.append(("breakdown totals (cost_nanos, credits_nanos)", totals["events"], totals["cost_nanos"], totals["credits_nanos"]))
    records, offset = [], 0
    while True:
        page = get(f"/api/v1/usage/records?{window}&limit=1000&offset={offset}").json
        records += page["records"]
        if not page["has_more"]:
            break
        offset += 1000
    rows.append(("records (Σ cost_nanos, credits_nanos)", len(records), sum(r["cost_nanos"] for r in records),
                 sum(r["credits_nanos"] or 0 for r in records)))
    export = _csv(get(f"/api/v1/export/usage?{window}").get_data(as_text=True))
    rows.append(("export CSV (Σ estimated_cost_cents / 100)", len(export),
                 sum(int(Decimal(r["estimated_cost_cents"]) * 10**7) for r in export), None))
    credit = get(f"/api/usage?startDate={first}&endDate={today}").json
    rows.append(("/api/usage totalCreditsNanos", None, None, credit["totalCreditsNanos"]))
    rows.append(("/api/usage Σ dailyTotals totalCreditsNanos", None, None, sum(r["totalCreditsNanos"] for r in credit["dailyTotals"])))
    rows.append(("/api/usage Σ usageSummary totalCreditsNanos", None, None, sum(r["totalCreditsNanos"] for r in credit["usageSummary"])))
    rows.append(("/api/usage Σ dailyTotals totalCredits (rounded rows)", None, None,
                 sum(_nanos(r["totalCredits"]) for r in credit["dailyTotals"])))
    rows.append(("dashboard credits tile (= /api/usage totalCredits)", None, None, _nanos(credit["totalCredits"])))
    rows.append(("dashboard cost tile (= summary estimated_cost_usd)", None, _nanos(summary["estimated_cost_usd"]), None))
    axon = get("/v1/axon/usage?days=31").json["data"]

    def fmt(nanos: int | None, reference: int) -> str:
        if nanos is None:
            return "—"
        delta = nanos - reference
        return f"{Decimal(nanos) * NANO:,.9f}" + ("  ✓" if delta == 0 else f"  Δ {Decimal(delta) * NANO:+.9f}")

    print(f"demo data, window {start.isoformat()}Z .. {end.isoformat()}Z (31 days), clock {now.isoformat()}")
    print(f"exact ledger sum: events {exact['events']:,}  cost {Decimal(exact['cost']) * NANO:,.9f}  "
          f"credits {Decimal(exact['credits']) * NANO:,.9f}")
    print("| output | events | cost USD vs exact | credits vs exact |\n| --- | --- | --- | --- |")
    for name, events, cost, credits in rows:
        print(f"| {name} | {'—' if events is None else f'{events:,}'} | {fmt(cost, exact['cost'])} | {fmt(credits, exact['credits'])} |")
    print(f"| axon usage (operation events only; cost_nanos vs their exact sum) | {axon['totals']['requests']:,} | "
          f"{fmt(axon['totals']['cost_nanos'], exact['axon_cost'])} | — |")
    services.close()


if __name__ == "__main__":
    main()
