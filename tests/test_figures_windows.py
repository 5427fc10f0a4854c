"""One definition of "the last N days" (the N UTC calendar days ending with today, today
included) in every usage answer's default, the export's `days=N` and the dashboard's range
buttons; every usage answer states its exact range."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

from tests.conftest import usage

# NOW is 2026-11-20T12:00Z: the last 30 days are 2026-10-22T00:00Z .. 2026-11-21T00:00Z
RANGE = {"start": "2026-10-22T00:00:00.000000Z", "end": "2026-11-21T00:00:00.000000Z"}
INSIDE = ["first-moment", "today", "future"]


def _post(h, agent) -> None:
    events = [
        usage("before", occurred_at="2026-10-21T23:59:59.999999Z", operation="completion"),
        usage("first-moment", occurred_at="2026-10-22T00:00:00Z", operation="completion"),
        usage("today", occurred_at="2026-11-20T11:00:00Z", operation="completion"),
        usage("future", occurred_at="2026-11-20T12:04:00Z", operation="completion"),  # accepted: within 5 minutes
    ]
    assert h.post_events(agent, events).status_code == 202
    h.project()


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_every_usage_answer_defaults_to_the_same_last_30_days_and_states_it(h, agent):
    _post(h, agent)
    get = lambda path: h.http.get(path, headers=agent)  # noqa: E731

    summary = get("/api/v1/usage/summary").json
    assert summary["total_events"] == 3 and summary["range"] == RANGE
    assert (summary["start_date"], summary["end_date"]) == ("2026-10-22", "2026-11-20")
    raw = get("/api/v1/usage?granularity=raw").json
    assert sorted(e["event_id"] for e in raw["data"]) == sorted(INSIDE) and raw["range"] == RANGE
    for granularity in ("hourly", "daily"):
        body = get(f"/api/v1/usage?granularity={granularity}").json
        assert sum(r["event_count"] for r in body["data"]) == 3 and body["range"] == RANGE
    breakdown = get("/api/v1/usage/breakdown").json
    assert breakdown["totals"]["events"] == 3 and breakdown["range"] == RANGE
    records = get("/api/v1/usage/records").json
    assert sorted(r["event_id"] for r in records["records"]) == sorted(INSIDE) and records["range"] == RANGE
    axon = get("/v1/axon/usage").json["data"]
    assert axon["totals"]["requests"] == 3 and axon["range"] == RANGE
    assert axon["since"] == "2026-10-22T00:00:00Z"  # the seed's form

    for path in ("/api/v1/export/usage", "/api/v1/export/usage?days=30", "/api/v1/usage?granularity=raw&format=csv"):
        response = get(path)
        assert len(_csv(response)) == 3, path
        assert response.headers["X-Range-Start"] == RANGE["start"], path
    assert get("/api/v1/export/usage?days=30").headers["X-Range-End"] == RANGE["end"]
    # days=1 is today: the calendar day, not the 24 hours before now
    assert {r["timestamp"][:10] for r in _csv(get("/api/v1/export/usage?days=1"))} == {"2026-11-20"}
    axon_one = get("/v1/axon/usage?days=1").json["data"]
    assert axon_one["totals"]["requests"] == 2
    assert axon_one["range"] == {"start": "2026-11-20T00:00:00.000000Z", "end": RANGE["end"]}


def test_credit_report_states_its_range(h):
    h.tenant("acme")
    portal = h.portal_user("bill@acme.test", permissions=("permission.billing.manage",))
    body = portal.get("/api/usage?startDate=2026-10-22&endDate=2026-11-20").json
    assert body["range"] == RANGE
    assert body["totalCredits"] == 0.0 and isinstance(body["totalCredits"], float) and body["totalCreditsNanos"] == 0
    default = portal.get("/api/usage").json  # the seed's default: the current month
    assert default["range"] == {"start": "2026-11-01T00:00:00.000000Z", "end": RANGE["end"]}


def test_the_default_export_holds_an_event_accepted_just_before_midnight(h, agent):
    h.settings.clock.set(datetime(2026, 11, 20, 23, 58, tzinfo=timezone.utc))
    assert h.post_events(agent, [usage("tomorrow", occurred_at="2026-11-21T00:02:00Z")]).status_code == 202
    h.project()
    rows = _csv(h.http.get("/api/v1/export/usage", headers=agent))
    assert [r["timestamp"] for r in rows] == ["2026-11-21T00:02:00.000000Z"]


def test_the_dashboard_range_buttons_use_the_same_definition():
    """The dashboard's buttons pick today − (N − 1) .. today, inclusive dates: the API's window."""
    script = open("api/static/dashboard/dashboard.js", encoding="utf-8").read()
    assert "setRange(addDays(end, -(Number(button.dataset.days) - 1)), end)" in script
    assert re.search(r"addDays\(end, -29\)", script)  # the default range: the last 30 days


def test_raw_csv_pages_like_raw_json(h, agent):
    _post(h, agent)
    first = h.http.get("/api/v1/usage?granularity=raw&format=csv&limit=2", headers=agent)
    page = h.http.get("/api/v1/usage?granularity=raw&limit=2", headers=agent).json
    assert [r["event_id"] for r in _csv(first)] == [e["event_id"] for e in page["data"]]
    assert first.headers["X-Next-Cursor"] == page["next_cursor"]
    second = h.http.get(f"/api/v1/usage?granularity=raw&format=csv&limit=2&cursor={page['next_cursor']}", headers=agent)
    assert [r["event_id"] for r in _csv(second)] == ["first-moment"] and "X-Next-Cursor" not in second.headers
    assert h.http.get("/api/v1/usage?granularity=raw&format=csv&limit=1001", headers=agent).status_code == 422


SIX_DIGITS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_event_and_record_times_always_have_six_fractional_digits(h, agent):
    events = [
        usage("whole", occurred_at="2026-11-20T10:00:00Z", operation="completion"),
        usage("micro", occurred_at="2026-11-20T10:25:05.862845Z", operation="completion"),
    ]
    assert h.post_events(agent, events).status_code == 202
    h.project()
    get = lambda path: h.http.get(path, headers=agent)  # noqa: E731
    times = [t for e in get("/api/v1/usage?granularity=raw").json["data"] for t in (e["occurred_at"], e["created_at"])]
    times += [t for e in get("/api/v1/usage/records").json["records"] for t in (e["occurred_at"], e["created_at"])]
    times += [r[k] for r in _csv(get("/api/v1/usage?granularity=raw&format=csv")) for k in ("occurred_at", "created_at")]
    times += [r["timestamp"] for r in _csv(get("/api/v1/export/usage"))]
    times += [r["created_at"] for r in get("/v1/axon/audit").json["data"]]
    assert len(times) >= 16 and all(SIX_DIGITS.match(t) for t in times), times  # axon audit: tests/test_axon.py
    assert "2026-11-20T10:00:00.000000Z" in times and "2026-11-20T10:25:05.862845Z" in times
