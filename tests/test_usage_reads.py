"""Usage read endpoints (seed 000): usage JSON/CSV at each granularity, summary, export."""
from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import usage


def _rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def seed(h, agent) -> int:
    response = h.post_events(
        agent,
        [
            usage("l-1", occurred_at="2026-11-19T10:15:00Z", cost_usd="0.25"),
            usage("l-2", occurred_at="2026-11-19T10:45:00Z", cost_usd="0.5", http_status_code=500),
            usage("l-3", occurred_at="2026-11-20T09:05:00Z", cost_usd="1.125", llm_model="gpt-4o-mini"),
            {"event_id": "a-1", "event_type": "api_call", "occurred_at": "2026-11-20T09:30:00Z",
             "http_method": "post", "http_path": "/mcp/tools/call", "http_status_code": 200, "latency_ms": 40,
             "policies_evaluated": 3, "policy_violations": 1},
        ],
    )
    assert response.status_code == 202
    return response.json["position"]


def test_daily_usage_is_the_default_and_groups_by_event_type_and_day(h, agent):
    position = seed(h, agent)
    h.project()
    response = h.http.get(f"/api/v1/usage?min_position={position}", headers=agent)
    assert response.status_code == 200
    assert response.headers["X-Ledger-Position"] == str(position)
    body = response.json
    assert body["granularity"] == "daily"
    assert body["start_date"] == "2026-10-22" and body["end_date"] == "2026-11-20"
    rows = {(r["event_type"], r["time_bucket"]): r for r in body["data"]}
    day19 = rows[("llm_request", "2026-11-19T00:00:00Z")]
    assert day19["event_count"] == 2 and day19["total_tokens"] == 3000
    assert day19["estimated_cost_usd"] == 0.75
    assert day19["success_count"] == 1 and day19["error_count"] == 1
    assert day19["average_latency_ms"] == 200
    api = rows[("api_call", "2026-11-20T00:00:00Z")]
    assert api["policies_evaluated"] == 3 and api["policy_violations"] == 1


def test_hourly_usage_puts_events_in_their_hour(h, agent):
    seed(h, agent)
    h.project()
    body = h.http.get("/api/v1/usage?granularity=hourly&start_date=2026-11-19&end_date=2026-11-19", headers=agent).json
    assert [(r["event_type"], r["time_bucket"], r["event_count"]) for r in body["data"]] == [
        ("llm_request", "2026-11-19T10:00:00Z", 2)
    ]


def test_raw_usage_is_newest_first_and_paginated_with_a_cursor(h, agent):
    seed(h, agent)
    h.project()
    first = h.http.get("/api/v1/usage?granularity=raw&limit=3", headers=agent).json
    assert [e["event_id"] for e in first["data"]] == ["a-1", "l-3", "l-2"]
    assert first["data"][0]["http_method"] == "POST"
    second = h.http.get(f"/api/v1/usage?granularity=raw&limit=3&cursor={first['next_cursor']}", headers=agent).json
    assert [e["event_id"] for e in second["data"]] == ["l-1"]
    assert second["next_cursor"] is None


def test_raw_csv_is_usage_events_csv_with_the_raw_header(h, agent):
    seed(h, agent)
    h.project()
    response = h.http.get("/api/v1/usage?granularity=raw&format=csv", headers=agent)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == "attachment; filename=usage_events.csv"
    assert response.mimetype == "text/csv"
    rows = _rows(response)
    seed_columns = [
        "event_id", "event_type", "instance_id", "instance_type", "http_method", "http_path", "http_status_code",
        "llm_provider", "llm_model", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
        "latency_ms", "policies_evaluated", "policy_violations", "created_at",
        "cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens",  # token details follow the seed's columns
    ]
    # the seed's columns first, then every other raw JSON field
    assert list(rows[0].keys())[: len(seed_columns)] == seed_columns
    raw = h.http.get("/api/v1/usage?granularity=raw", headers=agent).json["data"][0]
    assert set(rows[0]) == set(raw)
    assert {r["event_id"] for r in rows} == {"l-1", "l-2", "l-3", "a-1"}


