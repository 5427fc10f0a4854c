"""The `usage-ledger` command line (SPEC.md §6)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import click

from ledger.settings import Settings
from projections.registry import setup_database


def _settings() -> Settings:
    return Settings.from_env()


def _progress(label: str):
    last = [0.0]

    def report(*args) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        *names, done, total = args
        prefix = f"{label} {names[0]}" if names else label
        click.echo(f"\r{prefix}: {done}/{total}", nl=False, err=True)

    return report


def _open():
    from ledger.store import LedgerStore
    from projections.db import make_engine

    settings = _settings()
    return settings, LedgerStore(settings.database_url), make_engine(settings.database_url, writer=True)


@click.group()
def main() -> None:
    """usage-ledger: an event-sourced usage ledger with CQRS read models."""


@main.command()
def migrate() -> None:
    """Create tables; rebuild read models whose schema version changed."""
    from projections.framework import catch_up
    from projections.registry import by_name

    changed = setup_database(_settings())
    if changed:
        settings, store, engine = _open()
        for name in changed:
            catch_up(engine, store, by_name(name), settings.projector_batch_size, _progress("rebuilding"))
        click.echo("", err=True)
    click.echo(json.dumps({"migrated": True, "rebuilt": changed}))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes")
def api(host: str, port: int, workers: int) -> None:
    """Run the HTTP API (gunicorn)."""
    from gunicorn.app.base import BaseApplication

    from workers.logs import configure_logging

    configure_logging()

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", None)

        def load(self):
            from api import create_app

            return create_app()

    Server().run()


@main.command()
def work() -> None:
    """Run the background workers (projectors) until SIGTERM."""
    from workers.logs import configure_logging
    from workers.projector import run_workers

    configure_logging()
    run_workers(_settings())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run API and workers as separate processes; Ctrl-C or SIGTERM stops all."""
    settings = _settings()
    setup_database(settings)
    exe = [sys.executable, "-m", "cli"]
    children = [
        subprocess.Popen(exe + ["work"]),
        subprocess.Popen(exe + ["api", "--host", host, "--port", str(port)]),
    ]
    click.echo(f"usage-ledger is running at http://{host}:{port}/ (database {settings.database_url})", err=True)
    stopping = []

    def stop(*_):
        stopping.append(True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(0 if stopping else 1)


@main.command()
@click.option("--check", is_flag=True, help="Replay into shadow tables and compare with the live ones.")
@click.option("--projection", "names", multiple=True, help="Only these read models.")
def rebuild(check: bool, names: tuple[str, ...]) -> None:
    """Drop read models and replay them from position 0 (or --check that they equal a replay)."""
    from projections import framework
    from projections.registry import all_projections

    settings, store, engine = _open()
    setup_database(settings)
    chosen = [p for p in all_projections() if not names or p.name in names]
    shadows = {p.name: p for p in all_projections(prefix="check_")}
    differing: dict[str, list[str]] = {}
    for projection in chosen:
        if check:
            tables = framework.check(
                engine, store, projection, shadows[projection.name], settings.projector_batch_size, _progress("checking")
            )
            if tables:
                differing[projection.name] = tables
        else:
            framework.reset(engine, projection)
            framework.catch_up(engine, store, projection, settings.projector_batch_size, _progress("rebuilding"))
    click.echo("", err=True)
    if check:
        click.echo(json.dumps({"identical": not differing, "differing": differing}))
        sys.exit(1 if differing else 0)
    click.echo(json.dumps({"rebuilt": [p.name for p in chosen], "position": store.max_position()}))


@main.command()
@click.option("--days", default=90, show_default=True)
@click.option("--per-day", default=150, show_default=True)
@click.option("--if-empty", is_flag=True, help="Do nothing when the ledger already has events.")
def demo(days: int, per_day: int, if_empty: bool) -> None:
    """Load a realistic demo data set (tenants, orgs, clients, months of usage)."""
    from ledger.store import LedgerStore
    from workers.demo import load_demo

    settings = _settings()
    setup_database(settings)
    store = LedgerStore(settings.database_url)
    has_events = store.max_position() > 0
    store.close()
    if if_empty and has_events:
        click.echo("demo: the ledger already has events; nothing loaded", err=True)
        return
    result = load_demo(settings, days=days, events_per_day=per_day, progress=_progress("demo events"))
    click.echo("", err=True)
    click.echo(json.dumps(result))


@main.command()
def status() -> None:
    """Ledger position, each projection's position and lag, and parked errors."""
    from projections.framework import parked_errors, positions
    from projections.registry import all_projections

    settings, store, engine = _open()
    head = store.max_position()
    with engine.connect() as conn:
        found = positions(conn)
        errors = parked_errors(conn)
    report = {
        "ledger_position": head,
        "projections": {p.name: {"position": found.get(p.name, 0), "lag": head - found.get(p.name, 0)} for p in all_projections()},
        "parked_errors": [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in e.items()} for e in errors
        ],
    }
    report["tamper_evidence"] = _tamper_evidence(settings, engine)
    click.echo(json.dumps(report, indent=2))
    sys.exit(2 if errors else 0)


