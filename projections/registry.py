"""Every read model the workers keep up to date, in one list."""
from __future__ import annotations

from projections.framework import Projection
from projections.admin_audit import AdminAuditProjection
from projections.ledger_chain import SealingProjection
from projections.docs_access import DocsAccessProjection
from projections.keys import ApiKeysProjection
from projections.licenses import LicensesProjection
from projections.nodes import NodeStatusProjection
from projections.policies import PoliciesProjection
from projections.users import UsersProjection
from projections.usage import UsageEventsProjection, UsageRollupsProjection
from projections.budgets import BudgetStatusProjection
from projections.pricing import PricingProjection
from projections.axon import AxonAuditProjection
from projections.credits import CreditsProjection
from projections.entities import EntitiesProjection
from projections.license_sync import LicenseSyncProjection


def all_projections(prefix: str = "", settings=None) -> list[Projection]:
    """Every read model; `settings` gives the sealing projector its signing key and the
    audit projection its retention (AUDIT_RETENTION_DAYS) and clock."""
    axon = (
        AxonAuditProjection(prefix)
        if settings is None
        else AxonAuditProjection(prefix, retention_days=settings.audit_retention_days, clock=settings.clock)
    )
    return [
        UsageEventsProjection(prefix),
        UsageRollupsProjection(prefix),
        SealingProjection(prefix, settings=settings),
        UsersProjection(prefix),
        ApiKeysProjection(prefix),
        LicensesProjection(prefix),
        NodeStatusProjection(prefix),
        PoliciesProjection(prefix),
        DocsAccessProjection(prefix),
        AdminAuditProjection(prefix),
        PricingProjection(prefix),
        BudgetStatusProjection(prefix),
        axon,
        CreditsProjection(prefix),
        EntitiesProjection(prefix),
        LicenseSyncProjection(prefix),
    ]


def by_name(name: str, prefix: str = "", settings=None) -> Projection:
    for projection in all_projections(prefix, settings):
        if projection.name == name:
            return projection
    raise KeyError(name)


def setup_database(settings) -> list[str]:
    """Create the ledger table and every read model; rebuild those whose schema changed.
    Returns the names of the projections that were reset."""
    from ledger.store import LedgerStore
    from projections.db import make_engine
    from projections.auth_failures import create_table as create_auth_failures
    from projections.consistency_marks import create_table as create_consistency_marks
    from projections.webhook_secrets import create_table as create_webhook_secrets
    from projections.framework import migrate
    from projections.ledger_chain import create_checkpoint_table

    store = LedgerStore(settings.database_url)
    engine = make_engine(settings.database_url, writer=True)
    try:
        store.create_tables()
        create_checkpoint_table(engine)
        create_consistency_marks(engine)
        create_webhook_secrets(engine)
        create_auth_failures(engine)
        return migrate(engine, all_projections(settings=settings))
    finally:
        store.close()
        engine.dispose()
