"""The `usage-ledger` command line: one group, its commands in a module per concern
(serve.py: processes; ledger_ops.py: migrate, rebuild, seal, verify, export, keygen;
provisioning.py: create-*, sync-license; demo.py: demo, status).

Failures end with one line on stderr and a non-zero exit: a domain error prints its JSON
error, an expected failure (CliError, or an environment variable it cannot use) prints `error: ...`, and anything unexpected prints
`error: ...` too (the traceback only with USAGE_LEDGER_DEBUG=1)."""
from __future__ import annotations

import json

import click

from ledger.errors import DomainError
from ledger.settings import SettingsError
from usage_ledger.cli import demo, ledger_ops, provisioning, serve
from usage_ledger.cli.common import CliError, debugging, describe, end_line


class CommandLine(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except DomainError as error:
            end_line()
            click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}), err=True)
            ctx.exit(1)
        except (CliError, SettingsError) as error:  # expected: the message says what to change
            end_line()
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)
        except Exception as error:
            if debugging():
                raise
            end_line()
            click.echo(f"error: {describe(error)}", err=True)
            ctx.exit(1)


@click.group(cls=CommandLine)
def main() -> None:
    """usage-ledger: an event-sourced usage ledger with CQRS read models."""


for module in (serve, ledger_ops, provisioning, demo):
    for command in module.COMMANDS:
        main.add_command(command)
