"""Where a catch-up's CPU goes, read model by read model: each one caught up alone from zero
(CPU of the worker process and of the database server, and wall time, per event) in a
worker-like process (the shared read and decode included), then all of them at once.
A model's own cost is its figure less the cheapest model's (a model that follows no usage
topic is the shared read and little else). The sum of the own costs and one read is what
all of them at once would cost with no overhead between threads.

    python -m bench.by_read_model [--events 200000] [--backend postgres|sqlite]
"""
from __future__ import annotations

import argparse

from bench.common import provision, temporary_database
from bench.filling import catch_up_all, fill_ledger


def measure(url: str, events: int) -> dict:
    """{"read": µs per event of the decoded read, "models": {name: (worker µs, server µs, wall µs)},
    "all": the same for all of them at once}; server is 0.0 on SQLite."""
    from bench.run import raw_decoded_read, reset_read_models
    from projections.registry import all_projections

    n, read_seconds = raw_decoded_read(url)

    def per_event(seconds: float | None) -> float:
        return (seconds or 0.0) / n * 1e6

    models = {}
    for projection in all_projections():
        reset_read_models(url)
        wall = catch_up_all(url, (projection.name,))
        worker, server = catch_up_all.cpu
        models[projection.name] = (per_event(worker), per_event(server), per_event(wall))
    reset_read_models(url)
    wall = catch_up_all(url)
    worker, server = catch_up_all.cpu
    return {"events": n, "read": per_event(read_seconds), "models": models, "all": (per_event(worker), per_event(server), per_event(wall))}


def table(result: dict, backend: str) -> str:
    models = result["models"]
    cpu = {name: worker + server for name, (worker, server, _wall) in models.items()}
    base_name = min(cpu, key=cpu.get)
    own = {name: cpu[name] - cpu[base_name] for name in cpu}
    lines = [
        f"{result['events']:,} events ({backend}); decoded read {result['read']:.1f} µs per event",
        "",
        "| read model | worker µs | server µs | wall µs | own cost µs |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in sorted(models, key=own.get, reverse=True):
        worker, server, wall = models[name]
        lines.append(f"| {name}{' (the shared read)' if name == base_name else ''} | {worker:.1f} | {server:.1f} | {wall:.1f} | {own[name]:.1f} |")
    worker, server, wall = result["all"]
    lines += [
        f"| sum: the own costs and one shared read | | | | {cpu[base_name] + sum(own.values()):.1f} |",
        f"| all at once, measured | {worker:.1f} | {server:.1f} | {wall:.1f} | {worker + server:.1f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    with temporary_database(args.backend) as url:
        provision(url)
        fill_ledger(url, args.events, "m")
        print(table(measure(url, args.events), args.backend))


if __name__ == "__main__":
    main()
