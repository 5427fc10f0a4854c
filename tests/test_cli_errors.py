"""The command line's failures, run as a real process: one clear line on stderr, a non-zero
exit, never a traceback (unless USAGE_LEDGER_DEBUG=1); and progress lines that finish."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import basic, usage
from tests.processes import ROOT, free_port, run_cli, start_cli, stop


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    lines = error_lines(result)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def migrated(database_url: str) -> None:
    result = run_cli(database_url, "migrate")
    assert result.returncode == 0, result.stderr


def test_status_outside_the_repository_creates_no_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "usage_ledger.cli", "status"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert_one_error_line(result, "error: no ledger database at", "usage-ledger.db", "DATABASE_URL")
    assert list(tmp_path.iterdir()) == []


def test_status_and_verify_of_an_unmigrated_database_say_so(database_url):
    for command in (["status"], ["verify"], ["export-ledger", "--out", os.devnull]):
        result = run_cli(database_url, *command, timeout=60)
        assert_one_error_line(result, "error:", "migrate")


def test_an_unreachable_database_is_one_line():
    result = run_cli(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", "status", timeout=60)
    assert_one_error_line(result, "error:", "not reachable")


def test_an_unwritable_out_path_is_one_line(database_url, tmp_path):
    migrated(database_url)
    missing = tmp_path / "no" / "such" / "dir" / "ledger.jsonl"
    result = run_cli(database_url, "export-ledger", "--out", str(missing), timeout=60)
    assert_one_error_line(result, f"error: cannot write {missing}")
    result = run_cli(database_url, "keygen", "--out", str(tmp_path / "no" / "key.pem"), timeout=60)
    assert_one_error_line(result, "error: cannot write")
    assert result.stdout == ""


def test_rebuild_rejects_an_unknown_read_model(database_url):
    migrated(database_url)
    for command in (["rebuild", "--projection", "nope"], ["rebuild", "--check", "--projection", "nope"]):
        result = run_cli(database_url, *command, timeout=60)
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert "no read model named nope" in result.stderr and "usage_events" in result.stderr
        assert "Traceback" not in result.stderr


def test_demo_rejects_negative_days_and_appends_nothing(database_url):
    migrated(database_url)
    result = run_cli(database_url, "demo", "--days", "-5", timeout=60)
    assert result.returncode == 2 and "--days" in result.stderr and "Traceback" not in result.stderr
    status = run_cli(database_url, "status", timeout=60)
    assert json.loads(status.stdout)["ledger_position"] == 0


def test_a_conflict_in_demo_is_one_line(h, database_url):
    """An event id the demo generates was already recorded with other content."""
    assert run_cli(database_url, "demo", "--days", "0", "--per-day", "10", timeout=120).returncode == 0
    taken = h.post_events(basic("demo-agent", "demo-secret-change-me"), [usage("demo-acme-prod-0-10")])
    assert taken.status_code in (200, 201, 202), taken.json
    result = run_cli(database_url, "demo", "--days", "0", "--per-day", "11", timeout=120)
    line = assert_one_error_line(result, "IDEMPOTENCY_CONFLICT")
    assert json.loads(line)["error"]["code"] == "IDEMPOTENCY_CONFLICT"


def last_progress(stderr: str) -> dict[str, tuple[int, int]]:
    """The last `label: done/total` shown for each label."""
    seen = {}
    for label, done, total in re.findall(r"([a-z_ ]+): (\d+)/(\d+)", stderr.replace("\r", "\n")):
        seen[label.strip()] = (int(done), int(total))
    return seen


def test_progress_reaches_the_total(database_url):
    demo = run_cli(database_url, "demo", "--days", "4", "--per-day", "300", timeout=300)
    assert demo.returncode == 0, demo.stderr
    done, total = last_progress(demo.stderr)["demo events"]
    assert done == total > 1000
    assert run_cli(database_url, "rebuild", timeout=300).returncode == 0
    check = run_cli(database_url, "rebuild", "--check", timeout=300)
    assert check.returncode == 0, check.stderr
    shown = last_progress(check.stderr)
    assert {"checking usage_events", "checking ledger_chain"} <= set(shown)
    assert all(done == total for done, total in shown.values()), shown


def test_an_unexpected_error_is_one_line_and_a_traceback_only_when_debugging(database_url, tmp_path):
    # a fault no code path expects, injected at interpreter start-up (sitecustomize)
    (tmp_path / "sitecustomize.py").write_text(
        "import runtime.reports\n"
        "def broken(*_args, **_kwargs):\n"
        "    raise RuntimeError('an injected fault')\n"
        "runtime.reports.projection_report = broken\n"
    )
    migrated(database_url)
    fault = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = run_cli(database_url, "status", timeout=60, **fault)
    assert_one_error_line(result, "error: RuntimeError", "an injected fault")
    debugging = run_cli(database_url, "status", USAGE_LEDGER_DEBUG="1", timeout=60, **fault)
    assert debugging.returncode == 1 and "Traceback" in debugging.stderr


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("PROJECTOR_BATCH_SIZE", "many", "PROJECTOR_BATCH_SIZE must be a whole number, got 'many'"),
    ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be at least 1, got '0'"),
    ("READ_WAIT_SECONDS", "nan", "READ_WAIT_SECONDS must be a number, got 'nan'"),
    ("BUDGET_CHECK_CACHE_SECONDS", "-1", "BUDGET_CHECK_CACHE_SECONDS must be at least 0, got '-1'"),
    ("DATABASE_URL", "mysql://db/ledger", "DATABASE_URL must start with postgresql:// or sqlite:///, got 'mysql'"),
    ("LEDGER_CLUSTERS", "a", "LEDGER_CLUSTERS: expected name=url, got 'a'"),
])
@pytest.mark.parametrize("command", ["status", "api"])
def test_a_variable_the_service_cannot_use_is_named_in_one_line(tmp_path, command, variable, value, said):
    args = ("api", "--port", str(free_port())) if command == "api" else ("status",)
    database_url = value if variable == "DATABASE_URL" else f"sqlite:///{tmp_path}/settings.db"
    extra = {} if variable == "DATABASE_URL" else {variable: value}
    result = run_cli(database_url, *args, timeout=60, **extra)
    assert assert_one_error_line(result) == f"error: {said}"


@pytest.mark.parametrize("command", ["serve", "api", "work"])
def test_the_server_processes_refuse_to_start_without_a_pepper(tmp_path, command):
    result = run_cli(f"sqlite:///{tmp_path}/pepper.db", command, timeout=60, SECRET_PEPPER="")
    assert_one_error_line(result, "SECRET_PEPPER")


def test_serve_on_a_busy_port_names_the_port_and_the_hint(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(f"sqlite:///{tmp_path}/busy.db", "serve", "--port", str(port), timeout=60)
    assert_one_error_line(result, f"port {port}", "in use", "PORT=")
    assert "running at" not in result.stdout + result.stderr


def test_serve_says_running_only_once_the_port_answers(tmp_path):
    port = free_port()
    process = start_cli(f"sqlite:///{tmp_path}/serve.db", "serve", "--port", str(port))
    try:
        for raw in process.stdout:
            if b"usage-ledger is running at" in raw:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()  # refused would fail here
                break
        else:
            raise AssertionError("serve ended without saying it is running")
        assert process.poll() is None
    finally:
        assert stop(process) == 0


def test_the_scheduler_logs_warnings_only():
    from workers.logs import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging()
        assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("usage_ledger").getEffectiveLevel() == logging.INFO
    finally:
        root.handlers[:], root.level = handlers, level

