"""Session consistency on against off, in the same run: two API servers on one database
(one with SESSION_CONSISTENCY=false), driven in turn with the same load, so both see the
same machine. Batched ingest (1,000-event batches) and single-event POSTs (16 keep-alive
clients). Each round measures one kind on and off back to back (the order alternates, so
a drift of the machine's load does not favour one side): single-event POSTs for a few
seconds each, batches in small chunks posted on and off in turn, so both sides meet the
same projection backlog; the figure is the median of the per-round ratios on/off
(the medians of the rates are shown beside it), the target ≥ 0.95 (within 5 %). Every
round's figures are kept in the note. Before a round's batches and before each
single-event measurement the worker has caught up with the ledger, so no measurement pays
for the projection backlog a previous one left."""
from __future__ import annotations

from bench.common import basic, dumps, event_dicts, median, post_batches, process, provision, temporary_database, utcnow, wait_http
from bench.http_load import drive

ROUNDS = 6
CHUNKS = 6  # batched: per round, on and off alternate this many times, `batches` batches each


class CaughtUp:
    """Waits until every read model has reached the ledger's head (the worker is idle), on
    one connection to each side for the whole bench (the database's connections are
    shared with whatever else runs on the machine)."""

    def __init__(self, url: str):
        from ledger.store import LedgerStore
        from projections.db import make_engine

        self.store, self.engine = LedgerStore(url, pool_size=1), make_engine(url, pool_size=1)

    def __call__(self) -> None:
        from projections.framework import wait_for_positions
        from projections.registry import all_projections

        wait_for_positions(self.engine, [p.name for p in all_projections()], self.store.max_position(), timeout=600)

    def __enter__(self) -> "CaughtUp":
        return self

    def __exit__(self, *_exc) -> None:
        self.store.close()
        self.engine.dispose()


def bench_session_consistency(backend: str, record, batches: int = 2, clients: int = 2, seconds: float = 5) -> None:
    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        base = 21000 + (hash(url) % 500) * 2
        ports = {"on": base, "off": base + 1}
        headers = {"Authorization": basic(client_id, secret), "Content-Type": "application/json"}
        rates: dict[str, dict[str, list[float]]] = {mode: {"batched": [], "single": []} for mode in ports}
        errors = {mode: 0 for mode in ports}  # single-event POSTs that failed (not counted in the rates)
        now = utcnow()
        with process(url, "api", "--port", str(ports["on"]), "--workers", "2", SESSION_CONSISTENCY="true"), \
                process(url, "api", "--port", str(ports["off"]), "--workers", "2", SESSION_CONSISTENCY="false"), \
                process(url, "work"):
            with CaughtUp(url) as caught_up:
                for port in ports.values():
                    wait_http(f"http://127.0.0.1:{port}/healthz")
                    drive(port, "post", 1, 16, headers)  # warm up both workers of each server
                for round_ in range(ROUNDS):
                    order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                    caught_up()
                    spent = {mode: 0.0 for mode in ports}
                    for chunk in range(CHUNKS):  # on and off in turn, a chunk at a time, so both meet the same backlog
                        for mode in order if chunk % 2 == 0 else order[::-1]:
                            bodies = [dumps({"events": event_dicts(1000, f"{mode}-{round_}-{chunk}-{b}", now, seed=b)})
                                      for b in range(batches)]
                            spent[mode] += batches * 1000 / post_batches(ports[mode], headers, bodies, clients)
                    for mode in ports:
                        rates[mode]["batched"].append(CHUNKS * batches * 1000 / spent[mode])
                    for mode in order:
                        caught_up()
                        answer = drive(ports[mode], "post", seconds, 16, headers)
                        rates[mode]["single"].append(answer["rps"])
                        errors[mode] += answer["errors"]
    for kind, label in (("batched", f"{clients} clients × 1,000-event batches"), ("single", "single-event POSTs, 16 clients")):
        on, off = rates["on"][kind], rates["off"][kind]
        ratios = [a / b for a, b in zip(on, off)]
        unit = "events/s" if kind == "batched" else "requests/s"
        record(f"ingest with session consistency on, {label} ({backend})", median(on), unit, median(off),
               "the same with SESSION_CONSISTENCY=false, same database, alternating rounds", "≥ 0.95", ratio=median(ratios),
               note=f"ratio: median of {ROUNDS} rounds' on/off, {', '.join(f'{r:.2f}' for r in ratios)}; "
                    f"on {', '.join(f'{r:,.0f}' for r in on)}; off {', '.join(f'{r:,.0f}' for r in off)}"
                    + (f"; failed POSTs on {errors['on']}, off {errors['off']}" if kind == "single" else ""))
