"""Usage ingest: judge every item, then append the new ones atomically (the batch rules of ingest).

Each usage event has its own stream keyed by (tenant, event_id), so a repeated event id is
a duplicate when its content matches what is stored and a conflict (409) when it does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence
from uuid import UUID

from ledger.errors import Conflict, Unavailable
from ledger.journal import Journal
from ledger.pricing.credits import CreditRateBook
from ledger.pricing.prices import PriceBook
from ledger.settings import Settings
from ledger.store import NewEvent, StreamConflict
from ledger.usage.events import Usage, UsageRecorded
from ledger.usage.rules import ItemError, UsageIn, sent_fingerprint, validate_items
from ledger.usage.streams import usage_stream

if TYPE_CHECKING:  # pragma: no cover
    from ledger.budgets.hold_commands import BudgetHolds
    from ledger.actor import Actor

APPEND_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    position: int


class UsageCommands:
    def __init__(
        self,
        journal: Journal,
        settings: Settings,
        books: Callable[[], tuple[PriceBook, CreditRateBook]],
        holds: "BudgetHolds | None" = None,
    ):
        self.journal = journal
        self.store = journal.store
        self.settings = settings
        self.books = books
        self.holds = holds

    def record(self, actor: "Actor", items: Sequence[UsageIn | ItemError]) -> IngestResult:
        """Validate every item, then append the ones not stored yet, all or nothing."""
        prices, credit_rates = self.books()
        usages = validate_items(
            items,
            client_id=actor.client_id,
            now=self.settings.clock.now(),
            backdating_days=self.settings.backdating_days,
            prices=prices,
            credit_rates=credit_rates,
        )
        fresh, duplicates = dedupe_within_batch(usages)
        streams = {usage_stream(actor.tenant_id, u.event_id): u for u in fresh}
        as_sent = {
            item.event_id: sha
            for item in items
            if isinstance(item, UsageIn) and (sha := sent_fingerprint(item)) is not None
        }
        for _ in range(APPEND_ATTEMPTS):
            new, stored_duplicates = self._not_yet_stored(streams, as_sent)
            if not new:
                return IngestResult(0, duplicates + stored_duplicates, self.store.max_position())
            now = self.settings.clock.now()
            try:
                positions = self.journal.append(
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
                    + self._hold_commits(actor, [u for _, u in new], now)
                )
            except StreamConflict:
                continue  # a concurrent writer stored some of these ids first: look again
            return IngestResult(len(new), duplicates + stored_duplicates, max(positions))
        raise Unavailable("INGEST_CONTENDED", "Too many concurrent writers for the same event ids; retry")

    def _hold_commits(self, actor: "Actor", usages: list[Usage], now) -> list[NewEvent]:
        """A usage carrying a held hold's id commits it, in the same transaction."""
        if self.holds is None:
            return []
        events: list[NewEvent] = []
        committing: set[str] = set()
        for u in usages:
            if u.hold_id and u.hold_id not in committing:  # the first usage of a batch commits it
                committing.add(u.hold_id)
                events += self.holds.usage_commit(actor.tenant_id, u, u.hold_id, actor.name, now)
        return events

    def _not_yet_stored(
        self, streams: dict[UUID, Usage], as_sent: dict[str, str]
    ) -> tuple[list[tuple[UUID, Usage]], int]:
        """The usages whose streams hold nothing yet; 409 when a stored one differs (a
        stored event of an older release may carry the hash of occurred_at as written)."""
        stored = self.store.first_events(streams)
        conflicts = sorted(
            u.event_id
            for s, u in streams.items()
            if s in stored
            and stored[s].usage.body_sha256 not in (u.body_sha256, as_sent.get(u.event_id))  # type: ignore[attr-defined]
        )
        if conflicts:
            raise Conflict(
                "IDEMPOTENCY_CONFLICT",
                "These event ids were already recorded with different content: " + ", ".join(conflicts),
                event_ids=conflicts,
            )
        new = [(s, u) for s, u in streams.items() if s not in stored]
        return new, len(streams) - len(new)


def dedupe_within_batch(usages: list[Usage]) -> tuple[list[Usage], int]:
    """(the first of each event id, how many repeats); 409 when a repeat differs."""
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
