"""The base of every ledger event: plain data, tagged with its class name.

Each event is a msgspec Struct tagged with its class name, so the stored JSON says
`"type": "UsageRecorded"` and decoding picks the class back (ledger/codec.py). Money is
Decimal (stored as a string), time is timezone-aware UTC. The events themselves live with
their concept: `ledger/<concept>/events.py`.
"""
from __future__ import annotations

from datetime import datetime

import msgspec


class LedgerEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    tenant_id: str
    org_id: str = ""
    recorded_at: datetime
    actor: str

    @property
    def type(self) -> str:
        return type(self).__name__

