"""Auth and limits (issue 10, cases 11 and 13), enumerated from the app itself (url_map and
/openapi.json), so that a new endpoint is covered without editing these tests:

- revoked and expired API keys answer 401 on every endpoint that takes API keys, and do not
  touch last_used_at;
- agent clients, API keys, portal users, a wrong admin key and no credentials answer 401/403
  on every /api/v1/admin route (the portal-admin audit log aside);
- tenant_id / org_id / client_id in the body of every write endpoint are rejected or ignored:
  nothing is ever appended for another tenant, org or client;
- a body over the limit answers 413 JSON on every endpoint that takes a JSON body; JSON
  nested thousands deep answers 422 there (never 500);
- page sizes above the documented cap answer 422 on every paginated endpoint;
- metadata, host_info, policy rules and amended metadata too deep or too large answer 422.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ADMIN_KEY, PASSWORD, usage

OTHER = {"tenant_id": "other-t", "org_id": "other-org"}
ALL_SCOPES = ["read:usage", "read:policies", "write:logs", "read:audit", "read:ledger", "usage:platform_wide"]
PORTAL_ADMIN_ROUTES = {"/api/v1/admin/audit-log", "/api/v1/admin/audit-log/{entry_id}"}
BIG = 6 * 1024 * 1024


def admin_for(tenant="acme", org="prod") -> dict:
    return {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": tenant, "X-Org-ID": org}


def operations(h) -> list[tuple[str, str, dict]]:
    """(METHOD, OpenAPI path, operation) of every documented operation."""
    doc = h.http.get("/openapi.json").json
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) == "{entry_id}" else "x", path)


@pytest.fixture
def acme(h):
    """Tenant acme (orgs prod, research) and tenant other-t, with every kind of credential."""
    h.tenant("acme", ("prod", "research"))
    h.tenant("other-t", ("other-org",))
    h.agent_headers = h.agent("acme", "prod")
    h.other_client = h.admin("POST", "/api/v1/admin/clients", json={**OTHER, "name": "other"}).json["client_id"]
    h.user("root@acme.test", permissions=["admin", "permission.billing.manage", "permission.tenant.superuser", "usage:platform_wide"])
    h.browser = h.login("root@acme.test")
    return h


def new_key(h, **body) -> dict:
    response = h.http.post("/api/v1/keys", headers=admin_for(), json={"name": "k", "scopes": ALL_SCOPES, **body})
    assert response.status_code == 201, response.json
    return response.json


def bearer(key: dict) -> dict:
    return {"Authorization": f"Bearer {key['key']}"}


# case 11: keys ---------------------------------------------------------------------------
KEY_OPERATIONS = {
    ("POST", "/api/v1/events"), ("POST", "/v1/traces"),
    ("GET", "/api/v1/usage"), ("GET", "/api/v1/usage/summary"), ("GET", "/api/v1/export/usage"),
    ("GET", "/v1/axon/usage"), ("GET", "/v1/axon/audit"),
    ("GET", "/api/v1/license/status"), ("GET", "/api/v1/nodes"), ("GET", "/api/v1/nodes/status"),
    ("GET", "/api/v1/nodes/{instance_id}"), ("GET", "/api/v1/policies/export"),
    ("GET", "/api/v1/ledger"), ("GET", "/api/v1/ledger/checkpoints"),
}


def _request_as(h, method, path, headers):
    body = {"events": [usage("k-1")]} if path == "/api/v1/events" else ({} if method in ("POST", "PUT") else None)
    return h.http.open(concrete(path), method=method, headers=headers, json=body)


def test_revoked_and_expired_keys_get_401_on_every_endpoint_that_takes_keys(acme, clock):
    h = acme
    valid, revoked, expiring = new_key(h), new_key(h), new_key(h, expires_in_days=1)
    assert h.http.delete(f"/api/v1/keys/{revoked['id']}", headers=admin_for()).status_code == 204
    h.project()
    clock.advance(days=1, seconds=1)
    taking_keys = set()
    for method, path, _ in operations(h):
        if _request_as(h, method, path, {}).status_code not in (401, 403, 422):
            continue  # needs no credentials at all
        answer = _request_as(h, method, path, bearer(valid))
        assert answer.status_code < 500, (method, path, answer.json)
        if answer.status_code in (400, 401, 422):
            continue  # keys are not accepted here (or the request never reached authentication)
        taking_keys.add((method, path))
        for key in (revoked, expiring):
            refused = _request_as(h, method, path, bearer(key))
            assert refused.status_code == 401, (method, path, key["id"], refused.json)
            assert refused.json["error"]["code"]
    assert taking_keys == KEY_OPERATIONS
    h.project()
    for key in (revoked, expiring):
        shown = h.http.get(f"/api/v1/keys/{key['id']}", headers=admin_for()).json
        assert "last_used_at" not in shown, shown  # refused keys are not "used"
    assert "last_used_at" in h.http.get(f"/api/v1/keys/{valid['id']}", headers=admin_for()).json


# case 11: admin routes -------------------------------------------------------------------
def test_every_admin_route_refuses_every_credential_but_the_admin_key(acme):
    h = acme
    key = new_key(h)
    strangers = {
        "agent client": h.agent_headers,
        "api key": bearer(key),
        "wrong admin key": {"X-Admin-API-Key": "not-the-key"},
        "nobody": {},
    }
    admin_ops = [(m, p) for m, p, _ in operations(h) if p.startswith("/api/v1/admin/")]
    assert len(admin_ops) >= 20
    for method, path in admin_ops:
        for who, headers in strangers.items():
            body = {"tenant_id": "acme", "org_id": "prod", "name": "x"} if method in ("POST", "PUT") else None
            answer = h.http.open(concrete(path), method=method, headers=headers, json=body)
            assert answer.status_code in (401, 403), (method, path, who, answer.status_code, answer.json)
            assert answer.json["error"]["code"] in ("UNAUTHENTICATED", "FORBIDDEN", "PERMISSION_DENIED")
        if path not in PORTAL_ADMIN_ROUTES:
            body = {"tenant_id": "acme"} if method in ("POST", "PUT") else None
            answer = h.browser.client.open(
                concrete(path), method=method, json=body, headers={"X-Requested-With": "XMLHttpRequest"}
            )
            assert answer.status_code in (401, 403), (method, path, "portal admin", answer.json)
    # and the portal-admin routes refuse a portal user without the admin permission
    h.user("plain@acme.test")
    plain = h.login("plain@acme.test")
    for path in PORTAL_ADMIN_ROUTES:
        assert plain.get(concrete(path)).status_code == 403


# case 11: mass assignment ----------------------------------------------------------------
def _write_cases(h, event_id: str) -> dict[tuple[str, str], tuple[str, dict]]:
    """Every non-admin write endpoint with a body: (who, a valid body)."""
    return {
        ("POST", "/api/v1/events"): ("agent", {"events": [usage(event_id)]}),
        ("POST", "/api/v1/heartbeats"): ("agent", {"instance_id": "n-1", "instance_type": "agent"}),
        ("POST", "/api/v1/budgets"): ("agent", {"id": f"b-{event_id}", "name": "b", "limit_usd": 5, "period": "daily"}),
        ("PUT", "/api/v1/budgets/{budget_id}"): ("agent", {"name": "renamed"}),
        ("POST", "/api/v1/budgets/check"): ("agent", {"estimated_cost_usd": 1}),
        ("POST", "/api/v1/budgets/holds/{hold_id}/commit"): ("agent", {"actual_cost_usd": 1}),
        ("POST", "/api/v1/keys"): ("user", {"name": "k"}),
        ("POST", "/api/v1/events/{event_id}/void"): ("user", {"reason": "wrong"}),
        ("POST", "/api/v1/events/{event_id}/amend"): ("user", {"reason": "wrong", "fields": {"latency_ms": 1}}),
        ("POST", "/api/v1/docs/access/grant"): ("user", {"email": "r@acme.test"}),
        ("POST", "/api/v1/docs/access/revoke"): ("user", {"email": "r@acme.test"}),
        ("POST", "/api/v1/auth/login"): ("nobody", {"email": "root@acme.test", "password": PASSWORD}),
        ("POST", "/api/v1/integrations/litellm"): ("agent", [{
            "id": f"lt-{event_id}", "endTime": 1795174200, "model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1,
        }]),
        ("POST", "/v1/traces"): ("agent", {"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0" * 31 + "1", "spanId": "0" * 15 + "2", "name": "chat", "endTimeUnixNano": "1795174200000000000",
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "3"}}]}]}]}]}),
        # last: it ends the user's sessions and sets a new cookie in the same browser
        ("POST", "/api/v1/auth/password"): ("user", {"current_password": PASSWORD, "new_password": PASSWORD}),
    }


NO_BODY_WRITES = {
    ("DELETE", "/api/v1/budgets/{budget_id}"), ("DELETE", "/api/v1/keys/{key_id}"), ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/budgets/{budget_id}/webhook-secret/rotate"),
    ("POST", "/api/v1/budgets/holds/{hold_id}/release"),
}


def test_tenant_org_and_client_ids_in_write_bodies_are_rejected_or_ignored(acme):
    h = acme
    writes = {(m, p) for m, p, _ in operations(h) if m != "GET" and not p.startswith("/api/v1/admin/")}
    assert writes == set(_write_cases(h, "x")) | NO_BODY_WRITES
    foreign = {**OTHER, "client_id": h.other_client}
    start = h.store.max_position()
    answers = {}
    for n, field in enumerate(foreign):
        assert h.post_events(h.agent_headers, [usage(f"target-{n}")]).status_code == 202
        assert h.http.post("/api/v1/budgets", headers=h.agent_headers,
                           json={"id": f"bud-{n}", "name": "b", "limit_usd": 5, "period": "daily"}).status_code == 201
        for (method, path), (who, body) in _write_cases(h, f"m-{n}").items():
            body = json.loads(json.dumps(body))
            if path == "/api/v1/events":
                body["events"][0][field] = foreign[field]
            elif path.endswith("/amend"):
                body["fields"][field] = foreign[field]
            elif path.endswith("/litellm"):
                body[0][field] = foreign[field]  # a LiteLLM payload's unknown keys are not mapped
            else:
                body[field] = foreign[field]
            url = path.replace("{budget_id}", f"bud-{n}").replace("{event_id}", f"target-{n}")
            if who == "user":
                answer = h.browser.client.open(url, method=method, json=body, headers={"X-Requested-With": "XMLHttpRequest"})
            else:
                answer = h.http.open(url, method=method, json=body, headers=h.agent_headers if who == "agent" else {})
            answers[(method, path, field)] = answer.status_code
            assert answer.status_code < 500, (method, path, field, answer.json)
            assert answer.status_code in (200, 201, 202, 404, 422), (method, path, field, answer.status_code, answer.json)
            if answer.status_code < 300 and answer.is_json:
                assert foreign[field] not in json.dumps(answer.json), (method, path, field, answer.json)
    assert sum(1 for s in answers.values() if s == 422) >= 20  # mostly rejected outright
    # whatever was accepted, every event appended belongs to acme and names no foreign client
    for notification in h.store.read_window(start, h.store.max_position()):
        stored = notification.state.decode() if isinstance(notification.state, bytes) else str(notification.state)
        assert "other-t" not in stored and "other-org" not in stored and h.other_client not in stored, stored[:300]


# case 13: sizes, depth, caps --------------------------------------------------------------
def _json_writes(h) -> list[tuple[str, str]]:
    return [(m, p) for m, p, op in operations(h) if "requestBody" in op]


def _send_as_owner(h, method, path, data: bytes):
    """Send raw JSON with credentials that the endpoint accepts."""
    headers = {"Content-Type": "application/json"}
    url = concrete(path)
    if path.startswith("/api/v1/admin/"):
        return h.http.open(url, method=method, data=data, headers={**headers, "X-Admin-API-Key": ADMIN_KEY})
    if path.startswith(("/api/v1/keys", "/api/v1/docs", "/api/v1/events/")):
        return h.browser.client.open(url, method=method, data=data, headers={**headers, "X-Requested-With": "XMLHttpRequest"})
    if path == "/api/v1/auth/login":
        return h.http.open(url, method=method, data=data, headers=headers)
    return h.http.open(url, method=method, data=data, headers={**headers, **h.agent_headers})


def test_every_json_write_answers_413_json_to_an_oversized_body(acme):
    h = acme
    writes = _json_writes(h)
    assert len(writes) >= 20
    before = h.ledger_count()
    body = b'{"name": "' + b"x" * BIG + b'"}'
    for method, path in writes:
        answer = _send_as_owner(h, method, path, body)
        assert answer.status_code == 413, (method, path, answer.status_code, answer.get_data()[:200])
        assert answer.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert h.ledger_count() == before


def test_every_json_write_answers_422_to_json_nested_too_deeply(acme):
    h = acme
    deep = ('{"events": ' + "[" * 50_000 + "]" * 50_000 + "}").encode()
    for method, path in _json_writes(h):
        answer = _send_as_owner(h, method, path, deep)
        assert answer.status_code in (400, 422), (method, path, answer.status_code, answer.get_data()[:200])
        assert answer.is_json and answer.json["error"]["code"]


PAGINATED = {
    "/api/v1/usage", "/api/v1/usage/records", "/api/v1/budgets", "/api/v1/budgets/{budget_id}/alerts",
    "/v1/axon/audit", "/api/v1/admin/audit-log", "/api/v1/ledger", "/api/v1/ledger/checkpoints",
    "/api/usage/top-consumers",
}


def test_page_sizes_above_the_documented_cap_answer_422_everywhere(acme):
    h = acme
    capped = []
    for method, path, op in operations(h):
        for param in op.get("parameters", []):
            schema = param.get("schema", {})
            if param["in"] == "query" and schema.get("type") == "integer" and "maximum" in schema:
                capped.append((path, param["name"], schema["maximum"]))
    paged = {path for path, name, _ in capped if name in ("limit", "per_page")}
    assert PAGINATED <= paged, f"paginated endpoints without a documented cap: {PAGINATED - paged}"
    for path, name, maximum in capped:
        url = f"{concrete(path)}?{name}={maximum + 1}"
        for headers in (admin_for(), h.agent_headers):
            answer = h.http.get(url, headers={**headers, "X-Admin-API-Key": ADMIN_KEY} if path.startswith("/api/v1/ledger") else headers)
            assert answer.status_code == 422, (url, answer.status_code, answer.json)
            assert answer.json["error"]["code"] == "VALIDATION_FAILED"
        at_cap = h.http.get(f"{concrete(path)}?{name}={maximum}", headers=admin_for())
        assert at_cap.status_code != 422 or name not in (at_cap.json["error"].get("fields") or {}), (url, at_cap.json)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_deep_or_huge_metadata_answers_422_wherever_metadata_is_taken(acme):
    h = acme
    agent = h.agent_headers
    assert h.post_events(agent, [usage("meta-ok", metadata=_nested(8))]).status_code == 202
    for metadata in (_nested(9), {"blob": "x" * 9000}, _nested(400)):
        assert h.post_events(agent, [usage("meta-bad", metadata=metadata)]).status_code == 422
    heartbeat = {"instance_id": "n-1", "instance_type": "agent"}
    assert h.http.post("/api/v1/heartbeats", headers=agent, json={**heartbeat, "host_info": _nested(8)}).status_code == 202
    for info in (_nested(9), {"blob": "x" * 9000}, _nested(400)):
        answer = h.http.post("/api/v1/heartbeats", headers=agent, json={**heartbeat, "host_info": info})
        assert answer.status_code == 422, answer.json
    policy = {"tenant_id": "acme", "org_id": "prod", "name": "p"}
    for rules in (_nested(33), {"blob": "x" * 40_000}):
        answer = h.admin("POST", "/api/v1/admin/policies", json={**policy, "rules": rules})
        assert answer.status_code == 422, answer.json
    for metadata in (_nested(9), {"blob": "x" * 9000}):
        answer = h.browser.post("/api/v1/events/meta-ok/amend", json={"reason": "r", "fields": {"metadata": metadata}})
        assert answer.status_code == 422, answer.json


def test_integers_beyond_what_the_database_holds_answer_4xx_not_500(acme):
    """Every unbounded integer in a query or a path (offsets, positions, cursors, ids) at 10**30."""
    h = acme
    budget = {"id": "b1", "name": "b", "limit_usd": 5, "period": "daily"}
    assert h.http.post("/api/v1/budgets", headers=h.agent_headers, json=budget).status_code == 201
    probed = 0
    for method, path, op in operations(h):
        if method != "GET":
            continue
        url = concrete(path).replace("/budgets/x", "/budgets/b1").replace("/audit-log/1", f"/audit-log/{10**30}")
        headers = {"X-Admin-API-Key": ADMIN_KEY} if path.startswith(("/api/v1/admin/", "/api/v1/ledger")) else h.agent_headers
        if path == "/api/v1/admin/audit-log/{entry_id}":
            answer = h.http.get(url, headers=headers)
            probed += 1
            assert 400 <= answer.status_code < 500, (url, answer.json)
        for param in op.get("parameters", []):
            schema = param.get("schema", {})
            if param["in"] != "query" or schema.get("type") != "integer" or "maximum" in schema:
                continue
            if param["name"] == "min_position":
                continue  # answers 503 NOT_CAUGHT_UP after waiting, by contract
            answer = h.http.get(f"{url}?{param['name']}={10**30}", headers=headers)
            probed += 1
            assert answer.status_code < 500, (url, param["name"], answer.json)
            assert answer.is_json
    assert probed >= 8
