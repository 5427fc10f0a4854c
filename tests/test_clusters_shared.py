"""Suites written for one cluster, run again with their tenant on the second of two
clusters (issue 22): `h` is a ClusteredHarness whose tenant "acme" is placed on cluster b
(a decoy tenant takes a first), and whose `store` and `engine` are b's, so the same test
bodies check ingest semantics and budget holds through the routing."""
from __future__ import annotations

import pytest

from tests.conftest import drop_database, make_settings, new_database_url
from tests.test_clusters import ClusteredHarness, _drop_on, second_server, server_b  # noqa: F401 (fixtures)
from tests.test_budget_holds import *  # noqa: F401,F403 (the suite, collected again here)
from tests.test_ingest import *  # noqa: F401,F403


@pytest.fixture
def h(server_b, clock):  # noqa: F811
    url_a, url_b = new_database_url("postgres", None), server_b.new_database()
    harness = ClusteredHarness(make_settings(url_a, clock, ledger_clusters=f"a={url_a},b={url_b}"))
    created = harness.admin("POST", "/api/v1/admin/tenants", json={"tenant_id": "decoy", "name": "decoy", "cluster": "a"})
    assert created.status_code == 201
    harness.services = harness.clusters.services("b")
    harness.store, harness.engine = harness.services.store, harness.services.engine
    yield harness
    assert harness.clusters.directory.tenants().get("acme", "b") == "b"  # the suite's tenant lived on b
    harness.close()
    drop_database(url_a)
    _drop_on(server_b, url_b)
