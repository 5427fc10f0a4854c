"""No acknowledged event or budget can vanish: validation refuses what the read models
cannot hold; and times are truncated to the microsecond, never rounded across a month,
with the same instant in another offset a duplicate, not a conflict."""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.conftest import usage


def test_a_budget_limit_the_read_model_cannot_hold_is_refused(h, agent):
    author = {**agent, "X-User-ID": "alice"}
    body = {"id": "huge", "name": "Huge", "limit_usd": 10_000_000_000, "period": "monthly"}
    response = h.http.post("/api/v1/budgets", json=body, headers=author)
    assert response.status_code == 422 and response.json["error"]["field"] == "limit_usd"
    ok = h.http.post("/api/v1/budgets", json={**body, "limit_usd": 999_999_999}, headers=author)
    assert ok.status_code == 201, ok.json
    h.project()
    fetched = h.http.get("/api/v1/budgets/huge", headers=author)
    assert fetched.status_code == 200 and fetched.json["limit_usd"] == 999_999_999


def test_credits_one_event_cannot_carry_are_refused_before_anything_is_recorded(h, agent):
    before = h.ledger_count()
    event = {"event_id": "big", "event_type": "app_run", "resource_type": "app_compute", "quantity": 999999999999999}
    response = h.post_events(agent, [event])
    assert response.status_code == 422, response.json
    assert response.json["error"]["items"][0]["field"] == "quantity"
    assert h.ledger_count() == before
    event["quantity"] = 99_999_999  # 999,999.99 credits: accepted and counted
    assert h.post_events(agent, [event]).status_code == 202
    h.project()
    (record,) = h.http.get("/api/v1/usage/records?start=2026-11-01", headers=agent).json["records"]
    assert record["credits"] == 999_999.99


def test_a_time_past_the_microsecond_is_truncated_not_rounded_into_the_next_month(h, agent):
    event = usage("late", occurred_at="2026-10-31T23:59:59.9999999Z")
    assert h.post_events(agent, [event]).status_code == 202
    h.project()
    found = h.http.get("/api/v1/usage/records?start=2026-10-01&end=2026-11-01", headers=agent).json["records"]
    assert [r["event_id"] for r in found] == ["late"]
    assert found[0]["occurred_at"].startswith("2026-10-31T23:59:59.999999")
    assert h.post_events(agent, [event]).json["duplicates"] == 1


def test_the_same_instant_in_another_offset_is_a_duplicate(h, agent):
    assert h.post_events(agent, [usage("e-1", occurred_at="2026-11-20T10:00:00Z")]).status_code == 202
    again = h.post_events(agent, [usage("e-1", occurred_at="2026-11-20T15:30:00+05:30")])
    assert again.status_code == 202 and again.json["duplicates"] == 1
    both = h.post_events(agent, [usage("e-2", occurred_at="2026-11-20T15:30:00+05:30"), usage("e-2", occurred_at="2026-11-20T10:00:00Z")])
    assert both.status_code == 202 and both.json["duplicates"] == 1
    other = h.post_events(agent, [usage("e-1", occurred_at="2026-11-20T10:00:01Z")])
    assert other.status_code == 409


def test_the_default_export_holds_every_accepted_event(h, agent):
    ahead = (h.settings.clock.now() + timedelta(minutes=4, seconds=50)).isoformat()
    assert h.post_events(agent, [usage("ahead", occurred_at=ahead), usage("now")]).status_code == 202
    h.project()
    lines = h.http.get("/api/v1/export/usage", headers=agent).get_data(as_text=True).splitlines()
    assert len(lines) == 3  # the header and both events


def test_admin_health_lists_parked_events_with_their_projection_and_error(h, agent):
    from projections.framework import projection_errors

    with h.engine.begin() as conn:
        conn.execute(projection_errors.insert().values(
            projection="usage_events", position=7, event_type="UsageRecorded", error="boom", parked_at=datetime(2026, 11, 20)
        ))
    assert h.http.get("/api/v1/admin/health").status_code == 401
    assert h.http.get("/api/v1/admin/health", headers=agent).status_code in (401, 403)
    response = h.admin("GET", "/api/v1/admin/health")
    assert response.status_code == 200 and response.json["status"] == "degraded"
    assert response.json["parked_errors"] == [
        {"projection": "usage_events", "position": 7, "event_type": "UsageRecorded", "error": "boom"}
    ]
    assert "usage_events" in response.json["projections"]
