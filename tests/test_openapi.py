"""The OpenAPI document: valid, every operation with a security requirement that matches
what it accepts, a stable id and a real schema for each success answer; and a client
generated from it (openapi-python-client) parses the real answers of a live server."""
from __future__ import annotations

import base64
import importlib
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from api.openapi import CALLERS, PUBLIC
from tests.conftest import ADMIN_KEY
from tests.processes import free_port, start_cli, stop, wait_until
from tests.security_support import PERMISSIONS_ALL, SCOPES_ALL

METHODS = ("get", "post", "put", "patch", "delete")


def operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, operation in ops.items():
            if method in METHODS:
                yield method.upper(), path, operation


def test_the_document_is_valid_openapi_3_1(h):
    doc = h.http.get("/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_success_answer_has_a_schema_and_every_operation_an_id(h):
    doc = h.http.get("/openapi.json").json
    ids = []
    for method, path, operation in operations(doc):
        ids.append(operation["operationId"])
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, f"{method} {path} documents no success answer"
        for status, answer in successes.items():
            if status == "204":
                continue
            content = answer.get("content") or {}
            assert content, f"{method} {path} {status} has no content"
            for media, described in content.items():
                schema = described.get("schema") or {}
                assert schema.get("$ref") or schema.get("type") or schema.get("items"), f"{method} {path} {status} {media}: {schema}"
        for status, answer in operation["responses"].items():  # errors too: {"error": {"code", "message"}}
            if "$ref" in answer:
                answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
            if not status.startswith("2"):
                # OTLP answers errors as its protocol says: a google.rpc.Status (ours inside)
                error = "OtlpStatusOut" if path == "/v1/traces" else "ErrorOut"
                assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{error}"}, (method, path, status)
    assert len(ids) == len(set(ids)) >= 60
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)


def test_csv_answers_are_their_own_media_type(h):
    paths = h.http.get("/openapi.json").json["paths"]
    usage = paths["/api/v1/usage"]["get"]["responses"]["200"]["content"]
    assert set(usage) == {"application/json", "text/csv"} and usage["text/csv"]["schema"]["type"] == "string"
    assert set(paths["/api/v1/export/usage"]["get"]["responses"]["200"]["content"]) == {"text/csv"}
    assert set(paths["/api/v1/policies/export"]["get"]["responses"]["200"]["content"]) == {"application/json", "text/csv"}


def test_the_ingest_body_matches_exactly_one_branch(h):
    doc = h.http.get("/openapi.json").json
    body = doc["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**body, "components": doc["components"]})
    event = {"event_id": "e-1", "event_type": "llm_request", "prompt_tokens": 3}
    single, batch = body["oneOf"]
    for instance in (event, {"events": [event, {**event, "event_id": "e-2"}]}):
        validator.validate(instance)  # oneOf: exactly one branch matches

    def branch(schema):
        return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})

    assert branch(single).is_valid(event) and not branch(batch).is_valid(event)
    assert branch(batch).is_valid({"events": [event]}) and not branch(single).is_valid({"events": [event]})
    assert not validator.is_valid({}) and not validator.is_valid({"events": []})
    assert not validator.is_valid({**event, "unknown": 1})


def test_no_description_speaks_of_internal_notes(h):
    text = h.http.get("/openapi.json").get_data(as_text=True)
    assert not re.search(r"SPEC\.md|§|seed \d|issue \d+|helper", text, re.IGNORECASE)


def test_security_schemes_and_requirements(h):
    doc = h.http.get("/openapi.json").json
    schemes = doc["components"]["securitySchemes"]
    assert schemes["agentBasic"] == {**schemes["agentBasic"], "type": "http", "scheme": "basic"}
    assert schemes["apiKey"]["scheme"] == "bearer"
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "ul_session")
    assert (schemes["adminKey"]["in"], schemes["adminKey"]["name"]) == ("header", "X-Admin-API-Key")
    for method, path, operation in operations(doc):
        assert "security" in operation, f"{method} {path}"
        assert (operation["security"] == []) == (f"{method} {path}" in PUBLIC)


def test_the_declared_callers_are_the_accepted_ones(h):
    """A credential the document lists is never refused as unauthenticated; one it does
    not list never gets a success answer."""
    h.tenant("acme", ("prod",))
    agent = h.agent("acme", "prod")
    h.user("root@acme.test", permissions=PERMISSIONS_ALL)
    browser = h.login("root@acme.test")
    key = browser.post("/api/v1/keys", json={"name": "k", "scopes": SCOPES_ALL}).json["key"]
    session = browser.client.get_cookie("ul_session").value
    credentials = {
        "client": ({**agent}, None),
        "key": ({"Authorization": f"Bearer {key}"}, None),
        "admin": ({"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}, None),
        "user": ({"X-Requested-With": "XMLHttpRequest"}, session),
    }
    doc = h.http.get("/openapi.json").json
    checked = 0
    for method, path, _ in operations(doc):
        key_ = f"{method} {path}"
        if key_ in PUBLIC or key_ == "POST /api/v1/auth/logout":
            continue
        concrete = re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) == "{entry_id}" else "x", path)
        for kind, (headers, cookie) in credentials.items():
            client = h.app.test_client()
            if cookie:
                client.set_cookie("ul_session", cookie)
            answer = client.open(concrete, method=method, headers=headers, json=None if method == "GET" else {})
            answer.get_data()  # a streamed CSV answer runs to its end
            if kind in CALLERS[key_]:
                assert answer.status_code != 401, f"{key_} refuses the {kind} credential it documents: {answer.json}"
            else:
                assert answer.status_code >= 400, f"{key_} accepts a {kind} credential it does not document"
            checked += 1
    assert checked >= 4 * 60


