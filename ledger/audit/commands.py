"""Audit commands: record an attempt at an admin-relevant action that failed or was refused.

Every command that an admin may want to see in the audit log runs inside `attempt`, so
failures sit next to successes; no secret, key or hash ever goes into those records.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ledger.actor import Actor
from ledger.audit.events import AccessAttempted
from ledger.errors import DomainError
from ledger.journal import Journal


class AuditCommands:
    def __init__(self, journal: Journal):
        self.journal = journal

    def record_access_attempt(
        self,
        tenant_id: str,
        org_id: str,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        reason: str = "",
        details: dict | None = None,
    ) -> int:
        event = AccessAttempted(
            tenant_id=tenant_id,
            org_id=org_id,
            recorded_at=self.journal.now,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            reason=reason,
            details=details,
        )
        return self.journal.record_fact(event)

    @contextmanager
    def attempt(
        self, actor: Actor, action: str, target: str, details: dict[str, Any] | None = None
    ) -> Iterator[None]:
        """Run a command; when it fails with a domain error, record AccessAttempted
        (outcome denied when forbidden, else failure; the error code as reason) and re-raise."""
        try:
            yield
        except DomainError as error:
            if error.kind != "unavailable":  # database down: nothing can be recorded anyway
                outcome = "denied" if error.kind == "forbidden" else "failure"
                self.record_access_attempt(
                    actor.tenant_id, actor.org_id, actor.name, action, target, outcome,
                    f"{error.code}: {error.message}", **({"details": details} if details else {}),
                )
            raise
