"""Ledger operations: migrate, rebuild (--check), seal, verify, export-ledger, keygen."""
from __future__ import annotations

import json
import os
import sys

import click

from ledger.errors import DomainError
from projections import framework
from projections.registry import all_projections, setup_database
from usage_ledger.cli.common import CliError, Progress, end_line, existing, for_writing, settings


@click.command()
def migrate() -> None:
    """Create tables; rebuild read models whose schema version changed."""
    config = settings()
    changed = setup_database(config)
    if changed:
        progress = Progress("rebuilding")
        with for_writing(config) as services:
            for projection in all_projections(settings=config):
                if projection.name in changed:
                    framework.catch_up(services.engine, services.store, projection, config.projector_batch_size, progress)
                    progress.finish()
        end_line()
    click.echo(json.dumps({"migrated": True, "rebuilt": changed}))


def _known_projections(ctx, param, names: tuple[str, ...]) -> tuple[str, ...]:
    known = [p.name for p in all_projections()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"no read model named {', '.join(unknown)}; known: {', '.join(known)}")
    return names


@click.command()
@click.option("--check", is_flag=True, help="Replay into shadow tables and compare with the live ones.")
@click.option("--projection", "names", multiple=True, callback=_known_projections, help="Only these read models.")
def rebuild(check: bool, names: tuple[str, ...]) -> None:
    """Drop read models and replay them from position 0 (or --check that they equal a replay)."""
    config = settings()
    chosen = [p for p in all_projections(settings=config) if not names or p.name in names]
    shadows = {p.name: p for p in all_projections(prefix="check_", settings=config)}
    differing: dict[str, list[str]] = {}
    progress = Progress("checking" if check else "rebuilding")
    with for_writing(config) as services:
        for projection in chosen:
            if check:
                tables = framework.check(
                    services.engine, services.store, projection, shadows[projection.name],
                    config.projector_batch_size, progress,
                )
                if tables:
                    differing[projection.name] = tables
            else:
                framework.reset(services.engine, projection)
                framework.catch_up(services.engine, services.store, projection, config.projector_batch_size, progress)
            progress.finish()
        position = services.store.max_position()
    end_line()
    if check:
        click.echo(json.dumps({"identical": not differing, "differing": differing}))
        sys.exit(1 if differing else 0)
    click.echo(json.dumps({"rebuilt": [p.name for p in chosen], "position": position}))


@click.command()
def seal() -> None:
    """Seal the ledger up to its end and sign a checkpoint of the head if one is due (what
    the worker does continuously)."""
    from projections.ledger_chain import SealingProjection, sign_checkpoint_if_due, signing_status

    config = settings()
    progress = Progress("sealing")
    with for_writing(config) as services:
        position = framework.catch_up(
            services.engine, services.store, SealingProjection(settings=config), config.projector_batch_size, progress
        )
        progress.finish()
        checkpoint = sign_checkpoint_if_due(services.engine, config)
    end_line()
    click.echo(json.dumps({
        "sealed_through": position,
        "checkpoint_signed": checkpoint.as_json() if checkpoint else None,
        **signing_status(config),
    }))


@click.command()
@click.option("--from", "from_position", default=0, type=int, help="Start at this position (anchored on the signed checkpoint before it).")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trusted public key (PEM); repeat for keys used before a rotation.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), help="Verify an export-ledger file instead of the database.")
def verify(from_position: int, public_keys: tuple[str, ...], file: str | None) -> None:
    """Recompute the hash chain from the stored events and check every signed checkpoint.

    Exit 0 when intact, 1 naming the first damaged position and the kind of damage."""
    from ledger.chain.hashes import PublicKey

    progress = Progress("verifying")
    try:
        keys = [PublicKey.from_file(path) for path in public_keys]
        extra: dict = {}
        if file:
            from ledger.chain.export import verify_export

            with open(file, "rb") as handle:
                report = verify_export(handle, keys, progress)
            extra["source"] = file
        else:
            from projections.ledger_chain import served_public_key, signing_status
            from projections.ledger_snapshot import verify_database

            config = settings()
            extra = {"source": "database", **signing_status(config)}
            if not keys:
                own = served_public_key(config)
                if own is not None:
                    keys = [own]
                    extra["public_key"] = "the deployment's own key (auditors: pass --public-key obtained out of band)"
            with existing(config) as services:
                report = verify_database(services.engine, keys, from_position, progress)
    except DomainError as error:
        end_line()
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(2)
    progress.finish()
    end_line()
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


@click.command("export-ledger")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="JSON Lines file to write.")
def export_ledger(out: str) -> None:
    """Write events, chain hashes and checkpoints as JSON Lines, for offline verification."""
    from projections.ledger_snapshot import export_ledger as write_export

    config = settings()
    with existing(config) as services:
        try:
            handle = open(out, "wb")
        except OSError as error:
            raise CliError(f"cannot write {out}: {error.strerror}") from None
        progress = Progress("exporting")
        with handle:
            header = write_export(services.engine, handle, config.clock.now(), progress)
        progress.finish()
    end_line()
    click.echo(json.dumps({"file": out, **header}))


@click.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Private key file (PEM, mode 0600); the public key goes to FILE.pub.")
def keygen(out: str) -> None:
    """Create the Ed25519 key that signs ledger checkpoints (keep it outside the database)."""
    from ledger.chain.hashes import generate_key_files

    try:
        private_path, public_path, key_id = generate_key_files(out)
    except DomainError as error:
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(2)
    except OSError as error:
        raise CliError(f"cannot write {error.filename or out}: {error.strerror}") from None
    click.echo(f"set LEDGER_SIGNING_KEY_FILE={os.path.abspath(private_path)} for the worker; give {public_path} to auditors", err=True)
    click.echo(json.dumps({"private_key": str(private_path), "public_key": str(public_path), "key_id": key_id}))


COMMANDS = (migrate, rebuild, seal, verify, export_ledger, keygen)
