"""Licence and node-capacity rules (seed 000): pure functions of the terms, the count of
active nodes and the current time, so every boundary is easy to test with a fixed clock."""
from __future__ import annotations

from datetime import datetime, timedelta

TIERS = ("Developer", "Professional", "Enterprise", "Plus")
EXPIRING_SOON_WITHIN = timedelta(days=30)
CAUTION_PERCENT = 80
WARNING_PERCENT = 90


def percentage(used: int, total: int) -> float | int:
    """used / total in percent, 2 decimals (a whole number when it is one); 0 when total is 0."""
    if total <= 0:
        return 0
    value = round(used * 100 / total, 2)
    return int(value) if value == int(value) else value


def license_status(expires_at: datetime, nodes_total: int, nodes_used: int, now: datetime) -> str:
    """EXPIRED once expires_at is reached; else OVER_LIMIT when more nodes are active than
    licensed; else EXPIRING_SOON when it expires within 30 days (inclusive); else ACTIVE."""
    if now >= expires_at:
        return "EXPIRED"
    if nodes_used > nodes_total:
        return "OVER_LIMIT"
    if expires_at - now <= EXPIRING_SOON_WITHIN:
        return "EXPIRING_SOON"
    return "ACTIVE"


def node_capacity_status(total: int, max_allowed: int) -> str:
    """VIOLATION when more nodes are active than allowed; else WARNING at ≥ 90 %,
    CAUTION at ≥ 80 %, OK below."""
    if total > max_allowed:
        return "VIOLATION"
    if max_allowed <= 0:
        return "OK"
    if total * 100 >= WARNING_PERCENT * max_allowed:
        return "WARNING"
    if total * 100 >= CAUTION_PERCENT * max_allowed:
        return "CAUTION"
    return "OK"
