"""An intact ledger of 100,000 events verifies (SQLite and PostgreSQL).

Marked `scale`: it runs in CI (`make test`); skip it locally with `-m "not scale"`.
About 20-60 s per backend on a 2-core machine, mostly appending and sealing."""
from __future__ import annotations

import pytest

from ledger.chain.hashes import PublicKey, generate_key_files
from ledger.store import LedgerStore
from projections.db import make_engine
from projections.ledger_snapshot import verify_database
from projections.registry import setup_database
from tests.chain_support import append_events, edit_state, seal
from tests.conftest import make_settings

EVENTS = 100_000


@pytest.mark.scale
def test_an_intact_ledger_of_100k_events_verifies(database_url, clock, tmp_path):
    key_file, public_file, _ = generate_key_files(tmp_path / "signing.pem")
    settings = make_settings(database_url, clock, ledger_signing_key_file=str(key_file))  # every 10,000
    setup_database(settings)
    store, engine = LedgerStore(database_url), make_engine(database_url, writer=True)
    try:
        append_events(store, EVENTS, batch=1000)
        assert seal(engine, store, settings) == EVENTS
        key = PublicKey.from_file(public_file)
        report = verify_database(engine, [key])
        assert report.intact, report.damage
        assert report.events_verified == EVENTS and report.last_position == EVENTS
        assert report.checkpoints_verified == 10 and report.signed_through == EVENTS
        # and one edited row deep inside is named
        edit_state(engine, 87_654, b'"completion_tokens":', b'"completion_tokens":1')
        report = verify_database(engine, [key])
        assert (report.damage.kind, report.damage.position) == ("edited", 87_654)
    finally:
        store.close()
        engine.dispose()
