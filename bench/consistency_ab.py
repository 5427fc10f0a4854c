"""Session consistency on against off, in the same run: two API servers on one database
(one with SESSION_CONSISTENCY=false), driven in turn with the same load, so both see the
same machine. Batched ingest (1,000-event batches) and single-event POSTs (16 keep-alive
clients). Each round measures one kind on then off (or off then on: the order alternates,
so a drift of the machine's load does not favour one side) back to back, so each pair
sees nearly the same machine; the figure is the median of the per-round ratios on/off
(the medians of the rates are shown beside it), the target ≥ 0.95 (within 5 %). Every
round's figures are kept in the note. Before each measurement the worker has caught up
with the ledger, so no run pays for the projection backlog the previous one left."""
from __future__ import annotations

from bench.common import basic, dumps, event_dicts, median, post_batches, process, provision, temporary_database, utcnow, wait_http
from bench.http_load import drive

ROUNDS = 6


def caught_up(url: str) -> None:
    """Wait until every read model has reached the ledger's head (the worker is idle)."""
    from ledger.store import LedgerStore
    from projections.db import make_engine
    from projections.framework import wait_for_positions
    from projections.registry import all_projections

    store, engine = LedgerStore(url, pool_size=1), make_engine(url, pool_size=1)
    try:
        wait_for_positions(engine, [p.name for p in all_projections()], store.max_position(), timeout=600)
    finally:
        store.close()
        engine.dispose()


def bench_session_consistency(backend: str, record, batches: int = 8, clients: int = 2, seconds: float = 5) -> None:
    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        base = 21000 + (hash(url) % 500) * 2
        ports = {"on": base, "off": base + 1}
        headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
        rates: dict[str, dict[str, list[float]]] = {mode: {"batched": [], "single": []} for mode in ports}
        now = utcnow()
        with process(url, "api", "--port", str(ports["on"]), "--workers", "2", SESSION_CONSISTENCY="true"), \
                process(url, "api", "--port", str(ports["off"]), "--workers", "2", SESSION_CONSISTENCY="false"), \
                process(url, "work"):
            for port in ports.values():
                wait_http(f"http://127.0.0.1:{port}/healthz")
                drive(port, "post", 1, 16, headers)  # warm up both workers of each server
            for round_ in range(ROUNDS):
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for mode in order:
                    bodies = [dumps({"events": event_dicts(1000, f"{mode}-{round_}-{b}", now, seed=b)}) for b in range(batches)]
                    caught_up(url)
                    rates[mode]["batched"].append(post_batches(ports[mode], headers, bodies, clients))
                for mode in order:
                    caught_up(url)
                    rates[mode]["single"].append(drive(ports[mode], "post", seconds, 16, headers)["rps"])
    for kind, label in (("batched", f"{clients} clients × 1,000-event batches"), ("single", "single-event POSTs, 16 clients")):
        on, off = rates["on"][kind], rates["off"][kind]
        ratios = [a / b for a, b in zip(on, off)]
        unit = "events/s" if kind == "batched" else "requests/s"
        record(f"ingest with session consistency on, {label} ({backend})", median(on), unit, median(off),
               "the same with SESSION_CONSISTENCY=false, same database, alternating rounds", "≥ 0.95", ratio=median(ratios),
               note=f"ratio: median of {ROUNDS} rounds' on/off, {', '.join(f'{r:.2f}' for r in ratios)}; "
                    f"on {', '.join(f'{r:,.0f}' for r in on)}; off {', '.join(f'{r:,.0f}' for r in off)}")
