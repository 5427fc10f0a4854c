"""What the commands of every concept share: the journal they append through, the settings
they judge with, the audit trail they write, and the journal's clock as `now`."""
from __future__ import annotations

from datetime import datetime

from ledger.audit.commands import AuditCommands
from ledger.journal import Journal
from ledger.settings import Settings


class ConceptCommands:
    def __init__(self, journal: Journal, settings: Settings, audit: AuditCommands):
        self.journal = journal
        self.settings = settings
        self.audit = audit

    @property
    def now(self) -> datetime:
        return self.journal.now