# a client generated from the document, against a live server --------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The package openapi-python-client generates from the served document."""
    from tests.conftest import NOW, FixedClock, Harness, make_settings

    where = tmp_path_factory.mktemp("client")
    harness = Harness(make_settings(f"sqlite:///{where}/doc.db", FixedClock(NOW)))
    (where / "openapi.json").write_text(harness.http.get("/openapi.json").get_data(as_text=True))
    harness.close()
    (where / "config.yaml").write_text("post_hooks: []\npackage_name_override: ul_client\nproject_name_override: ul_client\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [str(generator), "generate", "--path", "openapi.json", "--config", "config.yaml", "--meta", "none"],
        cwd=where, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("ul_client")
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == "ul_client" or n.startswith("ul_client.")]:
            del sys.modules[name]


@pytest.fixture
def live(database_url):
    port = free_port()
    process = start_cli(database_url, "serve", "--port", str(port), ADMIN_API_KEY=ADMIN_KEY)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(base, process), 90, "the API to answer")
        yield base
    finally:
        stop(process)


def _healthy(base: str, process) -> bool:
    assert process.poll() is None, process.stdout.read().decode(errors="replace")
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or still loading the app
        return False


def test_a_generated_client_parses_real_answers(generated, live):
    admin = {"X-Admin-API-Key": ADMIN_KEY}
    assert requests.post(f"{live}/api/v1/admin/tenants", json={"tenant_id": "acme", "name": "Acme"}, headers=admin).status_code == 201
    assert requests.post(f"{live}/api/v1/admin/tenants/acme/orgs", json={"org_id": "prod", "name": "Prod"}, headers=admin).status_code == 201
    client = requests.post(f"{live}/api/v1/admin/clients", json={"tenant_id": "acme", "org_id": "prod", "name": "agent"}, headers=admin).json()
    token = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()

    from ul_client import AuthenticatedClient, models
    from ul_client.api.budgets import (
        get_api_v1_budgets,
        get_api_v1_budgets_budget_id_status,
        post_api_v1_budgets,
    )
    from ul_client.api.events import post_api_v1_events
    from ul_client.api.usage import get_api_v1_usage, get_api_v1_usage_summary

    api = AuthenticatedClient(base_url=live, token=token, prefix="Basic", raise_on_unexpected_status=True)
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    batch = models.UsageBatchIn(events=[
        models.UsageIn(event_id=f"gen-{i}", event_type="llm_request", occurred_at=moment, llm_provider="openai",
                       llm_model="gpt-4o", prompt_tokens=100, completion_tokens=50, cost_usd=str(i + 1))
        for i in range(3)
    ])
    ingested = post_api_v1_events.sync(client=api, body=batch)
    assert isinstance(ingested, models.IngestOut), ingested
    assert (ingested.accepted, ingested.duplicates) == (3, 0) and not ingested.additional_properties
    again = post_api_v1_events.sync(client=api, body=models.UsageIn(event_id="gen-0", event_type="llm_request", occurred_at=moment,
                                                                    llm_provider="openai", llm_model="gpt-4o", prompt_tokens=100,
                                                                    completion_tokens=50, cost_usd="1"))
    assert isinstance(again, models.IngestOut) and (again.accepted, again.duplicates) == (0, 1)
    position = ingested.position

    summary = get_api_v1_usage_summary.sync(client=api, min_position=position)
    assert isinstance(summary, models.SummaryOut), summary
    assert (summary.total_events, summary.total_tokens, summary.estimated_cost_usd) == (3, 450, 6)
    assert summary.event_types.additional_properties == {"llm_request": 3} and not summary.additional_properties

    raw = get_api_v1_usage.sync(client=api, granularity=models.GetApiV1UsageGranularity.RAW, min_position=position)
    assert isinstance(raw, models.UsageOut), raw
    events = [models.UsageEventOut.from_dict(item.to_dict()) for item in raw.data]
    assert sorted(e.event_id for e in events) == ["gen-0", "gen-1", "gen-2"]
    assert all(e.llm_model == "gpt-4o" and not e.additional_properties for e in events)
    daily = get_api_v1_usage.sync(client=api, min_position=position)
    assert isinstance(daily, models.UsageOut) and [d.event_count for d in daily.data] == [3]

    created = post_api_v1_budgets.sync(client=api, body=models.BudgetIn(id="monthly", name="Monthly", limit_usd=10.0, period=models.BudgetInPeriod.MONTHLY))
    assert isinstance(created, models.BudgetWrittenOut), created
    listed = get_api_v1_budgets.sync(client=api)  # reads wait for the caller's own writes
    assert isinstance(listed, models.BudgetListOut) and [b.id for b in listed.budgets] == ["monthly"]
    assert not listed.additional_properties and not listed.budgets[0].additional_properties
    status = get_api_v1_budgets_budget_id_status.sync("monthly", client=api)
    assert isinstance(status, models.BudgetStatusOut), status
    assert (status.used, status.limit, status.percentage, status.status) == (6, 10, 60, "warning")
