"""Read-your-writes: reads wait (bounded) for the read models to pass min_position."""
from __future__ import annotations

from flask import Flask, g, request

from api.services import services
from ledger.errors import Invalid
from projections.framework import wait_for_positions


def reflect(*projection_names: str) -> int:
    """Wait for min_position (query or X-Min-Ledger-Position), then record the position
    this read reflects for the X-Ledger-Position header."""
    raw = request.args.get("min_position") or request.headers.get("X-Min-Ledger-Position") or "0"
    try:
        wanted = int(raw)
        if wanted < 0:
            raise ValueError
    except ValueError:
        raise Invalid("VALIDATION_FAILED", "min_position must be a non-negative integer", field="min_position") from None
    svc = services()
    position = wait_for_positions(
        svc.engine, projection_names, wanted, timeout=svc.settings.read_wait_seconds if wanted else 0
    )
    g.ledger_position = position
    return position


def appended(position: int) -> int:
    g.ledger_position = position
    return position


def register(app: Flask) -> None:
    @app.after_request
    def _position_header(response):
        position = g.get("ledger_position")
        if position is not None:
            response.headers["X-Ledger-Position"] = str(position)
        return response
