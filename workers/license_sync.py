"""The License Manager sync job (ledger/licensing/manager.py): every
LICENSE_SYNC_INTERVAL_SECONDS, sync every licence with a key."""
from __future__ import annotations

from ledger.licensing.manager import SyncOutcome
from ledger.settings import Settings
from runtime.bootstrap import bootstrap
from runtime.licensing import sync_known_licenses


def run(settings: Settings) -> list[SyncOutcome]:
    with bootstrap(settings, writer=True, pool_size=1) as services:
        return sync_known_licenses(services)
