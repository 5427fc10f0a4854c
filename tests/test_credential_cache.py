"""The per-process credential cache (api/auth.py): agent clients are not rebuilt from their
stream on every request, yet a disabled client or a rotated secret is refused at once by
every API process, whichever process or command made the change."""
from __future__ import annotations

import pytest

from api import create_app
from tests.conftest import Harness, basic, make_settings, usage


@pytest.fixture(params=[False, True], ids=["marks-off", "marks-on"])
def two(request, database_url, clock):
    """Two API processes (two apps) on one database, and the test's own services."""
    settings = make_settings(database_url, clock, session_consistency=request.param)
    h = Harness(settings)
    other = create_app(settings)
    yield h, other.test_client()
    other.extensions["usage_ledger"].close()
    h.close()


def _check(http, headers):
    return http.post("/api/v1/budgets/check", json={"llm_model": "gpt-4o"}, headers=headers)


def test_a_disabled_client_is_refused_at_once_by_every_process(two):
    h, other = two
    h.tenant("acme")
    response = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "a"})
    client_id, secret = response.json["client_id"], response.json["client_secret"]
    headers = basic(client_id, secret)
    for n, http in enumerate((h.http, other)):  # both processes have the client cached
        assert http.post("/api/v1/events", json={"events": [usage(f"e-{n}")]}, headers=headers).status_code == 202
    h.project()
    for http in (h.http, other):
        assert _check(http, headers).status_code == 200
    assert h.admin("DELETE", f"/api/v1/admin/clients/{client_id}").status_code == 204
    for http in (other, h.http):
        assert http.post("/api/v1/events", json={"events": [usage("late")]}, headers=headers).status_code == 401
        assert _check(http, headers).status_code == 401
        assert http.get("/api/v1/usage/summary", headers=headers).status_code == 401


def test_a_rotated_secret_is_refused_at_once_even_when_no_api_process_rotated_it(two):
    h, other = two
    h.tenant("acme")
    response = h.admin("POST", "/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "a"})
    client_id, secret = response.json["client_id"], response.json["client_secret"]
    h.project()
    for http in (h.http, other):
        assert _check(http, basic(client_id, secret)).status_code == 200
    rotated = h.services.ledger.identity.rotate_client_secret(client_id, "cli")  # as the command line does
    h.project()
    for http in (h.http, other):
        assert _check(http, basic(client_id, secret)).status_code == 401
        assert _check(http, basic(client_id, rotated.client_secret)).status_code == 200
    assert _check(other, basic(client_id, "wrong")).status_code == 401
    assert _check(other, basic("cli_unknown", secret)).status_code == 401