def _tamper_evidence(settings, engine) -> dict:
    from projections.ledger_chain import last_checkpoint, sealed_through, signing_status

    with engine.connect() as conn:
        last = last_checkpoint(conn)
        sealed = sealed_through(conn)
    return {
        "sealed_through": sealed,
        "last_checkpoint": last.as_json() if last else None,
        **signing_status(settings),
    }


@main.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Private key file (PEM, mode 0600); the public key goes to FILE.pub.")
def keygen(out: str) -> None:
    """Create the Ed25519 key that signs ledger checkpoints (keep it outside the database)."""
    from ledger.chain.hashes import generate_key_files
    from ledger.errors import DomainError

    try:
        private_path, public_path, key_id = generate_key_files(out)
    except DomainError as error:
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(2)
    click.echo(f"set LEDGER_SIGNING_KEY_FILE={os.path.abspath(private_path)} for the worker; give {public_path} to auditors", err=True)
    click.echo(json.dumps({"private_key": str(private_path), "public_key": str(public_path), "key_id": key_id}))


@main.command()
def seal() -> None:
    """Seal the ledger up to its end and sign a checkpoint of the head if one is due (what
    the worker does continuously)."""
    from projections.framework import catch_up
    from projections.ledger_chain import SealingProjection, sign_checkpoint_if_due, signing_status

    settings, store, engine = _open()
    setup_database(settings)
    position = catch_up(engine, store, SealingProjection(settings=settings), settings.projector_batch_size, _progress("sealing"))
    checkpoint = sign_checkpoint_if_due(engine, settings)
    click.echo("", err=True)
    click.echo(json.dumps({
        "sealed_through": position,
        "checkpoint_signed": checkpoint.as_json() if checkpoint else None,
        **signing_status(settings),
    }))


@main.command()
@click.option("--from", "from_position", default=0, type=int, help="Start at this position (anchored on the signed checkpoint before it).")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trusted public key (PEM); repeat for keys used before a rotation.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), help="Verify an export-ledger file instead of the database.")
def verify(from_position: int, public_keys: tuple[str, ...], file: str | None) -> None:
    """Recompute the hash chain from the stored events and check every signed checkpoint.

    Exit 0 when intact, 1 naming the first damaged position and the kind of damage."""
    from ledger.chain.hashes import PublicKey
    from ledger.errors import DomainError

    try:
        keys = [PublicKey.from_file(path) for path in public_keys]
        progress = _progress("verifying")
        extra: dict = {}
        if file:
            from ledger.chain.export import verify_export

            with open(file, "rb") as handle:
                report = verify_export(handle, keys, progress)
            extra["source"] = file
        else:
            from projections.ledger_chain import served_public_key, signing_status
            from projections.ledger_snapshot import verify_database

            settings, store, engine = _open()
            extra = {"source": "database", **signing_status(settings)}
            if not keys:
                own = served_public_key(settings)
                if own is not None:
                    keys = [own]
                    extra["public_key"] = "the deployment's own key (auditors: pass --public-key obtained out of band)"
            report = verify_database(engine, keys, from_position, progress)
    except DomainError as error:
        click.echo("", err=True)
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(2)
    click.echo("", err=True)
    click.echo(_verdict(report), err=True)
    click.echo(json.dumps({**report.as_json(), **extra}, indent=2))
    sys.exit(0 if report.intact else 1)


