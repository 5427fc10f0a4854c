"""Pruning of session consistency marks: a mark every read model has passed makes no
read wait, so the table keeps only the principals that wrote in the last moments."""
from __future__ import annotations

import logging

from ledger.settings import Settings
from projections.consistency_marks import prune
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.marks")
SECONDS = 300


def run(settings: Settings) -> int:
    with bootstrap(settings, writer=True, pool_size=1) as services, services.engine.begin() as conn:
        deleted = prune(conn)
    if deleted:
        log.info("pruned consistency marks", extra={"fields": {"deleted": deleted}})
    return deleted
