"""Fixtures: every test body runs against SQLite and PostgreSQL (a fresh database each),
with an injected clock. Projections are caught up by calling the projector loop directly
(`h.project()`), or by waiting on ledger positions; tests never sleep."""
from __future__ import annotations

import base64
import os
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from api import create_app
from ledger.clock import FixedClock
from ledger.settings import Settings
from projections.framework import catch_up
from projections.registry import all_projections, setup_database
from runtime.bootstrap import bootstrap
from tests.fake_cloudflare import FakeCloudflare

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_KEY = "test-admin-key"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery staple"


# `make test` runs the test files in parallel (pytest-xdist, --dist loadgroup): each file on
# one worker. These files start API and worker processes on PostgreSQL and hold up to about
# 80 connections at once (measured; the server allows 100), so they run one after another
# on one worker, beside at most one other file.
MANY_CONNECTIONS = frozenset({
    "test_budget_hold_races.py", "test_session_consistency.py", "test_workers.py", "test_clusters.py",
    "test_faults.py", "test_bench_smoke.py", "test_docs_examples.py", "test_serve_supervision.py",
    "test_dashboard.py",  # two API processes and a worker: 38 connections on PostgreSQL (measured)
})


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        name = item.path.name
        group = "many-connections" if name in MANY_CONNECTIONS else str(item.path.relative_to(config.rootpath))
        item.add_marker(pytest.mark.xdist_group(group))


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)


def postgres_available() -> bool:
    try:
        _pg_admin().close()
        return True
    except psycopg.Error:
        return False


def require_postgres() -> None:
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and not reachable at {PG_SERVER}")
        pytest.skip("PostgreSQL not reachable")


def new_database_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    require_postgres()
    name = f"ul_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path):
    url = new_database_url(backend, tmp_path)
    yield url
    drop_database(url)


@pytest.fixture
def postgres_url(tmp_path):
    url = new_database_url("postgres", tmp_path)
    yield url
    drop_database(url)


@pytest.fixture
def cloudflare():
    """A fake Cloudflare Access API on 127.0.0.1."""
    fake = FakeCloudflare()
    yield fake
    fake.close()

@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def make_settings(database_url: str, clock, **overrides) -> Settings:
    # no projector runs beside these apps: tests catch the read models up themselves
    # (h.project()); tests/test_session_consistency.py switches session consistency on
    overrides.setdefault("session_consistency", False)
    return Settings(database_url=database_url, admin_api_key=ADMIN_KEY, clock=clock, **overrides)


class Harness:
    """One app on one fresh database, with helpers that speak the API as a user would."""

    def __init__(self, settings: Settings):
        setup_database(settings)
        self.settings = settings
        self.app = create_app(settings)
        self.http = self.app.test_client()
        self.services = bootstrap(settings, writer=True)  # the test's own, like a worker's
        self.store, self.engine = self.services.store, self.services.engine

    def close(self) -> None:
        self.app.extensions["usage_ledger"].close()
        self.services.close()

    # projections ---------------------------------------------------------------------
    def project(self) -> int:
        """Run every projector until it has caught up with the ledger."""
        return min(catch_up(self.engine, self.store, p) for p in all_projections())

    def ledger_count(self) -> int:
        return self.store.count()

    # provisioning --------------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs):
        headers = {"X-Admin-API-Key": ADMIN_KEY, **kwargs.pop("headers", {})}
        return self.http.open(path, method=method, headers=headers, **kwargs)

    def tenant(self, tenant_id: str = "acme", orgs=("prod",)) -> None:
        assert self.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": tenant_id, "name": tenant_id}).status_code == 201
        for org in orgs:
            response = self.admin("POST", f"/api/v1/admin/tenants/{tenant_id}/orgs", json={"org_id": org, "name": org})
            assert response.status_code == 201

    def agent(self, tenant_id: str = "acme", org_id: str = "prod") -> dict:
        """Basic-auth headers of a new agent client."""
        response = self.admin("POST", "/api/v1/admin/clients", json={"tenant_id": tenant_id, "org_id": org_id, "name": "agent"})
        assert response.status_code == 201, response.json
        return basic(response.json["client_id"], response.json["client_secret"])

    def post_events(self, headers: dict, events, **kwargs):
        body = {"events": events} if isinstance(events, list) else events
        return self.http.post("/api/v1/events", json=body, headers=headers, **kwargs)

    # portal users ----------------------------------------------------------
    def user(self, email: str, password: str = PASSWORD, permissions=(), tenant_id: str = "acme", org_id: str = "prod"):
        """Create a portal user through the admin API."""
        response = self.admin(
            "POST",
            "/api/v1/admin/users",
            json={"tenant_id": tenant_id, "org_id": org_id, "email": email, "password": password, "permissions": list(permissions)},
        )
        assert response.status_code == 201, response.json
        return response

    def login(self, email: str, password: str = PASSWORD) -> "PortalSession":
        """A browser-like client logged in as this user (its own cookie jar)."""
        browser = PortalSession(self.app.test_client())
        response = browser.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        return browser

    def portal_user(self, email: str = "ada@acme.test", permissions=(), tenant_id: str = "acme", org_id: str = "prod") -> "PortalSession":
        """Create a user and log in."""
        self.user(email, PASSWORD, permissions, tenant_id, org_id)
        return self.login(email)



class PortalSession:
    """A test client that behaves like the portal's frontend: it keeps the session cookie
    and sends JSON with X-Requested-With on writes (the CSRF rule)."""

    def __init__(self, client):
        self.client = client

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def _write(self, method: str, path: str, json=None, headers=None, **kwargs):
        headers = {"X-Requested-With": "XMLHttpRequest", **(headers or {})}
        if json is None and method != "DELETE" and "data" not in kwargs:
            json = {}
        return self.client.open(path, method=method, json=json, headers=headers, **kwargs)

    def post(self, path: str, json=None, **kwargs):
        return self._write("POST", path, json, **kwargs)

    def put(self, path: str, json=None, **kwargs):
        return self._write("PUT", path, json, **kwargs)

    def delete(self, path: str, **kwargs):
        return self._write("DELETE", path, None, **kwargs)


def basic(client_id: str, secret: str) -> dict:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def settings(database_url, clock) -> Settings:
    return make_settings(database_url, clock)


@pytest.fixture
def h(settings):
    harness = Harness(settings)
    yield harness
    harness.close()


@pytest.fixture
def agent(h) -> dict:
    """A tenant 'acme' with org 'prod' and one agent client's headers."""
    h.tenant("acme", ("prod", "research"))
    return h.agent("acme", "prod")


def usage(event_id: str, **fields) -> dict:
    """A valid llm_request usage event (occurring one hour before NOW)."""
    event = {
        "event_id": event_id,
        "event_type": "llm_request",
        "occurred_at": "2026-11-20T11:00:00Z",
        "llm_provider": "openai",
        "llm_model": "gpt-4o",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "latency_ms": 200,
        "http_status_code": 200,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}