def _verdict(report) -> str:
    if report.intact:
        signed = (
            f"{report.checkpoints_verified} checkpoint(s) verified (signed through {report.signed_through})"
            if report.signatures_checked
            else f"{report.checkpoints_verified} checkpoint(s) matched, signatures NOT checked"
        )
        return (
            f"INTACT: {report.events_verified} events verified, {signed}, last position {report.last_position}, "
            f"{report.events_per_second} events/s"
        )
    d = report.damage
    return f"DAMAGED at position {d.position}: {d.kind} ({d.detail})"


@main.command("export-ledger")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="JSON Lines file to write.")
def export_ledger(out: str) -> None:
    """Write events, chain hashes and checkpoints as JSON Lines, for offline verification."""
    from projections.ledger_snapshot import export_ledger as write_export

    settings, store, engine = _open()
    setup_database(settings)
    with open(out, "wb") as handle:
        header = write_export(engine, handle, settings.clock.now(), _progress("exporting"))
    click.echo("", err=True)
    click.echo(json.dumps({"file": out, **header}))


@main.command("create-tenant")
@click.argument("tenant_id")
@click.option("--name", required=True)
def create_tenant(tenant_id: str, name: str) -> None:
    """Create a tenant."""
    ledger = _ledger()
    click.echo(json.dumps({"tenant_id": tenant_id, "position": ledger.create_tenant(tenant_id, name, "admin:cli")}))


@main.command("create-org")
@click.argument("tenant_id")
@click.argument("org_id")
@click.option("--name", required=True)
def create_org(tenant_id: str, org_id: str, name: str) -> None:
    """Create an organization of a tenant."""
    ledger = _ledger()
    position = ledger.create_org(tenant_id, org_id, name, "admin:cli")
    click.echo(json.dumps({"tenant_id": tenant_id, "org_id": org_id, "position": position}))


@main.command("create-client")
@click.argument("tenant_id")
@click.argument("org_id")
@click.option("--name", required=True)
def create_client(tenant_id: str, org_id: str, name: str) -> None:
    """Register an agent client; prints its secret once."""
    client = _ledger().register_client(tenant_id, org_id, name, "admin:cli")
    click.echo(json.dumps(client.__dict__))


@main.command("create-user")
@click.argument("tenant_id")
@click.argument("org_id")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="prompted when absent")
@click.option("--permission", "permissions", multiple=True, help="admin, permission.billing.manage, ... (repeatable)")
def create_user(tenant_id: str, org_id: str, email: str, password: str, permissions: tuple[str, ...]) -> None:
    """Create a portal user (log in at POST /api/v1/auth/login)."""
    from ledger.errors import DomainError

    try:
        user, position = _ledger().create_user(tenant_id, org_id, email, password, list(permissions), "admin:cli")
    except DomainError as error:
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(1)
    click.echo(json.dumps({**user.public(), "position": position}))


@main.command("sync-license")
def sync_license() -> None:
    """Sync every licence with the License Manager now (LICENSE_MANAGER_URL)."""
    from ledger.errors import DomainError
    from workers.license_sync import sync_licenses

    settings = _settings()
    setup_database(settings)
    try:
        outcomes = sync_licenses(settings)
    except DomainError as error:
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(1)
    click.echo(json.dumps({"synced": [o.as_dict() for o in outcomes]}))
    sys.exit(0 if all(o.ok for o in outcomes) else 2)


def _ledger():
    from ledger.application import Ledger
    from ledger.errors import DomainError
    from ledger.store import LedgerStore

    settings = _settings()
    setup_database(settings)

    class CliIdentity:
        """The identity commands; a domain error prints one JSON line and exits 1."""

        def __init__(self, commands):
            self.commands = commands

        def __getattr__(self, name):
            attr = getattr(self.commands, name)

            def guarded(*args, **kwargs):
                try:
                    return attr(*args, **kwargs)
                except DomainError as error:
                    click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
                    sys.exit(1)
            return guarded

    return CliIdentity(Ledger(LedgerStore(settings.database_url), settings).identity)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
