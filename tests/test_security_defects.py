"""Smaller defects found by probing: bounded read waits, CSV injection, timestamps out of
range, malformed JSON, what /metrics and /readyz show."""
from __future__ import annotations

import threading
from dataclasses import replace

from api import create_app
from api.formats import csv_cell, csv_line
from tests.conftest import ADMIN_KEY, usage


def test_a_position_beyond_the_head_answers_422_at_once(h, agent):
    head = h.store.max_position()
    answer = h.http.get(f"/api/v1/usage?min_position={head + 1000}", headers=agent)
    assert answer.status_code == 422 and answer.json["error"]["code"] == "POSITION_AHEAD_OF_LEDGER"


def test_waits_beyond_the_cap_answer_503_at_once(h, agent, monkeypatch):
    import api.consistency as consistency

    monkeypatch.setattr(consistency, "_WAITS", threading.BoundedSemaphore(1))
    position = h.post_events(agent, [usage("w-1")]).json["position"]
    assert consistency._WAITS.acquire(blocking=False)  # another request holds the only slot
    try:
        busy = h.http.get(f"/api/v1/usage?min_position={position}", headers=agent)
        assert busy.status_code == 503 and busy.json["error"]["code"] == "TOO_MANY_WAITS"
        assert busy.headers["Retry-After"]
        h.project()
        assert h.http.get(f"/api/v1/usage?min_position={position}", headers=agent).status_code == 200  # no wait needed
    finally:
        consistency._WAITS.release()


def test_csv_cells_that_a_spreadsheet_could_split_or_run_are_quoted_and_defused():
    assert csv_cell("a;=1+1") == '"a;=1+1"'
    assert csv_cell(" =1+1") == "\"' =1+1\""
    assert csv_cell("a\n=1+1") == '"a\n=1+1"'
    assert csv_cell("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\""
    assert csv_cell("@SUM(A1)") == "\"'@SUM(A1)\""
    assert csv_cell("plain text") == "plain text"
    assert csv_cell(12) == "12" and csv_cell(None) == ""
    assert csv_line(["a", "b,c"]) == 'a,"b,c"\r\n'


def test_the_raw_usage_csv_is_capped_newest_first_and_says_so(h, agent, monkeypatch):
    import api.usage as usage_api

    monkeypatch.setattr(usage_api, "EXPORT_ROW_CAP", 3)
    events = [usage(f"c-{i}", occurred_at=f"2026-11-19T10:0{i}:00Z") for i in range(5)]
    position = h.post_events(agent, events).json["position"]
    h.project()
    query = f"granularity=raw&format=csv&start_date=2026-11-01&end_date=2026-11-20&min_position={position}"
    answer = h.http.get(f"/api/v1/usage?{query}", headers=agent)
    assert answer.status_code == 200 and answer.headers["X-Row-Cap"] == "3"
    lines = answer.data.decode().strip().splitlines()
    assert len(lines) == 4  # the header and the three newest
    assert "c-4" in lines[1] and "c-2" in lines[3]


def test_timestamps_outside_1970_to_9999_answer_422(h, agent):
    licence = {"tenant_id": "acme", "org_id": "prod", "tier": "team", "nodes_total": 1, "expires_at": "0001-02-18T20:44:22Z"}
    answer = h.admin("POST", "/api/v1/admin/licenses", json=licence)
    assert answer.status_code == 422, answer.json
    assert h.admin("GET", "/api/v1/admin/nodes/status").status_code < 500
    for path in (
        "/api/v1/usage?start_date=0001-01-01", "/api/v1/export/usage?start=0001-01-01",
        "/api/v1/export/usage?end=1969-12-31T23:59:59Z", "/api/v1/export/usage?end=9999-12-31T23:00:00-05:00",
    ):
        refused = h.http.get(path, headers=agent)
        assert refused.status_code == 422, (path, refused.json)
    price = {"provider": "openai", "model": "m", "input_per_1k": "1", "output_per_1k": "1", "effective_from": "1900-01-01T00:00:00Z"}
    assert h.admin("PUT", "/api/v1/admin/pricing", json=price).status_code == 422


def test_malformed_json_answers_400_malformed_json_everywhere(h, agent):
    probes = [
        ("POST", "/api/v1/admin/tenants", {"X-Admin-API-Key": ADMIN_KEY}),
        ("POST", "/api/v1/events", agent),
        ("POST", "/api/v1/budgets", agent),
        ("POST", "/api/v1/budgets/check", agent),
        ("POST", "/api/v1/auth/login", {}),
    ]
    for method, path, headers in probes:
        answer = h.http.open(path, method=method, data=b'{"broken": ', headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json["error"]["code"] == "MALFORMED_JSON", (path, answer.json)


def test_metrics_take_an_optional_bearer_token_and_readyz_says_only_ready(h):
    assert h.http.get("/metrics").status_code == 200
    guarded = create_app(replace(h.settings, metrics_token="m-token")).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    shown = guarded.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert shown.status_code == 200 and b"usage_ledger" in shown.data
    assert h.http.get("/readyz").json == {"status": "ready"}
    assert "projections" in h.http.get("/readyz", headers={"X-Admin-API-Key": ADMIN_KEY}).json
