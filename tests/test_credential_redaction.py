"""No credential material leaves the server through the ledger API or the export, while
the export still verifies offline; events written by earlier releases (plain hashes) still
load, authenticate and verify; `read:ledger` keys read their own tenant's events."""
from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone

import pytest

from ledger.chain.export import verify_export
from ledger.chain.hashes import generate_key_files
from ledger.identity.commands import client_stream, user_stream
from ledger.identity.events import ClientRegistered, UserCreated
from ledger.identity.passwords import hash_password
from ledger.identity.rules import hash_secret
from ledger.keys.commands import key_stream
from ledger.keys.events import ApiKeyCreated
from ledger.keys.rules import key_id_for, sha256_hex
from ledger.store import NewEvent
from projections.ledger_snapshot import export_ledger
from tests.chain_support import seal
from tests.conftest import ADMIN_KEY, PASSWORD, basic, make_settings, usage

OLD_PASSWORD = "an old release password"
OLD_SECRET = "cs_written_by_an_earlier_release"
OLD_KEY = "ulk_oldrelea_" + "k" * 43
WHEN = datetime(2026, 11, 20, 11, 0, tzinfo=timezone.utc)


@pytest.fixture
def key_file(tmp_path) -> str:
    (tmp_path / "keys").mkdir()
    private_path, _, _ = generate_key_files(tmp_path / "keys" / "signing.pem")
    return str(private_path)


@pytest.fixture
def settings(database_url, clock, key_file):
    return make_settings(database_url, clock, ledger_signing_key_file=key_file, ledger_checkpoint_every=5)


def _earlier_release_events(h) -> dict:
    """Credential events as an earlier release wrote them: plain hashes in the payload."""
    password_hash = hash_password(OLD_PASSWORD)
    secret_hash = hash_secret(OLD_SECRET, h.settings.secret_pepper)
    key_sha = sha256_hex(OLD_KEY)
    key_id = key_id_for(OLD_KEY[4:12])
    h.store.append([
        NewEvent(user_stream("old@acme.test"), 1, UserCreated(
            tenant_id="acme", org_id="prod", recorded_at=WHEN, actor="admin", email="old@acme.test",
            password_hash=password_hash, permissions=[])),
        NewEvent(client_stream("cli_old"), 1, ClientRegistered(
            tenant_id="acme", org_id="prod", recorded_at=WHEN, actor="admin", client_id="cli_old", name="old",
            secret_hash=secret_hash)),
        NewEvent(key_stream(key_id), 1, ApiKeyCreated(
            tenant_id="acme", org_id="prod", recorded_at=WHEN, actor="admin", key_id=key_id, name="old",
            key_prefix=OLD_KEY[4:12], key_sha256=key_sha, scopes=["read:policies", "read:ledger"])),
    ])
    return {"password_hash": password_hash, "secret_hash": secret_hash, "key_sha256": key_sha}


def _material(h, legacy: dict) -> list[bytes]:
    """Everything an attacker could use: plain hashes of this release's credentials too."""
    found = [v.encode() for v in legacy.values()] + [b"scrypt$"]
    for n in h.store.read_window(0, h.store.max_position()):
        assert b"scrypt$" not in n.state or n.topic == "UserCreated" and b"old@acme.test" in n.state
    return found


def _world(h):
    h.tenant("acme")
    agent = h.agent()
    h.user("ada@acme.test", permissions=["admin"])
    browser = h.login("ada@acme.test")
    key = browser.post("/api/v1/keys", json={"name": "auditor", "scopes": ["read:ledger"]}).json
    legacy = _earlier_release_events(h)
    h.tenant("other")
    h.agent("other")
    seal(h.engine, h.store, h.settings)
    return agent, key, legacy


def test_new_credentials_are_sealed_and_nothing_secret_is_served(h):
    agent, key, legacy = _world(h)
    new_key_sha = hashlib.sha256(key["key"].encode()).hexdigest().encode()
    every = b"".join(n.state for n in h.store.read_window(0, h.store.max_position()))
    assert new_key_sha not in every and every.count(b'"enc1:') >= 3  # user, client, key of this release

    page = h.admin("GET", "/api/v1/ledger?limit=1000")
    assert page.status_code == 200
    for secret in [*_material(h, legacy), new_key_sha, key["key"].encode()]:
        assert secret not in page.data, secret
    redacted = {e["type"]: e["redacted"] for e in page.json["events"] if "redacted" in e}
    assert redacted == {"UserCreated": ["password_hash"], "ClientRegistered": ["secret_hash"], "ApiKeyCreated": ["key_sha256"]}

    out = io.BytesIO()
    export_ledger(h.engine, out, WHEN)
    data = out.getvalue()
    for secret in [*_material(h, legacy), new_key_sha]:
        assert secret not in data, secret
    report = verify_export(io.BytesIO(data), [])
    assert report.intact, report.damage
    assert report.redacted_events == 3 and report.events_verified == h.store.max_position()


