"""The README's run command starts the service and a real HTTP request gets JSON back."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import urllib.request

from tests.processes import ROOT, free_port, wait_until


def _get(url: str, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return None


def test_make_run_serves_the_demo_data(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAKEFLAGS")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/readme.db", PORT=str(port), ADMIN_API_KEY="readme-admin")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{base}/healthz"), 120, "the service to answer")
        status, config = _get(f"{base}/api/v1/deployment/config")
        assert status == 200 and config["mode"] == "saas" and config["tenant_isolation"] is True
        auth = "Basic " + base64.b64encode(b"demo-agent:demo-secret-change-me").decode()
        def total_events() -> int:
            answer = _get(f"{base}/api/v1/usage/summary", Authorization=auth)
            return answer[1]["total_events"] if answer else 0

        wait_until(lambda: total_events() > 4000, 90, "the workers to project 30 days of demo data")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "usage-ledger is running at http://127.0.0.1:" in output
