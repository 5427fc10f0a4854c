"""The demo data set and the deployment's status."""
from __future__ import annotations

import json
import sys

import click

from usage_ledger.cli.common import Progress, end_line, existing, for_writing, settings


@click.command()
@click.option("--days", default=90, show_default=True, type=click.IntRange(min=0), help="days of history (0: today only)")
@click.option("--per-day", default=150, show_default=True, type=click.IntRange(min=0), help="usage events per day")
@click.option("--if-empty", is_flag=True, help="Do nothing when the ledger already has events.")
def demo(days: int, per_day: int, if_empty: bool) -> None:
    """Load a realistic demo data set (tenants, orgs, clients, months of usage)."""
    from workers.demo import load_demo

    config = settings()
    with for_writing(config) as services:
        has_events = services.store.max_position() > 0
    if if_empty and has_events:
        click.echo("demo: the ledger already has events; nothing loaded", err=True)
        return
    progress = Progress("demo events")
    result = load_demo(config, days=days, events_per_day=per_day, progress=progress)
    progress.finish()
    end_line()
    click.echo(json.dumps(result))


@click.command()
def status() -> None:
    """Ledger position, each projection's position and lag, parked errors and the chain's
    tamper evidence (the report /readyz serves). Exit 2 when errors are parked."""
    from runtime.reports import projection_report, tamper_evidence

    with existing(settings()) as services:
        report = projection_report(services)
        report["tamper_evidence"] = tamper_evidence(services)
    click.echo(json.dumps(report, indent=2))
    sys.exit(2 if report["parked_errors"] else 0)


COMMANDS = (demo, status)
