"""Provisioning: tenants, organizations, agent clients and portal users; License Manager sync.
A domain error (an existing id, a bad value) ends the command with its JSON error, exit 1."""
from __future__ import annotations

import json
import sys

import click

from usage_ledger.cli.common import CliError, cluster_configs, for_writing, settings, tenant_writes

ACTOR = "admin:cli"


@click.command("create-tenant")
@click.argument("tenant_id")
@click.option("--name", required=True)
@click.option("--cluster", default=None, help="The ledger cluster to place it in (LEDGER_CLUSTERS); default: the fewest tenants.")
def create_tenant(tenant_id: str, name: str, cluster: str | None) -> None:
    """Create a tenant."""
    config = settings()
    if not config.ledger_clusters:
        if cluster not in (None, "default"):
            raise CliError(f"no cluster named {cluster}: LEDGER_CLUSTERS is not set (the one cluster is `default`)")
        with for_writing(config) as services:
            position = services.ledger.identity.create_tenant(tenant_id, name, ACTOR)
        click.echo(json.dumps({"tenant_id": tenant_id, "position": position}))
        return
    from projections.registry import setup_database
    from runtime.clusters import Clusters

    with Clusters(config, writer=True) as every:
        every.directory.create_tables()
        entry = every.directory.entry(tenant_id)
        placed = entry[0] if entry else every.directory.place(cluster)
        setup_database(every.settings_for(placed))
        position = every.services(placed).ledger.identity.create_tenant(tenant_id, name, ACTOR)
        every.directory.assign(tenant_id, placed)
    click.echo(json.dumps({"tenant_id": tenant_id, "cluster": placed, "position": position}))


@click.command("create-org")
@click.argument("tenant_id")
@click.argument("org_id")
@click.option("--name", required=True)
def create_org(tenant_id: str, org_id: str, name: str) -> None:
    """Create an organization of a tenant."""
    with tenant_writes(settings(), tenant_id) as services:
        position = services.ledger.identity.create_org(tenant_id, org_id, name, ACTOR)
    click.echo(json.dumps({"tenant_id": tenant_id, "org_id": org_id, "position": position}))


@click.command("create-client")
@click.argument("tenant_id")
@click.argument("org_id")
@click.option("--name", required=True)
def create_client(tenant_id: str, org_id: str, name: str) -> None:
    """Register an agent client; prints its secret once."""
    with tenant_writes(settings(), tenant_id) as services:
        client = services.ledger.identity.register_client(tenant_id, org_id, name, ACTOR)
    click.echo(json.dumps(client.__dict__))


@click.command("create-user")
@click.argument("tenant_id")
@click.argument("org_id")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="prompted when absent")
@click.option("--permission", "permissions", multiple=True, help="admin, permission.billing.manage, ... (repeatable)")
def create_user(tenant_id: str, org_id: str, email: str, password: str, permissions: tuple[str, ...]) -> None:
    """Create a portal user (log in at POST /api/v1/auth/login)."""

    with tenant_writes(settings(), tenant_id) as services:
        user, position = services.ledger.identity.create_user(tenant_id, org_id, email, password, list(permissions), ACTOR)
    click.echo(json.dumps({**user.public(), "position": position}))


@click.command("sync-license")
def sync_license() -> None:
    """Sync every licence with the License Manager now (LICENSE_MANAGER_URL), on every
    ledger cluster (LEDGER_CLUSTERS)."""
    from runtime.licensing import sync_known_licenses

    outcomes = []
    for _name, cluster in cluster_configs(settings()):
        with for_writing(cluster) as services:
            outcomes += sync_known_licenses(services)
    click.echo(json.dumps({"synced": [o.as_dict() for o in outcomes]}))
    sys.exit(0 if all(o.ok for o in outcomes) else 2)


COMMANDS = (create_tenant, create_org, create_client, create_user, sync_license)
