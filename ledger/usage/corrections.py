"""Usage corrections: void a recorded usage event, or amend some of its fields. Each
correction is the next event of the usage event's own stream, so read models subtract or
replace what they counted."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable


from ledger.actor import Actor
from ledger.audit.commands import AuditCommands
from ledger.errors import Conflict, Invalid, NotFound
from ledger.events import LedgerEvent
from ledger.identity.rules import EXTERNAL_ID
from ledger.journal import Journal
from ledger.pricing.credits import CreditRateBook
from ledger.pricing.prices import PriceBook
from ledger.settings import Settings
from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.usage.amendments import amended
from ledger.usage.streams import usage_stream

# Usage fields an amendment may replace; identity and provenance (event_id, occurred_at,
# client, instance, HTTP request) stay as recorded.
AMENDABLE_FIELDS = frozenset(
    {
        "event_type", "operation", "resource_type", "quantity", "user_id", "team_id", "agent_id",
        "workflow_id", "app_id", "knowledge_base_id", "http_status_code", "llm_provider", "llm_model",
        "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "cost_usd", "credits",
        "policies_evaluated", "policy_violations", "success", "metadata",
        "cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens",
    }
)


@dataclass(frozen=True)
class UsageState:
    """The current state of one usage event: its original org, current facts, whether voided."""

    org_id: str
    usage: Usage
    voided: bool
    version: int


class UsageCorrections:
    def __init__(
        self,
        journal: Journal,
        settings: Settings,
        audit: AuditCommands,
        books: Callable[[], tuple[PriceBook, CreditRateBook]],
    ):
        self.journal = journal
        self.settings = settings
        self.audit = audit
        self.books = books

    @property
    def now(self) -> datetime:
        return self.journal.now

    def usage_state(self, tenant_id: str, event_id: str) -> UsageState | None:
        state: UsageState | None = None
        for recorded in self.journal.stream(usage_stream(tenant_id, event_id)):
            event = recorded.event
            if isinstance(event, UsageRecorded):
                state = UsageState(event.org_id, event.usage, False, recorded.version)
            elif state is not None and isinstance(event, UsageVoided):
                state = replace(state, voided=True, version=recorded.version)
            elif state is not None and isinstance(event, UsageAmended):
                state = replace(state, usage=event.current, version=recorded.version)
        return state

    def void_usage(self, actor: Actor, event_id: str, reason: str) -> int:
        with self.audit.attempt(actor, "USAGE_VOID", event_id, {"reason": reason}):
            state = self._correctable(actor, event_id, reason)
            event = UsageVoided(
                tenant_id=actor.tenant_id, org_id=state.org_id, recorded_at=self.now, actor=actor.name,
                event_id=event_id, reason=reason, voided=state.usage,
            )
            return self._correct(actor, event_id, event, state.version)

    def amend_usage(self, actor: Actor, event_id: str, fields: dict[str, Any], reason: str) -> tuple[Usage, int]:
        with self.audit.attempt(actor, "USAGE_AMEND", event_id, {"reason": reason, "fields": sorted(fields or {})}):
            state = self._correctable(actor, event_id, reason)
            if not isinstance(fields, dict) or not fields:
                raise Invalid("VALIDATION_FAILED", "fields must be a non-empty object", field="fields")
            refused = sorted(set(fields) - AMENDABLE_FIELDS)
            if refused:
                raise Invalid(
                    "FIELD_NOT_AMENDABLE",
                    f"These fields cannot be amended: {', '.join(refused)}",
                    field="fields", fields=refused,
                )
            prices, credit_rates = self.books()
            current = amended(
                state.usage, fields, backdating_days=self.settings.backdating_days, prices=prices, credit_rates=credit_rates
            )
            event = UsageAmended(
                tenant_id=actor.tenant_id, org_id=state.org_id, recorded_at=self.now, actor=actor.name,
                event_id=event_id, reason=reason, fields=fields, previous=state.usage, current=current,
            )
            position = self._correct(actor, event_id, event, state.version)
        return current, position

    def _correctable(self, actor: Actor, event_id: str, reason: str) -> UsageState:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
            raise Invalid("VALIDATION_FAILED", "reason is required (at most 1,000 characters)", field="reason")
        state = self.usage_state(actor.tenant_id, event_id) if EXTERNAL_ID.match(event_id or "") else None
        if state is None:
            raise NotFound("USAGE_NOT_FOUND", f"Usage event {event_id} not found")
        if state.voided:
            raise Conflict("USAGE_ALREADY_VOIDED", f"Usage event {event_id} is already voided")
        return state

    def _correct(self, actor: Actor, event_id: str, event: LedgerEvent, version: int) -> int:
        position = self.journal.try_append(usage_stream(actor.tenant_id, event_id), event, version)
        if position is None:
            raise Conflict("CONCURRENT_UPDATE", f"Usage event {event_id} changed meanwhile; retry")
        return position
