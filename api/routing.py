"""Routing a request to its tenant's cluster (runtime/clusters.py), before it is
authenticated: only with LEDGER_CLUSTERS set; one cluster needs none of this.

The tenant comes from what the request presents: the admin key's X-Tenant-ID, a client's
Basic id, a portal key's id (from its prefix), a session cookie, a login's e-mail, or
(admin routes) the tenant, client, key or user the path or body names. The directory
says which cluster holds that tenant; the request then reads and writes that cluster's
ledger only (`api.services.services()` answers its Services), so a client only ever sees
its own cluster's positions. A cluster that is down answers 503 CLUSTER_UNAVAILABLE with
Retry-After for its tenants only; a tenant being moved refuses writes the same way. Every
write holds a lease in the directory while it runs (taken before the `moving` flag is
read), so a move knows when no write that passed the check is still in flight.
Anything naming no tenant goes to the first cluster.
"""
from __future__ import annotations

import base64
import binascii
from contextlib import contextmanager

from flask import Flask, g, request

from ledger.errors import Unavailable
from ledger.keys.rules import key_id_for, parse_key
from runtime.clusters import Clusters, session_key

_SAFE = ("GET", "HEAD", "OPTIONS")
TENANTS_PATH = "/api/v1/admin/tenants"
LOGIN_PATH = "/api/v1/auth/login"
SESSION_COOKIE = "ul_session"


def clusters() -> Clusters:
    from flask import current_app

    return current_app.extensions["usage_ledger_clusters"]


def register(app: Flask, services) -> None:
    app.extensions["usage_ledger_clusters"] = Clusters(services.settings, first=services)
    # before the CSRF and admin guards: they already read the routed cluster's settings
    app.before_request_funcs.setdefault(None, []).insert(0, route)
    app.after_request(_remember_placement)
    app.teardown_request(_end_write)


def route() -> None:
    every = clusters()
    if request.method == "POST" and request.path == TENANTS_PATH:
        body = request.get_json(silent=True) or {}
        tenant = body.get("tenant_id") if isinstance(body, dict) else None
        if isinstance(tenant, str) and tenant:
            entry = every.directory.entry(tenant)
            explicit = body.get("cluster") if isinstance(body.get("cluster"), str) else None
            name = entry[0] if entry else every.directory.place(explicit)
            g.placed_tenant = (tenant, name) if not entry else None
            _use(every, name)
        return
    tenant = _tenant_of_request(every)
    if tenant is None:
        return  # the first cluster (the app's own services)
    g.cluster_tenant = tenant
    if request.method not in _SAFE:  # leased before the flag is read: a move waits for it
        g.write_lease = every.directory.begin_write(tenant)
    entry = every.directory.entry(tenant)
    name, moving = entry if entry else (every.first, False)
    if moving and request.method not in _SAFE:
        raise Unavailable(
            "TENANT_MOVING", f"Tenant {tenant} is being moved to another cluster; retry shortly",
            retry_after=2,
        )
    _use(every, name)


def _use(every: Clusters, name: str) -> None:
    g.cluster = name
    g.cluster_services = every.require(name)


def platform_wide(kind: str, payload: dict) -> None:
    """A price or credit-rate override appended to this request's cluster: append it to
    every other cluster too (the outbox keeps it for a cluster that is down). No-op with
    one cluster."""
    from flask import current_app

    every = current_app.extensions.get("usage_ledger_clusters")
    if every is None:
        return
    from runtime.clusters import replicate_platform_event

    positions = replicate_platform_event(every, kind, payload, done=g.get("cluster", every.first))
    g.platform_pending = sorted(name for name, position in positions.items() if position is None)


# What a request has read or raised on one cluster (api/consistency.py): its marks, the read
# models' positions and the marks it raised are that cluster's positions, meaningless on another.
_PER_CLUSTER = ("consistency_marks", "prefetched_marks", "known_positions", "marks_raised_to")


@contextmanager
def _on(cluster_services):
    """Within: services() answers this cluster's, and the request's per-cluster state is its own."""
    before = {name: g.pop(name) for name in (*_PER_CLUSTER, "cluster_services") if name in g}
    g.cluster_services = cluster_services
    try:
        yield
    finally:
        for name in (*_PER_CLUSTER, "cluster_services"):
            g.pop(name, None)
        for name, value in before.items():
            setattr(g, name, value)


