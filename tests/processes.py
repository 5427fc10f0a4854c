"""Helpers for tests that run the real processes (`python -m usage_ledger.cli ...`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ledger.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def cli_env(database_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADMIN_API_KEY")}
    env.setdefault("SECRET_PEPPER", Settings.secret_pepper)  # the server processes refuse to start without one
    env.update(DATABASE_URL=database_url, PROJECTOR_POLL_SECONDS="0.02", PYTHONUNBUFFERED="1", **extra)
    return env


def start_cli(database_url: str, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "usage_ledger.cli", *args],
        cwd=ROOT,
        env=cli_env(database_url, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_cli(database_url: str, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "usage_ledger.cli", *args],
        cwd=ROOT,
        env=cli_env(database_url, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.stdout:
            process.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll a condition of another process (a server coming up, a worker catching up)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # noqa: sleep-ok - polling another process, bounded
