"""What the commands share: settings, opening the database, progress lines, error lines."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

import click
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.settings import Settings
from ledger.store import EVENTS_TABLE
from projections.db import sqlalchemy_url
from projections.registry import setup_database
from runtime.bootstrap import Services, bootstrap


class CliError(Exception):
    """An expected failure: printed as one `error: ...` line, exit 1."""


_open_line = [False]  # a progress line is on stderr without its newline yet


def end_line() -> None:
    if _open_line[0]:
        click.echo("", err=True)
        _open_line[0] = False


def settings() -> Settings:
    return Settings.from_env()


def debugging() -> bool:
    return Settings.debug_requested()


def describe(error: Exception) -> str:
    """One line for an unexpected error."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, (OperationalError, DBAPIError)):
        return f"the database is not usable: {str(error.orig).strip().splitlines()[0] if error.orig else error}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def for_writing(settings: Settings) -> Services:
    """Create or migrate the database, then open it (commands that append or rebuild)."""
    setup_database(settings)
    return bootstrap(settings, writer=True)


def existing(settings: Settings) -> Services:
    """Open a database that exists and was migrated; never create one (reading commands)."""
    url = make_url(sqlalchemy_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not os.path.exists(url.database):
            raise CliError(
                f"no ledger database at {os.path.abspath(url.database)} "
                "(set DATABASE_URL, or create it with `usage-ledger migrate`)"
            )
    services = bootstrap(settings, writer=True)
    try:
        tables = inspect(services.engine)
        migrated = tables.has_table(EVENTS_TABLE) and tables.has_table("projection_positions")
    except (OperationalError, DBAPIError) as error:
        services.close()
        raise CliError(f"the database is not reachable: {str(error.orig).strip().splitlines()[0]}") from None
    if not migrated:
        services.close()
        raise CliError("the database has no ledger yet: run `usage-ledger migrate` first")
    return services


def cluster_configs(config: Settings, names: tuple[str, ...] = ()) -> list[tuple[str, Settings]]:
    """(name, settings) of the clusters a command works on: those named, else all
    (LEDGER_CLUSTERS; without it, the one cluster `default`)."""
    from runtime.clusters import chosen, cluster_settings

    return [(name, cluster_settings(config, name)) for name in chosen(config, names)]


@contextmanager
def tenant_writes(config: Settings, tenant_id: str) -> Iterator[Services]:
    """The services of the cluster that holds a tenant (the directory, LEDGER_CLUSTERS), for
    a command that appends for it. As an API write does, the command holds a lease in the
    directory from before it reads the tenant's `moving` flag until it is done, so a move
    (runtime/moves.py) waits for it, and a tenant being moved refuses it: a write can never
    land on the source after the move's last copy."""
    if not config.ledger_clusters:
        with for_writing(config) as services:
            yield services
        return
    from runtime.clusters import Clusters, cluster_settings

    with Clusters(config) as every:
        every.directory.create_tables()
        lease = every.directory.begin_write(tenant_id)
        try:
            entry = every.directory.entry(tenant_id)
            if entry is not None and entry[1]:
                raise CliError(f"tenant {tenant_id} is being moved to another cluster; retry when the move is done")
            with for_writing(cluster_settings(config, entry[0] if entry else every.first)) as services:
                yield services
        finally:
            every.directory.end_write(lease)


class Progress:
    """`label name: done/total` on one stderr line, at most twice a second; `finish()`
    shows the last item complete."""

    def __init__(self, label: str):
        self.label = label
        self.shown = 0.0
        self.width = 0
        self.text = ""
        self.last: tuple[str, int] | None = None

    def __call__(self, *args) -> None:
        *names, done, total = args
        prefix = f"{self.label} {names[0]}" if names else self.label
        self.last = (prefix, total)
        now = time.monotonic()
        if done < total and now - self.shown < 0.5:
            return
        self.shown = now
        self._show(f"{prefix}: {done}/{total}")

    def finish(self) -> None:
        if self.last is not None:
            prefix, total = self.last
            self._show(f"{prefix}: {total}/{total}")
            self.last = None

    def _show(self, text: str) -> None:
        if text == self.text:
            return
        self.text = text
        click.echo("\r" + text.ljust(self.width), nl=False, err=True)
        self.width = len(text)
        _open_line[0] = True
