"""The auditors' ledger API and the offline export (SPEC.md §3 "Tamper evidence").

The export is verified on a "machine" that has only the file and the public key: a fresh
directory, no database, no DATABASE_URL, a separate process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.chain.hashes import PublicKey, generate_key_files
from tests.chain_support import append_events, seal
from tests.conftest import ADMIN_KEY, make_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def key_file(tmp_path) -> str:
    (tmp_path / "keys").mkdir()
    private_path, _, _ = generate_key_files(tmp_path / "keys" / "signing.pem")
    return str(private_path)


@pytest.fixture
def settings(database_url, clock, key_file):
    return make_settings(
        database_url, clock, ledger_signing_key_file=key_file, ledger_checkpoint_every=100, read_wait_seconds=0.05
    )


@pytest.fixture
def sealed(h):
    """The harness' ledger with 250 events, sealed and signed every 100."""
    append_events(h.store, 250, batch=125)
    seal(h.engine, h.store, h.settings)
    return h


def _cli(settings, *args):
    from usage_ledger.cli import main

    env = {"DATABASE_URL": settings.database_url, "LEDGER_SIGNING_KEY_FILE": settings.ledger_signing_key_file or ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _verify_offline(workdir: Path, export: Path, public_key: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(workdir)}
    return subprocess.run(
        [sys.executable, "-m", "usage_ledger.cli", "verify", "--file", export.name, "--public-key", public_key.name],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )


# the export, verified offline ----------------------------------------------------------
def test_an_export_verifies_on_a_machine_with_only_the_file_and_the_public_key(sealed, tmp_path, key_file):
    export = tmp_path / "ledger.jsonl"
    result = _cli(sealed.settings, "export-ledger", "--out", str(export))
    assert result.exit_code == 0, result.output
    header = json.loads(result.stdout)
    assert header["events"] == 250 and header["checkpoints"] == 2 and header["sealed_through"] == 250

    machine = tmp_path / "auditor"
    machine.mkdir()
    (machine / "ledger.jsonl").write_bytes(export.read_bytes())
    (machine / "ledger.pub").write_bytes(Path(f"{key_file}.pub").read_bytes())
    done = _verify_offline(machine, machine / "ledger.jsonl", machine / "ledger.pub")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["intact"] and summary["events_verified"] == 250 and summary["checkpoints_verified"] == 2
    assert "INTACT: 250 events verified, 2 checkpoint(s) verified" in done.stderr
    assert sorted(p.name for p in machine.iterdir()) == ["ledger.jsonl", "ledger.pub"]  # no database appeared

    # the same file with one event edited by hand
    lines = (machine / "ledger.jsonl").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"position":77,' in line and '"kind":"event"' in line)
    lines[index] = lines[index].replace('\\"prompt_tokens\\":', '\\"prompt_tokens\\":9', 1)
    (machine / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    done = _verify_offline(machine, machine / "ledger.jsonl", machine / "ledger.pub")
    assert done.returncode == 1
    assert json.loads(done.stdout)["damage"]["kind"] == "edited"
    assert "DAMAGED at position 77: edited" in done.stderr


def test_an_export_cut_short_or_with_lines_dropped_is_caught(sealed, tmp_path, key_file):
    from ledger.chain.export import verify_export

    export = tmp_path / "ledger.jsonl"
    assert _cli(sealed.settings, "export-ledger", "--out", str(export)).exit_code == 0
    key = [PublicKey.from_file(f"{key_file}.pub")]
    lines = export.read_bytes().splitlines(keepends=True)
    events = [i for i, line in enumerate(lines) if b'"kind":"event"' in line]

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_bytes(b"".join(line for i, line in enumerate(lines) if i != events[149]))  # position 150
    with open(dropped, "rb") as handle:
        report = verify_export(handle, key)
    assert (report.damage.kind, report.damage.position) == ("deleted", 150)

    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[: events[180]]))  # events 1..180, checkpoint 200 remains in the header block
    with open(cut, "rb") as handle:
        report = verify_export(handle, key)
    assert (report.damage.kind, report.damage.position) == ("truncated", 200)


