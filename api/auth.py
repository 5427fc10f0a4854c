"""Who is calling: agent clients (Basic), the admin key, and later portal sessions and API keys.

Secrets are compared in constant time, and an unknown client costs the same hash
comparison as a known one, so response time does not tell which client ids exist.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from flask import g, request

from api.services import services
from ledger.application import Actor
from ledger.errors import Forbidden, Unauthenticated, Unavailable
from ledger.identity import check_id, secret_matches

_DUMMY_HASH = "0" * 64


@dataclass(frozen=True)
class Principal:
    kind: str  # client | admin
    tenant_id: str
    org_id: str
    actor: str
    client_id: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)

    def as_actor(self) -> Actor:
        return Actor(self.tenant_id, self.org_id, self.actor, self.client_id)

    def can(self, permission: str) -> bool:
        return self.kind == "admin" or permission in self.permissions


def authenticate(*kinds: str) -> Principal:
    """The caller, if it presents credentials of one of the allowed kinds; else 401."""
    header = request.headers.get("Authorization", "")
    if "admin" in kinds and "X-Admin-API-Key" in request.headers:
        principal = _admin()
    elif "client" in kinds and header[:6].lower() == "basic ":
        principal = _client(header[6:])
    else:
        raise Unauthenticated("UNAUTHENTICATED", "Credentials are missing or not accepted here")
    g.principal = principal
    return principal


def require_admin_key() -> Principal:
    """Admin routes: the X-Admin-API-Key header, when ADMIN_API_KEY is configured."""
    configured = services().settings.admin_api_key
    if not configured:
        raise Unavailable("ADMIN_API_NOT_CONFIGURED", "The admin API is not configured (set ADMIN_API_KEY)")
    presented = request.headers.get("X-Admin-API-Key", "")
    if not hmac.compare_digest(presented.encode(), configured.encode()):
        raise Unauthenticated("UNAUTHENTICATED", "A valid X-Admin-API-Key header is required")
    principal = Principal("admin", "", "", "admin")
    g.principal = principal
    return principal


def _admin() -> Principal:
    require_admin_key()
    tenant_id = request.headers.get("X-Tenant-ID", "")
    org_id = request.headers.get("X-Org-ID", "")
    if not tenant_id or not org_id:
        raise Forbidden("TENANT_REQUIRED", "With the admin key, name the tenant and org in X-Tenant-ID and X-Org-ID")
    ledger = services().ledger
    if not ledger.org_exists(tenant_id, org_id):
        raise Forbidden("ORG_FORBIDDEN", f"Organization {org_id} is not part of tenant {tenant_id}")
    return Principal("admin", tenant_id, org_id, "admin", permissions=frozenset({"usage:platform_wide"}))


def _client(encoded: str) -> Principal:
    try:
        client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("UNAUTHENTICATED", "Malformed Basic credentials") from None
    svc = services()
    client = svc.ledger.find_client(client_id) if client_id and len(client_id) <= 64 else None
    matches = secret_matches(secret, client.secret_hash if client else _DUMMY_HASH, svc.settings.secret_pepper)
    if client is None or not matches or client.disabled:
        raise Unauthenticated("UNAUTHENTICATED", "Unknown client, wrong secret or disabled client")
    org_id = request.headers.get("X-Org-ID") or client.org_id
    if org_id != client.org_id:
        check_id("X-Org-ID", org_id)
        if not svc.ledger.org_exists(client.tenant_id, org_id):
            raise Forbidden("ORG_FORBIDDEN", f"Organization {org_id} is not part of this client's tenant")
    return Principal("client", client.tenant_id, org_id, f"client:{client.client_id}", client_id=client.client_id)
