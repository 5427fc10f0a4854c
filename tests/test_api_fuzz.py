"""schemathesis against /openapi.json: every documented operation is called in-process
(WSGI, no network) with examples generated from its schema and with credentials that its
security requirement names; no answer may be a 5xx, and every answer must conform to the
document (status code, content type, body schema). Bounded: a few examples per operation
on SQLite, derandomized so that CI runs the same cases every time."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_KEY, Harness, make_settings, usage
from tests.fake_cloudflare import ACCOUNT, GROUP, TOKEN, FakeCloudflare
from tests.security_support import PERMISSIONS_ALL, SCOPES_ALL

EXAMPLES_PER_OPERATION = 25


def no_server_error(ctx, response, case) -> None:
    """Like schemathesis' not_a_server_error, but a read asked to wait for a ledger position
    beyond the read models (generated min_position) answers 503 NOT_CAUGHT_UP with
    Retry-After by contract (read-your-writes)."""
    if response.status_code == 503 and any(name.lower() == "retry-after" for name in response.headers):
        if '"NOT_CAUGHT_UP"' in response.content.decode(errors="replace"):
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzzed(tmp_path, clock):
    cloudflare = FakeCloudflare()
    h = Harness(make_settings(
        f"sqlite:///{tmp_path}/fuzz.db", clock, deployment_mode="invpc", read_wait_seconds=0.0, cf_api_token=TOKEN, cf_account_id=ACCOUNT,
        cf_access_group_id=GROUP, cf_api_base_url=cloudflare.base_url, cf_api_timeout_seconds=5,
    ))
    h.tenant("acme", ("prod", "research"))
    agent = h.agent("acme", "prod")
    h.user("root@acme.test", permissions=PERMISSIONS_ALL)
    browser = h.login("root@acme.test")
    key = browser.post("/api/v1/keys", json={"name": "fuzz", "scopes": SCOPES_ALL}).json["key"]
    assert h.post_events(agent, [usage(f"f-{i}", user_id="u1", app_id="app1") for i in range(5)]).status_code == 202
    h.http.post("/api/v1/budgets", headers=agent, json={"id": "b1", "name": "b", "limit_usd": 1, "period": "monthly"})
    h.http.post("/api/v1/heartbeats", headers=agent, json={"instance_id": "n1", "instance_type": "agent"})
    h.project()
    session = browser.client.get_cookie("ul_session").value
    h.credentials = {
        "agent": {"headers": agent},
        "key": {"headers": {"Authorization": f"Bearer {key}"}},
        "admin": {"headers": {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}},
        "user": {"headers": {"X-Requested-With": "XMLHttpRequest"}, "cookies": {"ul_session": session}},
    }
    yield h
    h.close()
    cloudflare.close()


def credentials_for(method: str, path: str) -> str:
    if path.startswith(("/api/v1/admin/", "/api/v1/ledger")):
        return "admin"
    if path.startswith(("/api/v1/keys", "/api/v1/docs", "/api/v1/auth", "/api/usage", "/api/v1/events/", "/api/v1/license",
                        "/api/v1/policies", "/api/v1/nodes")):
        return "user"
    if path.startswith("/v1/axon"):
        return "key"
    return "agent"


SCHEME = {"agent": "agentBasic", "key": "apiKey", "admin": "adminKey", "user": "session"}

SKIPPED = {
    ("POST", "/api/v1/auth/logout"): "ends the session the other operations use (tested in test_portal_sessions)",
    ("POST", "/api/v1/admin/licenses/sync"): "calls the License Manager (not configured here: answers without calls)",
}


def test_every_operation_answers_within_the_document_and_never_5xx(fuzzed):
    h = fuzzed
    schema = schemathesis.openapi.from_wsgi("/openapi.json", h.app)
    failures: list[str] = []
    answered: dict[tuple[str, str], list[int]] = {}
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        if (method, path) in SKIPPED:
            continue
        kind = credentials_for(method, path)
        declared = {scheme for requirement in operation.definition.raw["security"] for scheme in requirement}
        assert not declared or SCHEME[kind] in declared, f"{method} {path}: {kind} is not among {declared}"
        auth = h.credentials[kind]
        seen: list[str] = []

        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)))
        def run(case):
            response = case.call(headers=dict(auth["headers"]), cookies=auth.get("cookies"))
            answered.setdefault((method, path), []).append(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS)
            except BaseException as error:  # noqa: BLE001 - collect, do not stop: report every operation at once
                if len(seen) < 2:
                    seen.append(f"{method} {path} → {response.status_code}: {str(error)[:600]}")

        run()
        ran += 1
        failures.extend(seen)
    calls = sum(len(s) for s in answered.values())
    served = {op for op, statuses in answered.items() if any(s < 300 for s in statuses)}
    print(f"schemathesis: {ran} operations, {calls} calls, {len(served)} operations answered 2xx at least once")
    assert ran >= 60 and calls >= ran * EXAMPLES_PER_OPERATION // 2
    assert len(served) >= ran // 2, sorted(set(answered) - served)  # the credentials get past authentication
    assert not failures, "\n\n".join(failures)
