"""What a request handler can reach: settings, the ledger application and the read-model engine."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from ledger.application import Ledger
from ledger.settings import Settings
from ledger.store import LedgerStore


@dataclass
class Services:
    settings: Settings
    store: LedgerStore
    ledger: Ledger
    engine: Engine

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


def services() -> Services:
    return current_app.extensions["usage_ledger"]
