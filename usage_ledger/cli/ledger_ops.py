"""Ledger operations: migrate, rebuild (--check), seal, verify, export-ledger, keygen."""
from __future__ import annotations

import json
import os
import sys

import click

from ledger.errors import DomainError
from projections import framework
from projections.registry import all_projections, setup_database
from usage_ledger.cli.common import CliError, Progress, cluster_configs, end_line, existing, for_writing, settings

CLUSTER_OPTION = dict(
    multiple=True, help="Only this ledger cluster (LEDGER_CLUSTERS); repeatable. Default: every cluster, reported per cluster."
)


@click.command()
def migrate() -> None:
    """Create tables; rebuild read models whose schema version changed."""
    config = settings()
    by_cluster = {name: _migrate(cluster) for name, cluster in cluster_configs(config)}
    if not config.ledger_clusters:
        click.echo(json.dumps({"migrated": True, "rebuilt": by_cluster["default"]}))
        return
    from runtime.clusters import setup_clusters

    setup_clusters(config)  # the directory tables in the first cluster
    click.echo(json.dumps({"migrated": True, "clusters": {name: {"rebuilt": rebuilt} for name, rebuilt in by_cluster.items()}}))


def _migrate(config) -> list[str]:
    changed = setup_database(config)
    if changed:
        progress = Progress("rebuilding")
        with for_writing(config) as services:
            for projection in all_projections(settings=config):
                if projection.name in changed:
                    framework.catch_up(services.engine, services.store, projection, config.projector_batch_size, progress)
                    progress.finish()
        end_line()
    return changed


def _known_projections(ctx, param, names: tuple[str, ...]) -> tuple[str, ...]:
    known = [p.name for p in all_projections()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"no read model named {', '.join(unknown)}; known: {', '.join(known)}")
    return names


@click.command()
@click.option("--check", is_flag=True, help="Replay into shadow tables and compare with the live ones.")
@click.option("--projection", "names", multiple=True, callback=_known_projections, help="Only these read models.")
@click.option("--cluster", "clusters", **CLUSTER_OPTION)
def rebuild(check: bool, names: tuple[str, ...], clusters: tuple[str, ...]) -> None:
    """Drop read models and replay them from position 0 (or --check that they equal a replay)."""
    config = settings()
    if config.ledger_clusters:
        outcomes = {name: _rebuild(cluster, check, names) for name, cluster in cluster_configs(config, clusters)}
        click.echo(json.dumps({"clusters": outcomes}))
        if check:
            sys.exit(1 if any(o["differing"] for o in outcomes.values()) else 0)
        return
    cluster_configs(config, clusters)  # only `default` exists
    outcome = _rebuild(config, check, names)
    click.echo(json.dumps(outcome))
    if check:
        sys.exit(1 if outcome["differing"] else 0)


def _rebuild(config, check: bool, names: tuple[str, ...]) -> dict:
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
        return {"identical": not differing, "differing": differing}
    return {"rebuilt": [p.name for p in chosen], "position": position}


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
@click.option("--cluster", "clusters", **CLUSTER_OPTION)
def verify(from_position: int, public_keys: tuple[str, ...], file: str | None, clusters: tuple[str, ...]) -> None:
    """Recompute the hash chain from the stored events and check every signed checkpoint.

    Exit 0 when intact, 1 naming the first damaged position and the kind of damage."""
    from ledger.chain.hashes import PublicKey

    config = settings()
    if config.ledger_clusters and not file:
        return _verify_clusters(config, from_position, public_keys, clusters)
    cluster_configs(config, clusters)  # only `default` exists
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


def _verify_clusters(config, from_position: int, public_keys: tuple[str, ...], clusters: tuple[str, ...]) -> None:
    """Each cluster's chain on its own; one report per cluster, exit 1 if any is damaged."""
    from ledger.chain.hashes import PublicKey
    from projections.ledger_chain import served_public_key, signing_status
    from projections.ledger_snapshot import verify_database

    reports: dict[str, dict] = {}
    intact = True
    try:
        keys = [PublicKey.from_file(path) for path in public_keys]
        own = served_public_key(config) if not keys else None
        for name, cluster in cluster_configs(config, clusters):
            progress = Progress(f"verifying {name}")
            with existing(cluster) as services:
                report = verify_database(services.engine, keys or ([own] if own else []), from_position, progress)
            progress.finish()
            end_line()
            click.echo(f"cluster {name}: {_verdict(report)}", err=True)
            reports[name] = report.as_json()
            intact = intact and report.intact
    except DomainError as error:
        end_line()
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
        sys.exit(2)
    click.echo(json.dumps({"intact": intact, "clusters": reports, "source": "database", **signing_status(config)}, indent=2))
    sys.exit(0 if intact else 1)


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
@click.option("--cluster", "clusters", **CLUSTER_OPTION)
def export_ledger(out: str, clusters: tuple[str, ...]) -> None:
    """Write events, chain hashes and checkpoints as JSON Lines, for offline verification.
    With LEDGER_CLUSTERS, one file per cluster: OUT with the cluster's name before the suffix."""
    config = settings()
    if config.ledger_clusters:
        root, suffix = os.path.splitext(out)
        written = {name: _export(cluster, f"{root}.{name}{suffix}") for name, cluster in cluster_configs(config, clusters)}
        click.echo(json.dumps({"clusters": written}))
        return
    cluster_configs(config, clusters)  # only `default` exists
    click.echo(json.dumps(_export(config, out)))


def _export(config, out: str) -> dict:
    from projections.ledger_snapshot import export_ledger as write_export

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
    return {"file": out, **header}


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


@click.command("check-price-books")
@click.option("--deliver", is_flag=True, help="First append what the platform outbox holds for clusters that are back.")
def check_price_books(deliver: bool) -> None:
    """Compare every cluster's price and credit-rate overrides (LEDGER_CLUSTERS): exit 0 when
    all agree, 1 naming the clusters that differ or did not answer."""
    from runtime.clusters import Clusters, check_price_books as compare, deliver_outbox

    config = settings()
    with Clusters(config, writer=True) as every:
        every.directory.create_tables()
        delivered = deliver_outbox(every) if deliver else {}
        report = compare(every)
    click.echo(json.dumps({**report, **({"delivered": delivered} if deliver else {})}))
    sys.exit(0 if report["consistent"] else 1)


@click.command("move-tenant")
@click.argument("tenant_id")
@click.option("--to", "to", required=True, help="The cluster to move the tenant to (LEDGER_CLUSTERS).")
@click.option("--grace", default=10.0, show_default=True, type=float,
              help="Seconds to wait for the tenant's writes already in flight (past the directory check) before giving up.")
def move_tenant(tenant_id: str, to: str, grace: float) -> None:
    """Copy a tenant's events to another cluster (in order, new positions), verify the
    per-tenant totals on both sides, then switch the directory. Ingest goes on; the
    tenant's writes get 503 TENANT_MOVING only during the switch."""
    from runtime.clusters import Clusters
    from runtime.moves import move_tenant as move

    config = settings()
    if not config.ledger_clusters:
        raise CliError("move-tenant needs LEDGER_CLUSTERS (there is one cluster)")
    with Clusters(config, writer=True) as every:
        every.directory.create_tables()
        report = move(every, tenant_id, to, grace_seconds=grace, progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(report.as_json()))


COMMANDS = (migrate, rebuild, seal, verify, export_ledger, keygen, check_price_books, move_tenant)