def _changed(lines: list[bytes], index: int, change) -> bytes:
    line = json.loads(lines[index])
    change(line)
    return b"".join(lines[:index] + [json.dumps(line).encode() + b"\n"] + lines[index + 1:])


def test_a_redacted_export_still_detects_changes_around_a_redacted_event(h):
    _world(h)
    out = io.BytesIO()
    export_ledger(h.engine, out, WHEN)
    lines = out.getvalue().splitlines(keepends=True)
    assert verify_export(io.BytesIO(out.getvalue()), []).intact
    redacted_at = [i for i, line in enumerate(lines) if b'"redacted"' in line]
    after = redacted_at[-1] + 1
    assert json.loads(lines[after])["kind"] == "event"

    def edit_body(line):
        line["state"] = line["state"].replace('"tenant_id":"', '"tenant_id":"x', 1)

    def forge_hash(line):
        line["entry_hash"] = "0" * 64

    def show_a_different_email(line):
        line["state"] = line["state"].replace("old@acme.test", "new@acme.test")

    assert not verify_export(io.BytesIO(_changed(lines, after, edit_body)), []).intact
    assert not verify_export(io.BytesIO(_changed(lines, redacted_at[-1], forge_hash)), []).intact
    # the body of a redacted line is not hashed (documented): its hash is what is checked
    assert verify_export(io.BytesIO(_changed(lines, redacted_at[0], show_a_different_email)), []).intact


def test_credentials_of_an_earlier_release_still_authenticate(h):
    _world(h)
    assert h.http.post("/api/v1/auth/login", json={"email": "old@acme.test", "password": OLD_PASSWORD}).status_code == 200
    assert h.http.post("/api/v1/auth/login", json={"email": "old@acme.test", "password": PASSWORD}).status_code == 401
    assert h.post_events(basic("cli_old", OLD_SECRET), [usage("old-1")]).status_code == 202
    assert h.post_events(basic("cli_old", OLD_SECRET + "x"), [usage("old-2")]).status_code == 401
    assert h.http.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {OLD_KEY}"}).status_code == 200
    assert h.http.get("/api/v1/policies/export", headers={"Authorization": f"Bearer {OLD_KEY[:-1]}x"}).status_code == 401


def test_a_read_ledger_key_reads_its_tenants_events_with_positions_and_hashes(h):
    _agent, key, _legacy = _world(h)
    bearer = {"Authorization": f"Bearer {key['key']}"}
    page = h.http.get("/api/v1/ledger?limit=1000", headers=bearer)
    assert page.status_code == 200
    events = page.json["events"]
    assert events and {e["tenant_id"] for e in events} == {"acme"}
    everything = h.admin("GET", "/api/v1/ledger?limit=1000").json["events"]
    assert [e for e in everything if e["tenant_id"] == "acme"] == events  # same positions, same hashes
    assert all(e["entry_hash"] for e in events if e["position"] <= page.json["sealed_through"])
    assert page.json["sealed_through"] > events[0]["position"]
    assert any(e["tenant_id"] == "other" for e in everything)
    # paging by two follows next_after through the whole tenant
    seen, after = [], 0
    while True:
        part = h.http.get(f"/api/v1/ledger?limit=2&after={after}", headers=bearer).json
        seen += part["events"]
        after = part["next_after"]
        if not part["has_more"]:
            break
    assert seen == events
    assert h.http.get("/api/v1/ledger/checkpoints", headers=bearer).status_code == 200
    # without the scope: 403; with the admin key: every tenant
    other = h.login("ada@acme.test").post("/api/v1/keys", json={"name": "x", "scopes": ["read:usage"]}).json
    refused = h.http.get("/api/v1/ledger", headers={"Authorization": f"Bearer {other['key']}"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert ADMIN_KEY
