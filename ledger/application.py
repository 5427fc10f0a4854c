"""The ledger application: one object composing the commands of every concept.

Handlers and workers call `ledger.identity`, `ledger.keys`, `ledger.licensing`,
`ledger.policies`, `ledger.docs_access`, `ledger.pricing`, `ledger.budgets`,
`ledger.corrections`, `ledger.audit` and `ledger.usage`; each concept's commands live
in `ledger/<concept>/commands.py` and append through the one Journal built here. Each
command returns the ledger position it reached so that callers can read their own writes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.budgets.commands import CostControls
from ledger.budgets.hold_commands import BudgetHolds
from ledger.docs_access.commands import DocsAccessCommands
from ledger.identity.commands import IdentityCommands
from ledger.journal import Journal
from ledger.keys.commands import KeyCommands
from ledger.licensing.commands import LicensingCommands
from ledger.policies.commands import PolicyCommands
from ledger.pricing.commands import PricingCommands
from ledger.pricing.credits import CreditRateBook
from ledger.pricing.prices import PriceBook
from ledger.settings import Settings
from ledger.store import LedgerStore
from ledger.usage.corrections import UsageCorrections
from ledger.usage.commands import IngestResult, UsageCommands
from ledger.usage.streams import usage_stream

__all__ = ["Actor", "IngestResult", "Ledger", "usage_stream"]

class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        settings: Settings,
        books: Callable[[], tuple[PriceBook, CreditRateBook]] = lambda: (PriceBook(), CreditRateBook()),
    ):
        """`books` answers the price book and the credit-rate book current now (both in one
        call: one read of the ledger per ingest request)."""
        self.store = store
        self.settings = settings
        self.journal = Journal(store, settings.clock)
        self.books = books
        self.audit = AuditCommands(self.journal)
        self.identity = IdentityCommands(self.journal, settings, self.audit)
        self.keys = KeyCommands(self.journal, settings, self.audit)
        self.licensing = LicensingCommands(self.journal, settings, self.audit, self.identity)
        self.policies = PolicyCommands(self.journal, settings, self.audit, self.identity)
        self.docs_access = DocsAccessCommands(self.journal, settings, self.audit)
        self.pricing = PricingCommands(self.journal, settings)
        self.corrections = UsageCorrections(self.journal, settings, self.audit, books)
        self.budgets = CostControls(self.journal)
        self.holds = BudgetHolds(self.journal)
        self.usage = UsageCommands(self.journal, settings, books, self.holds)

    def price_book(self) -> PriceBook:
        return self.books()[0]

    @property
    def now(self) -> datetime:
        return self.settings.clock.now()

    @property
    def cost_controls(self) -> CostControls:
        """The budget commands under the name their callers use."""
        return self.budgets
