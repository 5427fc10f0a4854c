"""Where a usage event lives: one stream per (tenant, event id), so a repeated id is a
duplicate and its corrections (void, amend) are the stream's next versions."""
from __future__ import annotations

from uuid import UUID

from ledger.store import stream_id


def usage_stream(tenant_id: str, event_id: str) -> UUID:
    return stream_id("usage", tenant_id, event_id)