def test_an_export_of_an_unsigned_ledger_still_proves_consistency(database_url, clock, tmp_path):
    from ledger.store import LedgerStore
    from projections.db import make_engine
    from projections.registry import setup_database

    settings = make_settings(database_url, clock)
    setup_database(settings)
    store, engine = LedgerStore(database_url), make_engine(database_url, writer=True)
    append_events(store, 20)
    seal(engine, store, settings)
    store.close()
    engine.dispose()
    export = tmp_path / "plain.jsonl"
    assert _cli(settings, "export-ledger", "--out", str(export)).exit_code == 0
    from usage_ledger.cli import main

    result = CliRunner().invoke(main, ["verify", "--file", str(export)], env={"DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["events_verified"] == 20 and summary["checkpoints_total"] == 0
    assert any("no signed checkpoints" in w for w in summary["warnings"])


# the auditors' API ---------------------------------------------------------------------
def test_the_ledger_reads_in_position_order_with_entry_hashes(sealed):
    response = sealed.admin("GET", "/api/v1/ledger?after=0&limit=100")
    assert response.status_code == 200, response.json
    body = response.json
    assert [e["position"] for e in body["events"]] == list(range(1, 101))
    assert body["has_more"] and body["next_after"] == 100 and body["sealed_through"] == 250
    first = body["events"][0]
    assert first["type"] == "TenantCreated" and first["tenant_id"] == "tenant-0"
    assert len(first["entry_hash"]) == 64 and len(first["stream_id"]) == 32 and first["version"] == 1
    usage = body["events"][1]
    assert usage["type"] == "UsageRecorded" and usage["payload"]["usage"]["event_id"] == "evt-1"
    assert usage["tenant_id"] == "acme" and usage["org_id"] == "prod"
    last = sealed.admin("GET", "/api/v1/ledger?after=200&limit=1000").json
    assert [e["position"] for e in last["events"]] == list(range(201, 251)) and not last["has_more"]


def test_events_not_yet_sealed_have_no_entry_hash(sealed):
    append_events(sealed.store, 3, start=500)
    events = sealed.admin("GET", "/api/v1/ledger?after=250").json["events"]
    assert [e["entry_hash"] for e in events] == [None, None, None]


def test_the_ledger_limit_is_at_most_1000(sealed):
    response = sealed.admin("GET", "/api/v1/ledger?limit=1001")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "VALIDATION_FAILED" and "limit" in response.json["error"]["fields"]
    assert sealed.admin("GET", "/api/v1/ledger?after=-1").status_code == 422


def test_the_ledger_needs_an_auditors_credentials(sealed):
    assert sealed.http.get("/api/v1/ledger").status_code == 401
    assert sealed.http.get("/api/v1/ledger", headers={"X-Admin-API-Key": "wrong"}).status_code == 401
    assert sealed.http.get("/api/v1/ledger/checkpoints").status_code == 401


def test_checkpoints_and_the_public_key_let_an_auditor_check_signatures(sealed, key_file):
    from ledger.chain.hashes import Checkpoint

    checkpoints = sealed.admin("GET", "/api/v1/ledger/checkpoints").json["checkpoints"]
    assert [c["position"] for c in checkpoints] == [100, 200]
    served = sealed.http.get("/api/v1/ledger/public-key").json
    assert served["algorithm"] == "Ed25519"
    assert served["public_key_pem"] == Path(f"{key_file}.pub").read_text()
    key = PublicKey.from_file(f"{key_file}.pub")
    assert served["key_id"] == key.key_id
    for c in checkpoints:
        checkpoint = Checkpoint(c["position"], bytes.fromhex(c["entry_hash"]), c["signed_at"], bytes.fromhex(c["signature"]), c["key_id"])
        assert key.verifies(checkpoint)
    page = sealed.admin("GET", "/api/v1/ledger?after=199&limit=1").json["events"][0]
    assert page["entry_hash"] == checkpoints[1]["entry_hash"]


def test_the_public_key_is_404_when_no_signing_key_is_configured(h):
    h.settings.ledger_signing_key_file = None
    response = h.http.get("/api/v1/ledger/public-key")
    assert response.status_code == 404 and response.json["error"]["code"] == "SIGNING_NOT_CONFIGURED"


def test_the_ledger_api_is_in_the_openapi_document(h):
    paths = h.http.get("/openapi.json").json["paths"]
    assert {"/api/v1/ledger", "/api/v1/ledger/checkpoints", "/api/v1/ledger/public-key"} <= set(paths)


def test_a_read_waits_for_sealing_with_min_position(sealed):
    append_events(sealed.store, 2, start=600)
    response = sealed.admin("GET", "/api/v1/ledger?after=250&min_position=252")
    assert response.status_code == 503 and response.headers["Retry-After"]
    seal(sealed.engine, sealed.store, sealed.settings)
    response = sealed.admin("GET", "/api/v1/ledger?after=250&min_position=252")
    assert response.status_code == 200 and response.headers["X-Ledger-Position"] == "252"
    assert all(e["entry_hash"] for e in response.json["events"])


def test_admin_key_not_configured_answers_503(sealed):
    sealed.settings.admin_api_key = None
    response = sealed.http.get("/api/v1/ledger", headers={"X-Admin-API-Key": ADMIN_KEY})
    assert response.status_code == 503


def test_the_export_writes_no_exponents_outside_the_stored_state(h, tmp_path, key_file):
    """Decimals stored as "8E+1" or "1E-9" stay verbatim in the hashed `state`; the readable
    `payload` beside it and the auditors' API write them as plain decimals; verify passes."""
    import re

    from tests.conftest import usage

    h.tenant("acme")
    agent = h.agent("acme", "prod")
    events = [usage("tiny", cost_usd="0.000000001"), usage("round", cost_usd="80"), usage("exp", cost_usd="8E+1")]
    assert h.post_events(agent, events).status_code == 202
    seal(h.engine, h.store, h.settings)
    export = tmp_path / "ledger.jsonl"
    assert _cli(h.settings, "export-ledger", "--out", str(export)).exit_code == 0
    exponent = re.compile(r"-?\d+(\.\d+)?[eE][+-]?\d+")

    def exponents(value) -> list:
        if isinstance(value, dict):
            return [x for v in value.values() for x in exponents(v)]
        if isinstance(value, list):
            return [x for v in value for x in exponents(v)]
        if isinstance(value, float) and "e" in repr(value) or isinstance(value, str) and exponent.fullmatch(value):
            return [value]
        return []

    states = 0
    for text in export.read_text().splitlines():
        line = json.loads(text)
        states += bool(exponents(json.loads(line.pop("state", None) or "{}")))
        assert not exponents(line), text
    assert states  # the stored form does hold exponents: they are kept verbatim for the hashes
    costs = [
        json.loads(t)["payload"]["usage"]["cost_usd"]
        for t in export.read_text().splitlines()
        if '"type":"UsageRecorded"' in t
    ]
    assert sorted(costs) == ["0.000000001", "80", "80"]
    api = h.admin("GET", "/api/v1/ledger?after=0&limit=1000").json["events"]
    assert not any(exponents(e["payload"]) for e in api)
    assert _cli(h.settings, "verify", "--file", str(export)).exit_code == 0
