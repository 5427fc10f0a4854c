"""SIEM forwarding: every axon audit record is POSTed to SIEM_URL as JSON lines
(application/x-ndjson), in ledger-position order, at least once.

A cursor table holds the position of the last record the receiver acknowledged (2xx).
A pass sends batches after the cursor and moves the cursor only after each success, so
an outage (connection refused, timeout, non-2xx) loses nothing: the next pass resends
from where it stopped. An amended record gets a new position and is sent again with its
new content; a receiver should treat `id` as the key.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import BigInteger, Column, DateTime, Engine, MetaData, String, Table, select

from ledger.settings import Settings
from projections.axon_queries import audit_after, audit_record
from projections.sql import upsert_replace
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.siem")
BATCH_SIZE = 500
MAX_BATCHES_PER_PASS = 50
TIMEOUT_SECONDS = 10.0
CURSOR_NAME = "axon_audit"

metadata = MetaData()
siem_cursor = Table(
    "siem_cursor",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)


class DeliveryFailed(Exception):
    pass


@dataclass(frozen=True)
class ForwardResult:
    sent: int
    position: int
    error: str | None = None


def post_json_lines(url: str, body: bytes, timeout: float = TIMEOUT_SECONDS) -> None:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-ndjson", "User-Agent": "usage-ledger-siem"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryFailed(f"receiver answered {error.code}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DeliveryFailed(f"receiver unreachable: {getattr(error, 'reason', error)}") from error
    if not 200 <= status < 300:
        raise DeliveryFailed(f"receiver answered {status}")


def cursor_position(engine: Engine) -> int:
    metadata.create_all(engine)
    with engine.connect() as conn:
        value = conn.execute(select(siem_cursor.c.position).where(siem_cursor.c.name == CURSOR_NAME)).scalar()
    return int(value or 0)


def forward_audit(
    settings: Settings,
    engine: Engine,
    post: Callable[[str, bytes], None] | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES_PER_PASS,
) -> ForwardResult:
    """One pass: send what is after the cursor, batch by batch, until caught up, a batch
    fails, or max_batches were sent."""
    if not settings.siem_url:
        return ForwardResult(0, 0, "SIEM_URL is not configured")
    post = post or post_json_lines
    sent = 0
    position = cursor_position(engine)
    for _ in range(max_batches):
        with engine.connect() as conn:
            rows = audit_after(conn, position, batch_size)
        if not rows:
            break
        body = b"".join(json.dumps(audit_record(r), separators=(",", ":")).encode() + b"\n" for r in rows)
        try:
            post(settings.siem_url, body)
        except DeliveryFailed as error:
            log.warning("SIEM delivery failed; will resume", extra={"fields": {"position": position, "error": str(error)}})
            return ForwardResult(sent, position, str(error))
        position = int(rows[-1]["position"])
        with engine.begin() as conn:
            upsert_replace(
                conn,
                siem_cursor,
                [{"name": CURSOR_NAME, "position": position, "updated_at": datetime.now(timezone.utc).replace(tzinfo=None)}],
                ["name"],
            )
        sent += len(rows)
    return ForwardResult(sent, position)


def run(settings: Settings) -> ForwardResult:
    if not settings.siem_url:
        return ForwardResult(0, 0, "SIEM_URL is not configured")
    with bootstrap(settings, writer=True, pool_size=1) as services:
        return forward_audit(settings, services.engine)
