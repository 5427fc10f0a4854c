"""Who is calling: agent clients (Basic), the admin key, portal sessions (cookie) and
portal API keys (Bearer).

Secrets are compared in constant time, and an unknown client costs the same hash
comparison as a known one, so response time does not tell which client ids exist.

Sessions live in the ledger (UserLoggedIn / UserLoggedOut in a stream derived from a hash
of the cookie's random token), so every API process and host sees the same sessions and
a logout takes effect everywhere at once. Cookie-authenticated writes must carry a JSON
body and the X-Requested-With header (CSRF), checked before anything else runs.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, g, request

from api.consistency import prefetch
from api.services import services
from api.throttle import client_address, credential_failed
from ledger.actor import Actor
from ledger.errors import Forbidden, Unauthenticated, Unavailable
from ledger.identity.commands import client_stream
from ledger.identity.rules import Client, check_id, secret_matches
from ledger.identity.rules import Session
from ledger.keys.rules import effective_scopes, key_id_for, parse_key

SESSION_COOKIE = "ul_session"
LOGIN_PATH = "/api/v1/auth/login"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_DUMMY_HASH = "0" * 64
_CACHED_CLIENTS = 10_000  # beyond this many, the cache starts over


@dataclass(frozen=True)
class Principal:
    kind: str  # client | admin | user | key
    tenant_id: str
    org_id: str
    actor: str
    client_id: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)  # a key's scopes for kind "key"
    email: str = ""
    key_id: str = ""
    session: Any = field(default=None, compare=False, repr=False)

    def as_actor(self) -> Actor:
        return Actor(self.tenant_id, self.org_id, self.actor, self.client_id)

    @property
    def mark_key(self) -> str:
        """Whose writes this request reads (api/consistency.py): the session, key, client or admin key."""
        if self.kind == "user":
            return f"session:{self.session.session_id}"
        return "admin" if self.kind == "admin" else f"{self.kind}:{self.key_id or self.client_id}"

    def can(self, permission: str) -> bool:
        return self.kind == "admin" or permission in self.permissions


def find_session(token: str) -> Session | None:
    return services().ledger.identity.find_session(token)


def authenticate(*kinds: str, scope: str | None = None) -> Principal:
    """The caller, if it presents credentials of one of the allowed kinds; else 401.
    `scope`: the API-key scope this route needs (403 INSUFFICIENT_SCOPE without it)."""
    header = request.headers.get("Authorization", "")
    if "admin" in kinds and "X-Admin-API-Key" in request.headers:
        principal = _admin()
    elif "client" in kinds and header[:6].lower() == "basic ":
        principal = _client(header[6:])
    elif "key" in kinds and header[:7].lower() == "bearer ":
        principal = _key(header[7:].strip())
    elif "user" in kinds and not header and "X-Admin-API-Key" not in request.headers and request.cookies.get(SESSION_COOKIE):
        principal = _user(request.cookies[SESSION_COOKIE])
    else:
        raise Unauthenticated("UNAUTHENTICATED", "Credentials are missing or not accepted here")
    if scope and principal.kind == "key" and scope not in principal.permissions:
        raise Forbidden("INSUFFICIENT_SCOPE", f"This API key needs the {scope} scope")
    g.principal = principal
    return principal


def require_permission(principal: Principal, permission: str) -> Principal:
    if not principal.can(permission):
        raise Forbidden("PERMISSION_DENIED", f"This needs the {permission} permission", permission=permission)
    return principal


def _user(token: str) -> Principal:
    session = find_session(token)
    if session is None:
        raise Unauthenticated("SESSION_INVALID", "The session has expired or ended; log in again")
    user = session.user
    return Principal(
        "user", user.tenant_id, user.org_id, f"user:{user.email}",
        permissions=frozenset(user.permissions), email=user.email, session=session,
    )


def _key(presented: str) -> Principal:
    ledger = services().ledger
    try:
        key = ledger.keys.authenticate_key(presented)
    except Unauthenticated as error:
        prefix = parse_key(presented)
        known = ledger.keys.find_key(key_id_for(prefix)) if prefix else None
        if known is not None:
            credential_failed(f"key:{known.key_id}", known.tenant_id, known.org_id, "API_KEY_AUTH", known.key_id, error.code)
        raise
    creator_permissions = None
    if key.creator_email:
        creator = ledger.identity.find_user(key.creator_email)
        if creator is None or creator.disabled:
            raise Unauthenticated("KEY_CREATOR_DISABLED", "The user who created this API key is disabled")
        creator_permissions = creator.permissions
    ledger.keys.record_key_use(key)
    return Principal(
        "key", key.tenant_id, key.org_id, f"key:{key.key_id}", client_id=key.key_id,
        permissions=frozenset(effective_scopes(key.scopes, creator_permissions)), key_id=key.key_id,
    )


def csrf_guard() -> None:
    """Cookie-authenticated writes need a JSON body and X-Requested-With (which a
    cross-site form cannot send). Requests authenticated by a header are not affected."""
    if request.method in _SAFE_METHODS or not request.cookies.get(SESSION_COOKIE) or request.path == LOGIN_PATH:
        return
    if request.headers.get("Authorization") or "X-Admin-API-Key" in request.headers:
        return
    if not request.headers.get("X-Requested-With"):
        raise Forbidden("CSRF_CHECK_FAILED", "Cookie-authenticated writes need the X-Requested-With header")
    if request.method != "DELETE" and not request.is_json:
        raise Forbidden("CSRF_CHECK_FAILED", "Cookie-authenticated writes need a JSON body (Content-Type: application/json)")


ADMIN_PREFIX = "/api/v1/admin/"
PORTAL_ADMIN_ENDPOINTS = ("audit_log.audit_log", "audit_log.audit_entry")  # portal admins read these too


def admin_guard() -> None:
    """Everything under /api/v1/admin needs the admin key, checked before the body or the
    query is parsed: other credentials get 401, never a validation answer. Each handler
    still checks it too."""
    if request.path.startswith(ADMIN_PREFIX) and request.endpoint not in PORTAL_ADMIN_ENDPOINTS:
        require_admin_key()


def register(app: Flask) -> None:
    app.before_request(csrf_guard)
    app.before_request(admin_guard)


def require_admin_key() -> Principal:
    """Admin routes: the X-Admin-API-Key header, when ADMIN_API_KEY is configured."""
    configured = services().settings.admin_api_key
    if not configured:
        raise Unavailable("ADMIN_API_NOT_CONFIGURED", "The admin API is not configured (set ADMIN_API_KEY)")
    presented = request.headers.get("X-Admin-API-Key", "")
    if not hmac.compare_digest(presented.encode(), configured.encode()):
        address = client_address()
        credential_failed(f"admin-key:{address}", "", "", "ADMIN_KEY_AUTH", address, "wrong admin key")
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
    if not ledger.identity.org_exists(tenant_id, org_id):
        raise Forbidden("ORG_FORBIDDEN", f"Organization {org_id} is not part of tenant {tenant_id}")
    return Principal("admin", tenant_id, org_id, "admin", permissions=frozenset({"usage:platform_wide"}))


def _client(encoded: str) -> Principal:
    try:
        client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("UNAUTHENTICATED", "Malformed Basic credentials") from None
    svc = services()
    client = _current_client(svc, client_id) if client_id and len(client_id) <= 64 else None
    matches = secret_matches(secret, client.secret_hash if client else _DUMMY_HASH, svc.settings.secret_pepper)
    if client is None or not matches or client.disabled:
        if client is not None:
            reason = "disabled client" if matches else "wrong client secret"
            credential_failed(f"client:{client.client_id}", client.tenant_id, client.org_id, "CLIENT_AUTH", client.client_id, reason)
        raise Unauthenticated("UNAUTHENTICATED", "Unknown client, wrong secret or disabled client")
    org_id = request.headers.get("X-Org-ID") or client.org_id
    if org_id != client.org_id:
        check_id("X-Org-ID", org_id)
        if not svc.ledger.identity.org_exists(client.tenant_id, org_id):
            raise Forbidden("ORG_FORBIDDEN", f"Organization {org_id} is not part of this client's tenant")
    return Principal("client", client.tenant_id, org_id, f"client:{client.client_id}", client_id=client.client_id)


def _current_client(svc, client_id: str) -> Client | None:
    """The client as its stream says now, without reading the stream while it has not
    moved: one query reads the stream's version together with the marks and read-model
    positions the request needs anyway (api/consistency.py `prefetch`). A disabled client
    or a rotated secret moves the stream, so every API process sees it on the next request,
    whichever process or command wrote it. Unknown ids are not cached (the query answers
    no version for them)."""
    cache = svc.credentials
    cached = cache.get(client_id)
    tenant_id = cached[1].tenant_id if cached else ""
    version = prefetch(f"client:{client_id}", tenant_id, client_stream(client_id))
    if version is None:
        cache.pop(client_id, None)
        return None
    if cached is not None and cached[0] == version:
        return cached[1]
    client = svc.ledger.identity.find_client(client_id)
    if client is None:
        return None
    if len(cache) >= _CACHED_CLIENTS:
        cache.clear()
    cache[client_id] = (version, client)
    if not tenant_id:  # the marks read above were not the tenant's: read them with the principal
        g.pop("prefetched_marks", None)
    return client
