"""Audit retention: axon audit rows older than AUDIT_RETENTION_DAYS are deleted from the
read model. The ledger is never pruned, usage totals (rollups) are untouched, and the
projector skips events already past retention, so a rebuild agrees with the pruned table."""
from __future__ import annotations

import logging

from ledger.settings import Settings
from projections.axon import AxonAuditProjection
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.retention")


def prune_audit(settings: Settings, engine) -> int:
    """One pass; returns how many audit rows were deleted."""
    projection = AxonAuditProjection(retention_days=settings.audit_retention_days, clock=settings.clock)
    with engine.begin() as conn:
        deleted = projection.prune(conn)
    if deleted:
        log.info("pruned audit rows", extra={"fields": {"deleted": deleted, "retention_days": settings.audit_retention_days}})
    return deleted


def run(settings: Settings) -> int:
    with bootstrap(settings, writer=True, pool_size=1) as services:
        return prune_audit(settings, services.engine)
