"""The time-based ledger checkpoint (a periodic job): every LEDGER_CHECKPOINT_MINUTES,
when anything new was sealed, sign the sealed head. The count-based checkpoints are
signed by the sealing projector itself (projections/ledger_chain.py)."""
from __future__ import annotations

import logging

from ledger.settings import Settings
from projections.ledger_chain import sign_checkpoint_if_due
from runtime.bootstrap import bootstrap

log = logging.getLogger("usage_ledger.checkpoints")

CHECK_SECONDS = 30.0


def run(settings: Settings):
    """One pass; returns the checkpoint signed, if any."""
    if not settings.ledger_signing_key_file:
        return None
    with bootstrap(settings, writer=True, pool_size=1) as services:
        checkpoint = sign_checkpoint_if_due(services.engine, settings)
    if checkpoint is not None:
        log.info("checkpoint signed", extra={"fields": {"position": checkpoint.position, "key_id": checkpoint.key_id}})
    return checkpoint
