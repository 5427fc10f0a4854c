"""Tamper evidence (SPEC.md §3): every kind of damage made directly in the database is
detected and named, on SQLite and on PostgreSQL.

The ledger used here: 250 events at positions 1..250 with position 120 missing (as a
rolled-back append leaves a gap on PostgreSQL), sealed, with a signed checkpoint every
100 sealed events: at positions 100 and 201.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
import pytest
from click.testing import CliRunner

from ledger.chain.hashes import (
    GENESIS_HASH,
    PublicKey,
    Signer,
    canonical,
    chain_hashes,
    entry_hash,
    generate_key_files,
)
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.db import make_engine
from projections.ledger_snapshot import verify_database
from projections.registry import setup_database
from tests import chain_support as damage
from tests.chain_support import append_events, seal, usage_event
from tests.conftest import make_settings

CHECKPOINTS = [100, 201]


@dataclass
class Auditable:
    settings: Settings
    store: LedgerStore
    engine: object
    public_key: PublicKey
    key_file: str

    def verify(self, *keys: PublicKey, **kwargs):
        return verify_database(self.engine, list(keys) or [self.public_key], **kwargs)


@pytest.fixture
def key_file(tmp_path) -> str:
    private_path, _, _ = generate_key_files(tmp_path / "signing.pem")
    return str(private_path)


@pytest.fixture
def ledger(database_url, clock, key_file):
    settings = make_settings(database_url, clock, ledger_signing_key_file=key_file, ledger_checkpoint_every=100)
    setup_database(settings)
    store = LedgerStore(database_url)
    engine = make_engine(database_url, writer=True)
    append_events(store, 250, batch=50)
    damage.delete_events(engine, "{pos} = 120")  # a legitimate gap, before sealing
    seal(engine, store, settings)
    yield Auditable(settings, store, engine, PublicKey.from_file(f"{key_file}.pub"), key_file)
    store.close()
    engine.dispose()


def other_signer(tmp_path) -> Signer:
    path, _, _ = generate_key_files(tmp_path / "intruder.pem")
    return Signer.from_file(path)


# the canonical form ------------------------------------------------------------------
def test_the_canonical_form_is_the_documented_bytes():
    state = b'{"actor":"admin","name":"T","org_id":"","recorded_at":"2026-11-20T12:00:00Z","tenant_id":"t","type":"TenantCreated"}'
    stream = "0123456789abcdef0123456789abcdef"
    assert canonical(7, stream, 1, "TenantCreated", state) == (
        b'{"event":' + state + b',"position":7,"stream_id":"0123456789abcdef0123456789abcdef",'
        b'"type":"TenantCreated","version":1}'
    )
    assert json.loads(canonical(7, stream, 1, "TenantCreated", state))["event"]["tenant_id"] == "t"
    expected = hashlib.sha256(GENESIS_HASH + (7).to_bytes(8, "big") + canonical(7, stream, 1, "TenantCreated", state)).digest()
    assert entry_hash(GENESIS_HASH, 7, stream, 1, "TenantCreated", state) == expected
    # the known answer printed in README "For auditors"
    assert expected.hex() == "c44a0da1398328e3bbd90b05aa6c582fc890c5148da52f8f101aad32ccb04c71"


def test_identical_events_hash_identically_on_every_backend(database_url, clock):
    """The chain head equals a pure-Python computation over the same events, so SQLite and
    PostgreSQL (both tested with this body) seal identical hashes."""
    settings = make_settings(database_url, clock)
    setup_database(settings)
    store, engine = LedgerStore(database_url), make_engine(database_url, writer=True)
    try:
        append_events(store, 30)
        seal(engine, store, settings)
        from ledger.codec import encode_event

        expected = chain_hashes(
            GENESIS_HASH,
            [
                (i + 1, e.stream_id.hex, e.version, e.event.type, encode_event(e.event))
                for i, e in enumerate(damage.tenant_event(i) if i % 10 == 0 else usage_event(i) for i in range(30))
            ],
        )
        assert damage.chain_hash_at(engine, 30) == expected[-1]
    finally:
        store.close()
        engine.dispose()


# an intact ledger --------------------------------------------------------------------
def test_an_intact_ledger_verifies_with_its_checkpoints(ledger):
    report = ledger.verify()
    assert report.intact, report.damage
    assert report.events_verified == 249
    assert report.checkpoints_verified == len(CHECKPOINTS) == report.checkpoints_total
    assert report.last_position == 250 and report.signed_through == 201
    assert report.signatures_checked and report.damage is None


def test_events_appended_after_the_last_seal_are_reported_not_blamed(ledger):
    append_events(ledger.store, 5, start=1000)
    report = ledger.verify()
    assert report.intact
    assert report.unsealed_events == 5
    assert any("not sealed yet" in w for w in report.warnings)


def test_verify_from_a_position_starts_at_the_signed_checkpoint_before_it(ledger):
    report = ledger.verify(from_position=150)
    assert report.intact
    assert report.events_verified == 149  # 101..250 without the gap at 120
    assert report.warnings[0] == "started after the signed checkpoint at 100"
    report = ledger.verify(from_position=230)
    assert report.intact and report.events_verified == 49
    assert report.warnings[0] == "started after the signed checkpoint at 201"


# each kind of damage, made in the database ---------------------------------------------
def _edit(ledger, tmp_path):
    damage.edit_state(ledger.engine, 150, b'"prompt_tokens":', b'"prompt_tokens":1')


def _delete(ledger, tmp_path):
    damage.delete_events(ledger.engine, "{pos} = 150")


def _delete_with_chain_row(ledger, tmp_path):
    damage.delete_events(ledger.engine, "{pos} = 150")
    damage.delete_chain_rows(ledger.engine, "position = 150")


def _insert(ledger, tmp_path):
    damage.insert_event_at(ledger.engine, 120, usage_event(99_999))  # into the gap


def _swap(ledger, tmp_path):
    damage.swap_positions(ledger.engine, 130, 170)


def _swap_neighbours(ledger, tmp_path):
    damage.swap_positions(ledger.engine, 130, 131)


def _truncate(ledger, tmp_path):
    damage.delete_events(ledger.engine, "{pos} > 230")


def _truncate_with_chain(ledger, tmp_path):
    damage.delete_events(ledger.engine, "{pos} > 180")
    damage.delete_chain_rows(ledger.engine, "position > 180")


def _rehash(ledger, tmp_path):
    _edit(ledger, tmp_path)
    damage.rehash_chain_from(ledger.engine, 150)


def _rehash_and_rewrite_checkpoint(ledger, tmp_path):
    _rehash(ledger, tmp_path)
    damage.set_checkpoint(ledger.engine, 201, entry_hash=damage.chain_hash_at(ledger.engine, 201))


def _forge_signature(ledger, tmp_path):
    with ledger.engine.connect() as conn:
        from sqlalchemy import text

        signature = bytes(conn.execute(text("SELECT signature FROM ledger_checkpoints WHERE position = 201")).scalar_one())
    damage.set_checkpoint(ledger.engine, 201, signature=bytes([signature[0] ^ 1]) + signature[1:])


def _sign_with_another_key(ledger, tmp_path):
    damage.resign_checkpoint(ledger.engine, 201, other_signer(tmp_path))


def _sign_with_another_key_claiming_ours(ledger, tmp_path):
    damage.resign_checkpoint(ledger.engine, 201, other_signer(tmp_path), claim_key_id=ledger.public_key.key_id)


def _alter_chain_row(ledger, tmp_path):
    from sqlalchemy import text

    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_chain SET entry_hash = :h WHERE position = 150"), {"h": bytes(32)})


@pytest.mark.parametrize(
    "make_damage,kind,position",
    [
        pytest.param(_edit, "edited", 150, id="edited-payload"),
        pytest.param(_delete, "deleted", 150, id="deleted-event"),
        pytest.param(_delete_with_chain_row, "deleted", 150, id="deleted-event-and-chain-row"),
        pytest.param(_insert, "inserted", 120, id="inserted-event"),
        pytest.param(_swap, "reordered", 130, id="two-events-swapped"),
        pytest.param(_swap_neighbours, "reordered", 130, id="neighbours-swapped"),
        pytest.param(_truncate, "truncated", 231, id="truncated-tail"),
        pytest.param(_truncate_with_chain, "truncated", 201, id="truncated-tail-and-chain"),
        pytest.param(_rehash, "rehashed", 201, id="rehashed-chain"),
        pytest.param(_rehash_and_rewrite_checkpoint, "forged_checkpoint", 201, id="rehashed-chain-and-checkpoint"),
        pytest.param(_forge_signature, "forged_checkpoint", 201, id="forged-signature"),
        pytest.param(_sign_with_another_key, "foreign_key_checkpoint", 201, id="checkpoint-by-another-key"),
        pytest.param(_sign_with_another_key_claiming_ours, "forged_checkpoint", 201, id="another-key-claiming-ours"),
        pytest.param(_alter_chain_row, "chain_altered", 150, id="chain-row-altered"),
    ],
)
def test_damage_is_detected_and_named(ledger, tmp_path, make_damage, kind, position):
    assert ledger.verify().intact
    make_damage(ledger, tmp_path)
    report = ledger.verify()
    assert not report.intact
    assert (report.damage.kind, report.damage.position) == (kind, position), report.damage


def test_a_rehashed_chain_is_not_detected_without_the_public_key_only_if_checkpoints_are_rewritten(ledger, tmp_path):
    """Without a trusted key the checkpoints are still compared, but a rewritten one is
    accepted: verify says that signatures were not checked."""
    _rehash(ledger, tmp_path)
    assert verify_database(ledger.engine, []).damage.kind == "rehashed"
    damage.set_checkpoint(ledger.engine, 201, entry_hash=damage.chain_hash_at(ledger.engine, 201))
    report = verify_database(ledger.engine, [])
    assert report.intact and not report.signatures_checked
    assert "NOT checked" in report.warnings[0]


# the command line --------------------------------------------------------------------
def _cli(ledger, *args):
    from usage_ledger.cli import main

    env = {"DATABASE_URL": ledger.settings.database_url, "LEDGER_SIGNING_KEY_FILE": ledger.key_file}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_the_verify_command_exits_0_with_a_summary_then_names_an_edited_position(ledger):
    result = _cli(ledger, "verify", "--public-key", f"{ledger.key_file}.pub")
    assert result.exit_code == 0, result.output
    assert "INTACT: 249 events verified, 2 checkpoint(s) verified" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["events_verified"] == 249 and summary["checkpoints_verified"] == 2
    assert summary["last_position"] == 250 and summary["events_per_second"] > 0
    _edit(ledger, None)
    result = _cli(ledger, "verify", "--public-key", f"{ledger.key_file}.pub")
    assert result.exit_code == 1
    assert "DAMAGED at position 150: edited" in result.stderr
    assert json.loads(result.stdout)["damage"]["position"] == 150


def test_verify_says_when_no_key_signs_checkpoints(database_url, clock):
    settings = make_settings(database_url, clock)
    setup_database(settings)
    store, engine = LedgerStore(database_url), make_engine(database_url, writer=True)
    append_events(store, 10)
    seal(engine, store, settings)
    from usage_ledger.cli import main

    result = CliRunner().invoke(main, ["verify"], env={"DATABASE_URL": database_url, "LEDGER_SIGNING_KEY_FILE": ""})
    store.close()
    engine.dispose()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["signing"].startswith("not configured: no checkpoints are signed")
    assert summary["checkpoints_total"] == 0 and summary["events_verified"] == 10
    assert "signatures NOT checked" in result.stderr


def test_keygen_writes_a_private_key_readable_only_by_its_owner_and_a_public_key(tmp_path):
    import os
    import stat

    from usage_ledger.cli import main

    out = tmp_path / "ledger.pem"
    result = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "ledger.pem.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    key_id = json.loads(result.stdout)["key_id"]
    assert Signer.from_file(out).key_id == PublicKey.from_file(f"{out}.pub").key_id == key_id
    again = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert again.exit_code == 2 and "KEY_FILE_EXISTS" in again.stderr


# time-based checkpoints --------------------------------------------------------------
def test_a_checkpoint_is_signed_every_few_minutes_when_something_new_was_sealed(database_url, clock, key_file):
    from workers import checkpoints
    from workers.jobs import all_jobs

    settings = make_settings(database_url, clock, ledger_signing_key_file=key_file, ledger_checkpoint_minutes=5)
    assert "ledger-checkpoint" in [job.name for job in all_jobs(settings)]
    setup_database(settings)
    store, engine = LedgerStore(database_url), make_engine(database_url, writer=True)
    try:
        append_events(store, 50)
        seal(engine, store, settings)
        first = checkpoints.run(settings)
        assert first is not None and first.position == 50  # none yet: sign the sealed head now
        assert checkpoints.run(settings) is None  # nothing new
        append_events(store, 10, start=50)
        seal(engine, store, settings)
        clock.advance(minutes=4, seconds=59)
        assert checkpoints.run(settings) is None  # too soon
        clock.advance(seconds=1)
        second = checkpoints.run(settings)
        assert second.position == 60 and second.signed_at.startswith("2026-11-20T12:05:00")
        clock.advance(minutes=10)
        assert checkpoints.run(settings) is None  # nothing new was sealed
        assert verify_database(engine, [PublicKey.from_file(f"{key_file}.pub")]).checkpoints_verified == 2
    finally:
        store.close()
        engine.dispose()


def test_no_checkpoint_job_signs_without_a_key(database_url, clock):
    from workers import checkpoints

    settings = make_settings(database_url, clock)
    setup_database(settings)
    assert checkpoints.run(settings) is None


def test_rebuilding_the_chain_keeps_the_signed_checkpoints(ledger):
    from projections.framework import catch_up, reset
    from projections.ledger_chain import SealingProjection

    projection = SealingProjection(settings=ledger.settings)
    ledger.settings.clock.advance(hours=1)
    reset(ledger.engine, projection)
    catch_up(ledger.engine, ledger.store, projection)
    report = ledger.verify()
    assert report.intact and report.checkpoints_verified == 2
    with ledger.engine.connect() as conn:
        from projections.ledger_chain import list_checkpoints

        assert [c.signed_at[:19] for c in list_checkpoints(conn)] == ["2026-11-20T12:00:00"] * 2


def test_rebuild_check_finds_the_chain_identical_to_a_replay(ledger):
    from projections import framework
    from projections.ledger_chain import SealingProjection

    live, shadow = SealingProjection(settings=ledger.settings), SealingProjection("check_", settings=ledger.settings)
    assert framework.check(ledger.engine, ledger.store, live, shadow) == []
    _alter_chain_row(ledger, None)
    assert framework.check(ledger.engine, ledger.store, live, shadow) == ["ledger_chain"]


def test_the_clock_is_what_signed_at_records(ledger):
    with ledger.engine.connect() as conn:
        from projections.ledger_chain import last_checkpoint

        assert last_checkpoint(conn).signed_at == "2026-11-20T12:00:00.000000Z"


# renumbering attacks, on the verifier alone (no database) ------------------------------
def _synthetic(count: int):
    from ledger.codec import encode_event

    events = []
    for i in range(count):
        new = usage_event(i)
        events.append((i + 1, new.stream_id.hex, 1, new.event.type, encode_event(new.event)))
    hashes = chain_hashes(GENESIS_HASH, events)
    chain = [(e[0], e[0] - 1, h) for e, h in zip(events, hashes)]
    return events, chain


def _verify_rows(events, chain):
    from ledger.chain.verify import Verifier

    return Verifier([]).run([(events, [c for c in chain if c[0] <= events[-1][0]], events[-1][0]),
                             ([], [c for c in chain if c[0] > events[-1][0]], None)])


def test_an_event_removed_and_the_rest_renumbered_is_named_deleted():
    events, chain = _synthetic(50)
    shifted = events[:19] + [(p - 1, *rest) for p, *rest in events[20:]]
    report = _verify_rows(shifted, chain)
    assert (report.damage.kind, report.damage.position) == ("deleted", 20)


def test_an_event_pushed_in_and_the_rest_renumbered_is_named_inserted():
    from ledger.codec import encode_event

    events, chain = _synthetic(50)
    intruder = usage_event(777)
    shifted = events[:19] + [(20, intruder.stream_id.hex, 1, "UsageRecorded", encode_event(intruder.event))]
    shifted += [(p + 1, *rest) for p, *rest in events[19:]]
    report = _verify_rows(shifted, chain)
    assert (report.damage.kind, report.damage.position) == ("inserted", 20)


def test_an_intact_synthetic_chain_verifies_in_one_pass():
    events, chain = _synthetic(50)
    report = _verify_rows(events, chain)
    assert report.intact and report.events_verified == 50
