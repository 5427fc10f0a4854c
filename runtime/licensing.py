"""License Manager sync of every licence the read model knows (the admin route, the worker
job and `usage-ledger sync-license` all run this)."""
from __future__ import annotations

from ledger.licensing.manager import Fetch, SyncOutcome, sync_licenses
from projections.license_sync import keys_from_read_model
from runtime.bootstrap import Services


def sync_known_licenses(services: Services, fetch: Fetch | None = None) -> list[SyncOutcome]:
    """One pass over every licence with a key (from LicenseIssued/LicenseReplaced, as the
    license_sync read model has them); one event per licence."""
    with services.engine.connect() as conn:
        licences = keys_from_read_model(conn)
    return sync_licenses(services.ledger, licences, fetch)
