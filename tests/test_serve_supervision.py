"""`serve` restarts a child that dies (with back-off, logged) and the API keeps answering."""
from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import subprocess
import sys

from projections.framework import positions
from projections.usage import USAGE_PROJECTIONS
from tests.conftest import usage
from tests.processes import ROOT, cli_env, free_port, wait_until


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def worker_pid(serve_pid: int) -> int | None:
    return next((p for p, cmd in children_of(serve_pid).items() if cmd.rstrip().endswith("usage_ledger.cli work")), None)


def answers(port: int, path: str = "/healthz") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_killed_worker_is_restarted_and_the_api_keeps_answering(h, agent, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "usage_ledger.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=cli_env(h.settings.database_url), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until(lambda: answers(port), 60, "the API to answer")
        first = wait_until(lambda: worker_pid(serve.pid), 30, "the worker child")
        os.kill(first, signal.SIGKILL)
        assert answers(port)  # the API does not go down with it
        wait_until(lambda: worker_pid(serve.pid) not in (None, first), 30, "a new worker child")
        assert serve.poll() is None and answers(port)
        position = h.post_events(agent, [usage("after-restart")]).json["position"]

        def projected() -> bool:
            with h.engine.connect() as conn:
                found = positions(conn)
            return all(found.get(name, 0) >= position for name in USAGE_PROJECTIONS)

        wait_until(projected, 60, "the restarted worker to project")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    assert "the work process exited with code -9; restarting it in 1 s" in log.read_text()
