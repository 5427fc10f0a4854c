"""Failed credentials: the login throttle and the collapsed audit of failed attempts.

Login is throttled per account (e-mail) and per client address (ledger/identity/throttle.py
has the numbers); the state is in the database (projections/auth_failures.py), so every
API process agrees. The client address is the peer address, or the first address in
X-Forwarded-For that is not a trusted proxy when the peer is one (TRUSTED_PROXIES).

Failed admin-key, client-secret and API-key attempts (wrong, revoked, expired) are written
to the ledger as AccessAttempted at most once per subject per window, with a count.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import request

from api.services import services
from ledger.errors import Throttled
from ledger.identity.throttle import ACCOUNT_LIMIT, ADDRESS_LIMIT
from projections.auth_failures import clear, record_failure, wait_seconds

_NO_LOCKOUT = 10**9


@lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple:
    found = []
    for proxy in proxies:
        try:
            found.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            continue
    return tuple(found)


def _trusted(address: str, proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(proxies))


def client_address() -> str:
    peer = request.remote_addr or "unknown"
    proxies = services().settings.trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop[:64]
    return peer


def _now() -> int:
    return int(services().settings.clock.now().timestamp())


def _login_subjects(email: str) -> tuple[str, str]:
    return f"login:{(email or '').strip().lower()[:254]}", f"login-address:{client_address()}"


def check_login(email: str) -> None:
    """429 TOO_MANY_ATTEMPTS (Retry-After) while the account or the address is locked out."""
    wait = wait_seconds(services().engine, list(_login_subjects(email)), _now())
    if wait:
        raise Throttled(
            "TOO_MANY_ATTEMPTS", f"Too many failed log-ins; try again in {wait} seconds", retry_after=wait
        )


def login_failed(email: str) -> None:
    account, address = _login_subjects(email)
    engine, now = services().engine, _now()
    report = record_failure(engine, account, now, ACCOUNT_LIMIT)
    record_failure(engine, address, now, ADDRESS_LIMIT)
    if report:
        ledger = services().ledger
        user = ledger.identity.find_user(email)
        if user is not None:  # an unknown e-mail belongs to no tenant's log
            ledger.audit.record_access_attempt(
                user.tenant_id, user.org_id, f"user:{user.email}", "USER_LOGIN", user.email, "failure",
                "wrong password", details={"failures": report, "address": client_address()},
            )


def login_succeeded(email: str) -> None:
    clear(services().engine, _login_subjects(email)[0])


def credential_failed(subject: str, tenant_id: str, org_id: str, action: str, target: str, reason: str) -> None:
    """Audit a failed credential, collapsed: one event per subject per window, with a count."""
    report = record_failure(services().engine, subject, _now(), _NO_LOCKOUT)
    if report:
        address = client_address()
        services().ledger.audit.record_access_attempt(
            tenant_id, org_id, f"address:{address}", action, target, "failure", reason,
            details={"failures": report, "address": address},
        )
