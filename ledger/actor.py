"""Who is acting: the identity every command records as the author of its events."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who is acting, within which tenant and organization."""

    tenant_id: str
    org_id: str
    name: str  # e.g. "client:cli_123", "admin", "user:a@b.c"
    client_id: str = ""