def test_aggregate_csv_is_usage_aggregates_csv_with_the_aggregate_header(h, agent):
    seed(h, agent)
    h.project()
    for granularity in ("daily", "hourly"):
        response = h.http.get(f"/api/v1/usage?granularity={granularity}&format=csv", headers=agent)
        assert response.headers["Content-Disposition"] == "attachment; filename=usage_aggregates.csv"
        rows = _rows(response)
        assert list(rows[0].keys())[:3] == ["event_type", "time_bucket", "event_count"]
        assert {"average_latency_ms", "success_count", "error_count", "estimated_cost_usd"} <= set(rows[0])
        assert sum(int(r["event_count"]) for r in rows) == 4


def test_client_id_filters_to_one_client(h, agent):
    seed(h, agent)
    other = h.agent("acme", "prod")
    h.post_events(other, [usage("o-1")])
    h.project()
    everyone = h.http.get("/api/v1/usage?granularity=raw", headers=agent).json["data"]
    client_id = next(e["client_id"] for e in everyone if e["event_id"] == "l-1")
    filtered = h.http.get(f"/api/v1/usage?granularity=raw&client_id={client_id}", headers=agent).json["data"]
    assert len(everyone) == 5
    assert sorted(e["event_id"] for e in filtered) == ["a-1", "l-1", "l-2", "l-3"]


def test_summary_totals_the_window_including_today(h, agent):
    seed(h, agent)
    h.project()
    body = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert body["total_api_calls"] == 1
    assert body["total_llm_requests"] == 3
    assert body["total_tokens"] == 4500
    assert body["estimated_cost_usd"] == 1.875
    assert body["average_latency_ms"] == 160.0  # (200 × 3 + 40) / 4
    assert body["success_rate"] == 75.0
    assert body["event_types"] == {"api_call": 1, "llm_request": 3}
    narrow = h.http.get("/api/v1/usage/summary?start_date=2026-11-20&end_date=2026-11-20", headers=agent).json
    assert narrow["event_types"] == {"api_call": 1, "llm_request": 1}


def test_a_backdated_event_lands_in_its_own_hour_and_day(h, agent):
    h.post_events(agent, [usage("late", occurred_at="2026-10-20T23:59:59Z", prompt_tokens=10, completion_tokens=0)])
    h.project()
    daily = h.http.get("/api/v1/usage?start_date=2026-10-20&end_date=2026-10-21", headers=agent).json["data"]
    assert [(r["time_bucket"], r["event_count"]) for r in daily] == [("2026-10-20T00:00:00Z", 1)]
    hourly = h.http.get("/api/v1/usage?granularity=hourly&start_date=2026-10-20&end_date=2026-10-20", headers=agent).json
    assert [r["time_bucket"] for r in hourly["data"]] == ["2026-10-20T23:00:00Z"]


def test_another_tenant_never_sees_this_tenants_usage(h, agent):
    seed(h, agent)
    h.tenant("globex")
    other = h.agent("globex", "prod")
    h.project()
    assert h.http.get("/api/v1/usage/summary", headers=other).json["total_tokens"] == 0
    assert h.http.get("/api/v1/usage?granularity=raw", headers=other).json["data"] == []
    assert _rows(h.http.get("/api/v1/export/usage", headers=other)) == []


def test_platform_wide_is_refused_in_saas(h, agent):
    response = h.http.get("/api/v1/usage/summary?platform_wide=true", headers=agent)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "PLATFORM_WIDE_UNAVAILABLE"


