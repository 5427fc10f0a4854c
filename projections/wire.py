"""How values leave the service, in every answer and every webhook: money as a JSON number
rounded to 6 decimals, whole-or-decimal numbers, UTC times with Z."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

_SIX = Decimal("0.000001")


def money(value: Decimal) -> float:
    return float(value.quantize(_SIX, rounding=ROUND_HALF_EVEN))


def number(value: Decimal) -> int | float:
    """A whole number as an int, anything else as a float (50 → 50, 99.9 → 99.9)."""
    return int(value) if value == value.to_integral_value() else float(value)


def timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def event_time(moment: datetime | None) -> str | None:
    """An event or record time: RFC 3339 UTC with exactly 6 fractional digits, in every row
    and answer (period bounds, `since` and dates keep their own forms)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
