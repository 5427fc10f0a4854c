"""Processes: `api` (gunicorn), `work` (projectors and jobs), `serve` (both, supervised)."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import click

from usage_ledger.cli.common import CliError, settings
from projections.registry import setup_database

STARTUP_SECONDS = 60.0


def require_pepper() -> None:
    """The server processes need SECRET_PEPPER: it keys client-secret hashes and seals
    credentials in the ledger, so a built-in default would be the same everywhere."""
    if not (os.environ.get("SECRET_PEPPER") or "").strip():
        raise CliError("SECRET_PEPPER is not set: set it to a long random value (make run sets a demo one)")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes")
@click.option(
    "--threads", default=8, show_default=True, type=int,
    help="request threads per worker process: a request mostly waits for the database, so threads overlap those waits",
)
def api(host: str, port: int, workers: int, threads: int) -> None:
    """Run the HTTP API (gunicorn)."""
    require_pepper()
    settings()  # a variable it cannot use is one line here, not a worker that fails to boot
    from gunicorn.app.base import BaseApplication

    from workers.logs import configure_logging

    configure_logging()
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the workers' shared metrics, for this run only
        metrics_dir = tempfile.mkdtemp(prefix="usage-ledger-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def child_exit(_server, worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            if threads > 1:  # keep-alive connections, and requests overlap their database waits
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("threads", threads)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", None)
            self.cfg.set("child_exit", child_exit)

        def load(self):
            from api import create_app

            return create_app()

    master = os.getpid()
    try:
        Server().run()
    finally:  # gunicorn's workers leave through here too (SystemExit after fork): only the master cleans up
        if metrics_dir and os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command()
@click.option("--cluster", "clusters", multiple=True, help="Only this ledger cluster (LEDGER_CLUSTERS); repeatable. Default: all.")
def work(clusters: tuple[str, ...]) -> None:
    """Run the background workers (projectors) until SIGTERM."""
    require_pepper()
    from workers.logs import configure_logging
    from workers.projector import run_workers

    configure_logging()
    config = settings()
    if config.ledger_clusters:
        from workers.clusters import run_cluster_workers

        run_cluster_workers(config, clusters)
    elif clusters and set(clusters) != {"default"}:
        raise CliError(f"no cluster named {', '.join(clusters)}: LEDGER_CLUSTERS is not set (the one cluster is `default`)")
    else:
        run_workers(config)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run API and workers as separate processes, restarting one that dies (with back-off);
    Ctrl-C or SIGTERM stops all."""
    require_pepper()
    config = settings()
    require_free_port(host, port)
    if config.ledger_clusters:
        from runtime.clusters import setup_clusters

        setup_clusters(config)
    else:
        setup_database(config)
    exe = [sys.executable, "-m", "usage_ledger.cli"]
    children = {
        "work": Child("work", exe + ["work"]),
        "api": Child("api", exe + ["api", "--host", host, "--port", str(port)]),
    }
    stopping: list[bool] = []

    def stop(*_):
        stopping.append(True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for child in children.values():
            child.start()
        if wait_for_port(host, port, [c.process for c in children.values()], stopping):
            click.echo(f"usage-ledger is running at http://{host}:{port}/ (database {config.database_url})", err=True)
        while not stopping:
            for child in children.values():
                child.supervise()
            time.sleep(0.2)
    finally:
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.wait()


class Child:
    """One supervised process: restarted when it exits, after a back-off that doubles
    while it keeps dying soon after a start (1 s up to 30 s) and resets once it ran a minute."""

    FIRST_DELAY, MAX_DELAY, HEALTHY_SECONDS = 1.0, 30.0, 60.0

    def __init__(self, name: str, command: list[str]):
        self.name, self.command = name, command
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.delay = self.FIRST_DELAY
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started = time.monotonic()
        self.restart_at = None

    def supervise(self) -> None:
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                click.echo(f"usage-ledger: restarting the {self.name} process", err=True)
                self.start()
            return
        code = self.process.poll() if self.process else None
        if code is None:
            return
        if now - self.started >= self.HEALTHY_SECONDS:
            self.delay = self.FIRST_DELAY
        click.echo(
            f"usage-ledger: the {self.name} process exited with code {code}; restarting it in {self.delay:g} s", err=True
        )
        self.restart_at = now + self.delay
        self.delay = min(self.delay * 2, self.MAX_DELAY)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def require_free_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use; stop what uses it or choose another port "
                    f"(make run PORT={port + 1}, or --port {port + 1})"
                ) from None
            raise CliError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def wait_for_port(host: str, port: int, children: list[subprocess.Popen], stopping: list) -> bool:
    """True once the API accepts connections; False when a child died or we were stopped."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    deadline = time.monotonic() + STARTUP_SECONDS
    while not stopping and all(c.poll() is None for c in children) and time.monotonic() < deadline:
        try:
            socket.create_connection((target, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


COMMANDS = (api, work, serve)