def test_platform_wide_in_invpc_needs_the_permission(h, agent):
    h.app.extensions["usage_ledger"].settings.deployment_mode = "invpc"
    response = h.http.get("/api/v1/usage/summary?platform_wide=true", headers=agent)
    assert response.status_code == 403 and response.json["error"]["code"] == "PERMISSION_DENIED"
    h.post_events(agent, [usage("p-1")])
    h.post_events({**agent, "X-Org-ID": "research"}, [usage("r-1")])
    h.project()
    admin = {"X-Admin-API-Key": "test-admin-key", "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
    body = h.http.get("/api/v1/usage/summary?platform_wide=true", headers=admin).json
    assert body["total_llm_requests"] == 2
    assert h.http.get("/api/v1/usage/summary", headers=admin).json["total_llm_requests"] == 1


def test_export_has_the_fourteen_columns_newest_first(h, agent):
    seed(h, agent)
    h.project()
    response = h.http.get("/api/v1/export/usage?start=2026-11-19&end=2026-11-20", headers=agent)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == (
        "timestamp,client_id,event_type,llm_provider,llm_model,http_method,http_path,http_status_code,"
        "latency_ms,prompt_tokens,completion_tokens,total_tokens,estimated_cost_cents,policy_violations"
    )
    rows = _rows(response)
    assert [r["timestamp"] for r in rows] == sorted((r["timestamp"] for r in rows), reverse=True)
    assert rows[1]["estimated_cost_cents"] == "112.5"


def test_export_accepts_rfc3339_bounds(h, agent):
    seed(h, agent)
    h.project()
    rows = _rows(h.http.get("/api/v1/export/usage?start=2026-11-19T10:30:00Z&end=2026-11-20T09:10:00Z", headers=agent))
    assert [r["timestamp"] for r in rows] == ["2026-11-20T09:05:00.000000Z", "2026-11-19T10:45:00.000000Z"]


def test_export_days_is_legacy_and_bounded(h, agent):
    seed(h, agent)
    h.project()
    assert len(_rows(h.http.get("/api/v1/export/usage?days=1", headers=agent))) == 2
    assert h.http.get("/api/v1/export/usage?days=0", headers=agent).status_code == 422
    assert h.http.get("/api/v1/export/usage?days=366", headers=agent).status_code == 422
    response = h.http.get("/api/v1/export/usage?days=7&start=2026-11-01", headers=agent)
    assert response.status_code == 400 and response.json["error"]["code"] == "BAD_REQUEST"


def test_export_is_capped_at_fifty_thousand_rows(h, agent, monkeypatch):
    import api.usage

    monkeypatch.setattr(api.usage, "EXPORT_ROW_CAP", 3)
    seed(h, agent)
    h.project()
    assert len(_rows(h.http.get("/api/v1/export/usage", headers=agent))) == 3


def test_csv_cells_that_look_like_formulas_are_escaped(h, agent):
    h.post_events(agent, [usage("f-1", llm_model="=HYPERLINK(\"http://x\")", llm_provider="@evil", http_path="-2+3")])
    h.project()
    row = _rows(h.http.get("/api/v1/export/usage", headers=agent))[0]
    assert row["llm_model"].startswith("'=")
    assert row["llm_provider"] == "'@evil"
    assert row["http_path"] == "'-2+3"


def test_bad_query_parameters_are_json_422(h, agent):
    for query in ("granularity=minutely", "format=xml", "start_date=2026-13-01", "limit=1001", "limit=0",
                  "start_date=2026-11-20&end_date=2026-11-01", "granularity=raw&cursor=bm9wZQ"):
        response = h.http.get(f"/api/v1/usage?{query}", headers=agent)
        assert response.status_code == 422, query
        assert response.json["error"]["code"] == "VALIDATION_FAILED"


def test_reads_need_credentials(h, agent):
    for path in ("/api/v1/usage", "/api/v1/usage/summary", "/api/v1/export/usage"):
        response = h.http.get(path)
        assert response.status_code == 401 and response.json["error"]["code"] == "UNAUTHENTICATED"


def test_min_position_beyond_the_read_models_answers_503_with_retry_after(h, agent):
    h.app.extensions["usage_ledger"].settings.read_wait_seconds = 0.05
    position = seed(h, agent)
    response = h.http.get(f"/api/v1/usage/summary?min_position={position}", headers=agent)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json["error"]["code"] == "NOT_CAUGHT_UP"
    h.project()
    assert h.http.get(f"/api/v1/usage/summary?min_position={position}", headers=agent).status_code == 200


@pytest.mark.parametrize(("path", "given", "meant"), [
    ("/api/v1/usage", "start", "start_date"),
    ("/api/v1/usage", "endDate", "end_date"),
    ("/api/v1/usage/summary", "startDate", "start_date"),
    ("/api/v1/usage/breakdown", "start_date", "start"),
    ("/api/v1/usage/records", "end_date", "end"),
    ("/api/v1/export/usage", "startDate", "start"),
])
def test_a_window_under_another_endpoints_names_is_refused_with_the_name_to_use(h, agent, path, given, meant):
    """The seeds name a window three ways (start_date, start, startDate); a bound under
    another endpoint's names would be an ignored argument and get the default window."""
    response = h.http.get(f"{path}?{given}=2026-11-19", headers=agent)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["error"]["fields"] == {given: [f"this endpoint takes {meant}, not {given}"]}


def test_the_credit_report_refuses_another_endpoints_window_names_too(h):
    response = h.admin("GET", "/api/usage?start_date=2026-11-19", headers={"X-Tenant-ID": "acme", "X-Org-ID": "prod"})
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"start_date": ["this endpoint takes startDate, not start_date"]}
