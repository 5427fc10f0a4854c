"""The ledger application: one object composing the commands of every concept.

Handlers and workers call `ledger.identity`, `ledger.keys`, `ledger.licensing`,
`ledger.policies`, `ledger.docs_access`, `ledger.pricing`, `ledger.budgets`,
`ledger.corrections`, `ledger.audit` and `ledger.record_usage`; each concept's commands live
in `ledger/<concept>/commands.py` and append through the one Journal built here. Each
command returns the ledger position it reached so that callers can read their own writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from uuid import UUID

from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.budgets.commands import CostControls
from ledger.docs_access.commands import DocsAccessCommands
from ledger.errors import Conflict, Unavailable
from ledger.identity.commands import IdentityCommands
from ledger.journal import Journal
from ledger.keys.commands import KeyCommands
from ledger.licensing.commands import LicensingCommands
from ledger.policies.commands import PolicyCommands
from ledger.pricing.commands import PricingCommands
from ledger.pricing.credits import CreditRateBook
from ledger.pricing.prices import PriceBook
from ledger.settings import Settings
from ledger.store import LedgerStore, NewEvent, StreamConflict
from ledger.usage.corrections import UsageCorrections
from ledger.usage.events import Usage, UsageRecorded
from ledger.usage.rules import split_batch, validate_batch
from ledger.usage.streams import usage_stream

__all__ = ["Actor", "IngestResult", "Ledger", "usage_stream"]

APPEND_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    position: int


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        settings: Settings,
        price_book: Callable[[], PriceBook] = PriceBook,
        credit_rates: Callable[[], CreditRateBook] = CreditRateBook,
    ):
        self.store = store
        self.settings = settings
        self.journal = Journal(store, settings.clock)
        self.price_book = price_book
        self.credit_rates = credit_rates
        self.audit = AuditCommands(self.journal)
        self.identity = IdentityCommands(self.journal, settings, self.audit)
        self.keys = KeyCommands(self.journal, settings, self.audit)
        self.licensing = LicensingCommands(self.journal, settings, self.audit, self.identity)
        self.policies = PolicyCommands(self.journal, settings, self.audit, self.identity)
        self.docs_access = DocsAccessCommands(self.journal, settings, self.audit)
        self.pricing = PricingCommands(self.journal, settings)
        self.corrections = UsageCorrections(self.journal, settings, self.audit, price_book)
        self.budgets = CostControls(self)

    @property
    def now(self) -> datetime:
        return self.settings.clock.now()

    @property
    def cost_controls(self) -> CostControls:
        """The budget commands under the name their callers use."""
        return self.budgets

    # usage --------------------------------------------------------------------------
    def record_usage(self, actor: Actor, body: bytes) -> IngestResult:
        """Validate every item, then append the new ones atomically (SPEC.md §3 batch rules)."""
        items = split_batch(body)
        usages = validate_batch(
            items,
            client_id=actor.client_id,
            now=self.now,
            backdating_days=self.settings.backdating_days,
            prices=self.price_book(),
            credit_rates=self.credit_rates(),
        )
        fresh, duplicates = _dedupe_within_batch(usages)
        streams = {usage_stream(actor.tenant_id, u.event_id): u for u in fresh}
        for _ in range(APPEND_ATTEMPTS):
            new, stored_duplicates = self._not_yet_stored(streams)
            if not new:
                return IngestResult(0, duplicates + stored_duplicates, self.store.max_position())
            now = self.now
            try:
                positions = self.store.append(
                    [
                        NewEvent(
                            stream,
                            1,
                            UsageRecorded(
                                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=now, actor=actor.name, usage=u
                            ),
                        )
                        for stream, u in new
                    ]
                )
            except StreamConflict:
                continue  # a concurrent writer stored some of these ids first: look again
            return IngestResult(len(new), duplicates + stored_duplicates, max(positions))
        raise Unavailable("INGEST_CONTENDED", "Too many concurrent writers for the same event ids; retry")

    def _not_yet_stored(self, streams: dict[UUID, Usage]) -> tuple[list[tuple[UUID, Usage]], int]:
        """The usages whose streams hold nothing yet; 409 when a stored one differs."""
        stored = self.store.first_events(streams)
        conflicts = sorted(
            u.event_id
            for s, u in streams.items()
            if s in stored and stored[s].usage.body_sha256 != u.body_sha256  # type: ignore[attr-defined]
        )
        if conflicts:
            raise Conflict(
                "IDEMPOTENCY_CONFLICT",
                "These event ids were already recorded with different content: " + ", ".join(conflicts),
                event_ids=conflicts,
            )
        new = [(s, u) for s, u in streams.items() if s not in stored]
        return new, len(streams) - len(new)


def _dedupe_within_batch(usages: list[Usage]) -> tuple[list[Usage], int]:
    seen: dict[str, Usage] = {}
    conflicts: set[str] = set()
    duplicates = 0
    for usage in usages:
        earlier = seen.get(usage.event_id)
        if earlier is None:
            seen[usage.event_id] = usage
        elif earlier.body_sha256 == usage.body_sha256:
            duplicates += 1
        else:
            conflicts.add(usage.event_id)
    if conflicts:
        ids = sorted(conflicts)
        raise Conflict(
            "IDEMPOTENCY_CONFLICT",
            "These event ids appear more than once with different content: " + ", ".join(ids),
            event_ids=ids,
        )
    return list(seen.values()), duplicates

