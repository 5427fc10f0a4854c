"""The documentation's examples are tests.

Every fenced block whose info string is `sh runnable` in README.md and docs/*.md is run,
against a real server on a fresh database loaded with (small) demo data, as `make run`
would serve it. The blocks of one file run in order in one bash session
(`set -euo pipefail`: the examples use `curl -fsS`, so a non-2xx answer fails the block
unless the block checks for it), the files one after another against the same server.
`http://127.0.0.1:8080` in a block is this server's address and port 9000 of 127.0.0.1
(`127.0.0.1:9000`, `("127.0.0.1", 9000)`) a free port for the examples' webhook receiver; `usage-ledger` is the installed command.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ROOT, cli_env, free_port, run_cli, start_cli, stop, wait_until

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```sh runnable\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ADMIN_KEY = "dev-admin-key"  # what `make run` uses and the examples name
SERVER_ENV = {  # `make run`, plus the settings the examples tell the reader to start with
    "ADMIN_API_KEY": ADMIN_KEY,
    "SECRET_PEPPER": "demo-pepper-change-me",
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",  # the examples' webhook receiver is on 127.0.0.1
    "BUDGET_ALERTS_INTERVAL_SECONDS": "1",
    # reads after writes wait for the read models; a shared test machine may lag longer than 2 s
    "READ_WAIT_SECONDS": "15",
}


def runnable_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each runnable block of a document."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def cli_bin_dir(tmp_path: Path) -> Path:
    """A directory whose `usage-ledger` runs this checkout's command line: the installed
    script of the running interpreter's environment when there is one, else a shim."""
    installed = Path(sys.executable).parent / "usage-ledger"
    if installed.exists():
        return installed.parent
    shim = tmp_path / "bin" / "usage-ledger"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n')
    shim.chmod(0o755)
    return shim.parent


def script_for(path: Path, base_url: str, receiver_port: int) -> str:
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]  # background receivers
    for line, block in runnable_blocks(path):
        block = (block.replace("http://127.0.0.1:8080", base_url).replace("127.0.0.1:9000", f"127.0.0.1:{receiver_port}")
                 .replace('("127.0.0.1", 9000)', f'("127.0.0.1", {receiver_port})'))
        lines += [f"echo '>>> {path.name}:{line}' >&2", block]
    return "\n".join(lines) + "\n"


def test_every_document_with_commands_has_runnable_examples():
    assert [p.name for p in DOCUMENTS if runnable_blocks(p)] == [
        "README.md", "api.md", "auditors.md", "ingest.md",
    ]


@pytest.fixture
def server(database_url, tmp_path):
    demo = run_cli(database_url, "demo", "--days", "10", "--per-day", "30", timeout=300, **SERVER_ENV)
    assert demo.returncode == 0, demo.stderr[-2000:]
    port = free_port()
    process = start_cli(database_url, "serve", "--port", str(port), **SERVER_ENV)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _caught_up(base) or process.poll() is not None, 120, "the server to project the demo data")
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
        yield base
    finally:
        stop(process)


def _caught_up(base: str) -> bool:
    """The server answers and its read models have reached the end of the ledger (as when
    the reader of the README opens the URL `make run` printed)."""
    try:
        request = urllib.request.Request(f"{base}/readyz", headers={"X-Admin-API-Key": ADMIN_KEY})  # details need the admin key
        with urllib.request.urlopen(request, timeout=2) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return all(p["position"] >= body["ledger_position"] for p in body["projections"].values())


def test_the_runnable_examples_succeed_against_a_fresh_server(server, database_url, tmp_path):
    assert shutil.which("jq") and shutil.which("curl"), "the examples need curl and jq"
    workdir = tmp_path / "reader"
    workdir.mkdir()
    env = cli_env(database_url, **SERVER_ENV)
    env["PATH"] = f"{cli_bin_dir(tmp_path)}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)  # the command line of this checkout, whatever is installed
    for path in DOCUMENTS:
        if not runnable_blocks(path):
            continue
        result = subprocess.run(
            ["bash", "-c", script_for(path, server, free_port())],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, (
            f"{path.name}: exit {result.returncode}\n--- stderr\n{result.stderr[-4000:]}\n--- stdout\n{result.stdout[-3000:]}"
        )
