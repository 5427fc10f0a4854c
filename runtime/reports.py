"""The operational reports shared by `/readyz`, `/metrics` and `usage-ledger status`."""
from __future__ import annotations

from sqlalchemy import text

from projections.framework import parked_errors, positions
from projections.ledger_chain import last_checkpoint, sealed_through, signing_status
from projections.registry import all_projections
from runtime.bootstrap import Services


def projection_report(services: Services) -> dict:
    """The ledger's position, each read model's position and lag, and parked errors."""
    head = services.store.max_position()
    with services.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        found = positions(conn)
        errors = parked_errors(conn)
    return {
        "ledger_position": head,
        "projections": {
            p.name: {"position": found.get(p.name, 0), "lag": max(head - found.get(p.name, 0), 0)}
            for p in all_projections()
        },
        "parked_errors": [
            {"projection": e["projection"], "position": e["position"], "event_type": e["event_type"], "error": e["error"]}
            for e in errors
        ],
    }


def tamper_evidence(services: Services) -> dict:
    """How far the hash chain is sealed, the last signed checkpoint and the signing key's state."""
    with services.engine.connect() as conn:
        last = last_checkpoint(conn)
        sealed = sealed_through(conn)
    return {
        "sealed_through": sealed,
        "last_checkpoint": last.as_json() if last else None,
        **signing_status(services.settings),
    }