def fan_out(read):
    """With several clusters and a request for no one tenant: `read()` run once per
    cluster (services() answering that cluster's), as an Answer naming the clusters that
    did not answer. None with one cluster: the caller reads as it always did."""
    from flask import current_app

    every = current_app.extensions.get("usage_ledger_clusters")
    if every is None or g.get("cluster_tenant"):
        return None

    def on(_name, cluster_services):
        with _on(cluster_services):
            return read()

    return every.fan_out(on)


def elsewhere(read) -> list:
    """`read(services)` on every cluster but this request's ([] with one cluster), for
    checks that must not guess: a cluster that is down answers 503 CLUSTER_UNAVAILABLE."""
    from flask import current_app

    every = current_app.extensions.get("usage_ledger_clusters")
    if every is None:
        return []
    here = g.get("cluster", every.first)
    return [read(every.require(name)) for name in every.names if name != here]


def fan_out_one(name: str, read):
    """`read()` on one named cluster (503 CLUSTER_UNAVAILABLE when it is down)."""
    from flask import current_app

    with _on(current_app.extensions["usage_ledger_clusters"].require(name)):
        return read()


def _end_write(_error=None) -> None:
    """The request has answered (or failed): its write is no longer in flight."""
    lease = g.pop("write_lease", None)
    if lease is not None:
        try:
            clusters().directory.end_write(lease)
        except Exception:  # the directory is down: the lease goes stale on its own
            pass


def _remember_placement(response):
    pending = g.get("platform_pending")
    if pending:
        response.headers["X-Clusters-Pending"] = ",".join(pending)  # they get it when they are back
    placed = g.get("placed_tenant")
    if placed and response.status_code == 201:
        clusters().directory.assign(*placed)
    return response


def _tenant_of_request(every: Clusters) -> str | None:
    headers = request.headers
    auth = headers.get("Authorization", "")
    if "X-Admin-API-Key" in headers and headers.get("X-Tenant-ID"):
        return headers["X-Tenant-ID"]
    if auth[:6].lower() == "basic ":
        try:
            client_id = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return _credential(every, "client", client_id, lambda ledger: ledger.identity.find_client(client_id)) if client_id else None
    if auth[:7].lower() == "bearer ":
        prefix = parse_key(auth[7:].strip())
        if prefix is None:
            return None
        key_id = key_id_for(prefix)
        return _credential(every, "key", key_id, lambda ledger: ledger.keys.find_key(key_id))
    token = request.cookies.get(SESSION_COOKIE)
    if token and not auth and request.path != LOGIN_PATH:
        return _credential(every, "session", session_key(token), lambda ledger: ledger.identity.find_session(token), secret=True)
    return _named_tenant(every)


def _named_tenant(every: Clusters) -> str | None:
    """A tenant named by the path, the query or the body (admin and login routes)."""
    args = request.view_args or {}
    body = request.get_json(silent=True) if request.is_json else None
    body = body if isinstance(body, dict) else {}
    for source in (args, request.args, body):
        tenant = source.get("tenant_id")
        if isinstance(tenant, str) and tenant:
            return tenant
    if "client_id" in args:
        client_id = args["client_id"]
        return _credential(every, "client", client_id, lambda ledger: ledger.identity.find_client(client_id))
    if "key_id" in args:
        key_id = args["key_id"]
        return _credential(every, "key", key_id, lambda ledger: ledger.keys.find_key(key_id))
    email = args.get("email") or (body.get("email") if request.path == LOGIN_PATH else None)
    if isinstance(email, str) and email:
        email = email.strip().lower()
        return _credential(every, "user", email, lambda ledger: ledger.identity.find_user(email))
    return None


def _credential(every: Clusters, kind: str, credential: str, find, *, secret: bool = False) -> str | None:
    """The tenant of a credential: from the directory, else by asking every reachable
    cluster (credentials created before the split, or before first use) and remembering."""
    if len(credential) > 256:
        return None
    tenant = every.directory.tenant_of(kind, credential)
    if tenant is not None:
        return tenant
    for name in every.names:
        if not every.reachable(name):
            continue
        found = find(every.services(name).ledger)
        if found is not None:
            tenant = found.user.tenant_id if kind == "session" else found.tenant_id
            every.directory.remember(kind, credential, tenant)
            return tenant
    return None
