"""The hold-expiry job: append `BudgetHoldExpired` for every held hold past its expiry.

A hold stops counting at its `expires_at` already (reads and reserves compare with the
clock); this job only records the expiry in the ledger, so auditors and replays see it. The
expiry is version 2 of the hold's stream, so however many workers, retries or crashes
attempt it, a hold expires once, and never after it was committed or released.
"""
from __future__ import annotations

import logging

from ledger.settings import Settings
from projections import budget_hold_queries as hq
from runtime.bootstrap import Services, bootstrap

log = logging.getLogger("usage_ledger.hold_expiry")
ACTOR = "system:hold-expiry"
SECONDS = 5


def expire_due(services: Services, limit: int = 500) -> int:
    """One pass: expire the holds the read model says are due; how many were expired."""
    now = services.settings.clock.now()
    with services.engine.connect() as conn:
        due = hq.holds_due(conn, now, limit)
    expired = 0
    for tenant_id, hold_id in due:
        if services.ledger.holds.expire(tenant_id, hold_id, ACTOR).position:
            expired += 1
    if expired:
        log.info("holds expired", extra={"fields": {"expired": expired}})
    return expired


_per_process: dict[str, Services] = {}


def run(settings: Settings) -> int:
    """The scheduler's entry point: one pass, with this process's store and engine."""
    services = _per_process.get(settings.database_url)
    if services is None:
        services = _per_process[settings.database_url] = bootstrap(settings, pool_size=1)
    return expire_due(services)
