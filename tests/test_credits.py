"""Credit usage reporting (seed 003): credits at ingest, gauges, the four endpoints,
permissions and the License Manager sync, on both backends."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from api.auth import Principal
from ledger.errors import Forbidden
from projections.credits_queries import CREDITS
from tests.conftest import ADMIN_KEY, Harness, make_settings, usage
from tests.fakes import FakeServer, as_json
from tests.processes import free_port

APP = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
ORG = {"X-Tenant-ID": "acme", "X-Org-ID": "prod"}


def get(h, path, headers=ORG):
    return h.admin("GET", path, headers=headers)


def stored_credits(h, event_id: str):
    from projections.usage_queries import USAGE

    t = USAGE.events
    with h.engine.connect() as conn:
        return conn.execute(select(t.c.credits_nanos).where(t.c.event_id == event_id)).scalar_one()


def metered(event_id: str, resource_type: str, **fields) -> dict:
    event = {"event_id": event_id, "event_type": "metered", "resource_type": resource_type, "occurred_at": "2026-11-20T11:00:00Z"}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


# resource types and permissions -------------------------------------------------------------
def test_resource_types_are_exactly_the_seeds_list(h, agent):
    response = get(h, "/api/usage/resource-types")
    assert response.status_code == 200
    assert response.json == [
        {"slug": "ai", "name": "AI", "category": "ai", "mode": "event", "unit": "dollar"},
        {"slug": "agent_run", "name": "Agent Run", "category": "ai", "mode": "event", "unit": "run"},
        {"slug": "app_compute", "name": "App Compute", "category": "compute", "mode": "event", "unit": "second"},
        {"slug": "job_compute", "name": "Job Compute", "category": "compute", "mode": "event", "unit": "second"},
        {"slug": "app_storage", "name": "App Storage", "category": "storage", "mode": "gauge", "unit": "byte"},
        {"slug": "workspace_storage", "name": "Workspace Storage", "category": "storage", "mode": "gauge", "unit": "byte"},
        {"slug": "file_storage", "name": "File Storage", "category": "storage", "mode": "gauge", "unit": "byte"},
        {"slug": "es_index_count", "name": "ES Index Count", "category": "storage", "mode": "gauge", "unit": "index"},
    ]


def test_require_permission_refuses_a_principal_without_it():
    from api.auth import require_permission

    user = Principal("user", "acme", "prod", "user:jdoe", permissions=frozenset({"permission.tenant.superuser"}))
    with pytest.raises(Forbidden) as error:
        require_permission(user, "permission.billing.manage")
    assert error.value.code == "PERMISSION_DENIED"
    assert require_permission(user, "permission.tenant.superuser") is user
    admin = Principal("admin", "acme", "prod", "admin")
    assert require_permission(admin, "permission.billing.manage") is admin


def test_a_user_without_billing_manage_gets_403_on_every_credit_report(h, agent):
    nobody = h.portal_user("nobody@acme.test")
    for path in ("/api/usage", "/api/usage/monthly", "/api/usage/top-consumers", "/api/usage/resource-types"):
        response = nobody.get(path)
        assert response.status_code == 403, path
        assert response.json["error"]["code"] == "PERMISSION_DENIED"
    billing = h.portal_user("billing@acme.test", permissions=["permission.billing.manage"])
    assert billing.get("/api/usage").status_code == 200
    assert billing.get("/api/usage/resource-types").status_code == 403  # needs permission.tenant.superuser
    superuser = h.portal_user("root@acme.test", permissions=["permission.tenant.superuser"])
    assert superuser.get("/api/usage/resource-types").status_code == 200
    assert superuser.get("/api/usage/monthly").status_code == 403


def test_credit_reports_need_credentials(h, agent):
    assert h.http.get("/api/usage").status_code == 401
    assert h.http.get("/api/usage", headers=agent).status_code == 401  # agent clients are not portal users
    assert h.admin("GET", "/api/usage").status_code == 403  # the admin key must name tenant and org


# credits at ingest ---------------------------------------------------------------------------
def test_credits_are_computed_at_ingest_from_the_default_rates(h, agent):
    events = [
        usage("llm", cost_usd="0.0125"),  # ai: 100 credits per dollar → 1.25
        usage("llm-priced", cost_usd=None),  # gpt-4o 1000/500 tokens = $0.0075 → 0.75
        usage("llm-unpriced", llm_provider="acme", llm_model="secret", cost_usd=None),  # no price → no credits
        usage("llm-given", credits="7"),  # sent credits are kept
        metered("run", "agent_run"),  # one run → 1
        metered("runs", "agent_run", quantity=3),
        metered("compute", "app_compute", quantity=120),  # 0.01/s → 1.2
        metered("job", "job_compute", quantity=60),  # 0.005/s → 0.3
        metered("storage", "app_storage", quantity=10**9),  # gauge: accrues over time instead
        usage("plain-call", event_type="api_call", llm_provider=None, llm_model=None, prompt_tokens=None, completion_tokens=None),
    ]
    assert h.post_events(agent, events).status_code == 202
    h.project()
    expected = {
        "llm": 1_250_000_000, "llm-priced": 750_000_000, "llm-unpriced": None, "llm-given": 7_000_000_000,
        "run": 1_000_000_000, "runs": 3_000_000_000, "compute": 1_200_000_000, "job": 300_000_000,
        "storage": None, "plain-call": None,
    }
    assert {e: stored_credits(h, e) for e in expected} == expected


def test_a_new_credit_rate_applies_to_later_events(h, agent, clock):
    response = h.admin("PUT", "/api/v1/admin/credit-rates", json={"resource_type": "app_compute", "credits_per_unit": "0.05"})
    assert response.status_code == 200, response.json
    assert response.json["credits_per_unit"] == 0.05
    h.project()
    h.post_events(agent, [
        metered("compute-new", "app_compute", quantity=100, occurred_at=None),  # now: the new rate is in force
        metered("compute-before", "app_compute", quantity=100),  # an hour ago: the old rate was
    ])
    h.project()
    assert stored_credits(h, "compute-new") == 5_000_000_000
    assert stored_credits(h, "compute-before") == 1_000_000_000
    rates = {r["resource_type"]: r for r in h.admin("GET", "/api/v1/admin/credit-rates").json["rates"]}
    assert rates["app_compute"]["credits_per_unit"] == 0.05 and rates["app_compute"]["source"] == "override"
    assert rates["ai"] == {"resource_type": "ai", "credits_per_unit": 100.0, "effective_from": None, "source": "default"}


@pytest.mark.parametrize(
    "body",
    [
        {"resource_type": "gpu", "credits_per_unit": "1"},
        {"resource_type": "ai", "credits_per_unit": "-1"},
        {"resource_type": "ai"},
        {"resource_type": "ai", "credits_per_unit": "1", "effective_from": "2026-11-20T00:00:00"},
    ],
)
def test_invalid_credit_rates_are_422(h, agent, body):
    assert h.admin("PUT", "/api/v1/admin/credit-rates", json=body).status_code == 422


# gauges --------------------------------------------------------------------------------------
def gauge(event_id: str, at: str, gigabytes: str, **fields) -> dict:
    return metered(event_id, "app_storage", occurred_at=at, quantity=str(Decimal(gigabytes) * 10**9), app_id="files", **fields)


def daily_storage(h) -> dict[str, float]:
    body = get(h, "/api/usage").json
    return {d["date"]: d["totalCredits"] for d in body["dailyTotals"] if d["resourceType"] == "app_storage"}


def test_gauge_rows_carry_their_credits_in_raw_json_csv_and_records(h, agent):
    # 1 GB from the 18th (to the next reading), 2 GB from the 19th to now (the 20th, noon)
    h.post_events(agent, [gauge("g1", "2026-11-18T00:00:00Z", "1"), gauge("g2", "2026-11-19T00:00:00Z", "2")])
    h.project()
    expected = {"g1": 1_000_000_000, "g2": 3_000_000_000}
    raw = h.http.get("/api/v1/usage?granularity=raw", headers=agent).json["data"]
    assert {r["event_id"]: r["credits_nanos"] for r in raw} == expected
    assert {r["event_id"]: r["credits"] for r in raw} == {"g1": 1.0, "g2": 3.0}
    records = h.http.get("/api/v1/usage/records", headers=agent).json["records"]
    assert {r["event_id"]: r["credits_nanos"] for r in records} == expected
    text = h.http.get("/api/v1/usage?granularity=raw&format=csv", headers=agent).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["event_id"]: r["credits"] for r in rows} == {"g1": "1.000000000", "g2": "3.000000000"}
    # the readings' credits sum to the credit report's figure for the same window
    assert sum(expected.values()) == get(h, "/api/usage?startDate=2026-11-18&endDate=2026-11-20").json["totalCreditsNanos"]


def test_the_breakdown_counts_gauge_credits_accrued_inside_its_window(h, agent):
    # 1 GB from the 18th, 2 GB from the 19th; now is the 20th at noon (1 credit per GB-day)
    h.post_events(agent, [gauge("g1", "2026-11-18T00:00:00Z", "1"), gauge("g2", "2026-11-19T00:00:00Z", "2")])
    h.project()

    def credits(group_by, **window):
        query = "&".join(f"{k}={v}" for k, v in window.items())
        answer = h.http.get(f"/api/v1/usage/breakdown?group_by={group_by}&{query}", headers=agent).json
        return answer["totals"]["credits_nanos"], {i["key"]: i["credits_nanos"] for i in answer["breakdown"]}

    whole = get(h, "/api/usage?startDate=2026-11-18&endDate=2026-11-20").json["totalCreditsNanos"]
    assert credits("app", start="2026-11-18", end="2026-11-20") == (whole, {"files": whole})  # = the credit report
    assert credits("day", start="2026-11-18", end="2026-11-20")[1] == {
        "2026-11-18": 10**9, "2026-11-19": 2 * 10**9, "2026-11-20": 10**9,  # the 20th up to now
    }
    # a window inside a day: the level in force (set before the window) accrues for 6 hours
    assert credits("model", start="2026-11-19T06:00:00Z", end="2026-11-19T12:00:00Z") == (5 * 10**8, {None: 5 * 10**8})
    assert credits("team", start="2026-11-21T00:00:00Z", end="2026-11-22T00:00:00Z") == (0, {})  # after now


def test_a_reading_dated_ahead_of_now_ends_the_level_before_it_in_every_output(h, agent):
    # now is the 20th at noon: 1 GB from 06:00, then 2 GB read at 12:03 (dated 3 minutes
    # ahead, within the allowed skew). The 1 GB level is held until that reading (6 h 3 min),
    # the 2 GB level accrues nothing yet: raw rows, the breakdown and the credit report agree.
    h.post_events(agent, [gauge("g1", "2026-11-20T06:00:00Z", "1"), gauge("g2", "2026-11-20T12:03:00Z", "2")])
    h.project()
    held = 252_083_333  # 1 credit per GB-day × 363/1440 of a day
    raw = h.http.get("/api/v1/usage?granularity=raw&start_date=2026-11-20&end_date=2026-11-20", headers=agent).json["data"]
    assert {r["event_id"]: r["credits_nanos"] for r in raw} == {"g1": held, "g2": 0}
    breakdown = h.http.get("/api/v1/usage/breakdown?group_by=app&start=2026-11-20&end=2026-11-20", headers=agent).json
    assert breakdown["totals"]["credits_nanos"] == held
    assert get(h, "/api/usage?startDate=2026-11-20&endDate=2026-11-20").json["totalCreditsNanos"] == held
    # a window ending between now and the reading ahead: the level holds to the window's end
    inside = h.http.get("/api/v1/usage/breakdown?group_by=app&start=2026-11-20T06:00:00Z&end=2026-11-20T12:01:00Z",
                        headers=agent).json
    assert inside["totals"]["credits_nanos"] == 250_694_444  # 361/1440 of a GB-day


def test_a_gauge_accrues_level_times_rate_times_time_held(h, agent):
    # 1 GB from the 18th, 2 GB from the 19th; now is the 20th at noon. Default: 1 credit per GB-day.
    h.post_events(agent, [gauge("g1", "2026-11-18T00:00:00Z", "1"), gauge("g2", "2026-11-19T00:00:00Z", "2")])
    h.project()
    assert daily_storage(h) == {"2026-11-18": 1, "2026-11-19": 2, "2026-11-20": 1}
    # a late reading splits the interval it lands in, and is the 18th's latest level
    h.post_events(agent, [gauge("g-late", "2026-11-18T12:00:00Z", "3")])
    h.project()
    assert daily_storage(h) == {"2026-11-18": 2, "2026-11-19": 2, "2026-11-20": 1}
    levels = _levels(h)
    assert levels["2026-11-18"] == (3 * 10**12, 2)  # latest level (milli-bytes), readings that day
    assert levels["2026-11-19"] == (2 * 10**12, 1)
    summary = get(h, "/api/usage").json["usageSummary"]
    assert summary == [{"entityId": "files", "entityType": "app", "resourceType": "app_storage", "totalCredits": 5,
                        "totalCreditsNanos": 5 * 10**9, "totalEvents": 3}]


def test_gauge_credits_do_not_depend_on_arrival_order(h, agent):
    readings = [gauge("a", "2026-11-17T06:00:00Z", "4"), gauge("b", "2026-11-18T18:00:00Z", "1"), gauge("c", "2026-11-19T00:00:00Z", "2.5")]
    h.post_events(agent, [readings[2]])
    h.post_events(agent, [readings[0]])
    h.post_events(agent, [readings[1]])
    h.project()
    in_order = daily_storage(h)
    # by hand: 4 GB × (18 h on the 17th, 18 h on the 18th), 1 GB × 6 h, 2.5 GB × 36 h
    assert in_order == {"2026-11-17": 3, "2026-11-18": 3.25, "2026-11-19": 2.5, "2026-11-20": 1.25}


def test_gauge_credits_tie_out_to_the_nano_in_any_arrival_order(h, agent):
    # 1 MB at 1 credit per GB-day is 11.574… nanos a second: a second rounds to 12 nanos and
    # two seconds to 23, so a reading that splits a booked interval (it came late) or a void
    # that merges one again must book each reading's own pieces, rounded as the raw rows
    # round them, or the credit report drifts from the sum of the rows by a nano
    times = ["2026-11-19T00:00:00Z", "2026-11-19T00:00:01Z", "2026-11-19T00:00:02Z"]
    orders = {"in order": [0, 1, 2], "late": [0, 2, 1], "reversed": [2, 1, 0]}
    totals = set()
    for n, (name, order) in enumerate(orders.items()):
        tenant = f"order{n}"
        h.tenant(tenant, ("prod",))
        headers = h.agent(tenant, "prod")
        for i in order:
            assert h.post_events(headers, [gauge(f"{tenant}-{i}", times[i], "0.001")]).status_code == 202
            h.project()
        # a reading that splits the interval from 00:00:01, then voided: merged again
        extra = gauge(f"{tenant}-void", "2026-11-19T00:00:01.500000Z", "0.004")
        assert h.post_events(headers, [extra]).status_code == 202
        h.project()
        voided = h.http.post(f"/api/v1/events/{tenant}-void/void", json={"reason": "r"},
                             headers={"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": tenant, "X-Org-ID": "prod"})
        assert voided.status_code == 200, voided.json
        h.project()
        raw = h.http.get("/api/v1/usage?granularity=raw&start_date=2026-11-19&end_date=2026-11-20", headers=headers).json["data"]
        readings = sum(r["credits_nanos"] for r in raw)
        report = get(h, "/api/usage?startDate=2026-11-19&endDate=2026-11-20", {"X-Tenant-ID": tenant, "X-Org-ID": "prod"}).json
        breakdown = h.http.get("/api/v1/usage/breakdown?group_by=app&start=2026-11-19&end=2026-11-20", headers=headers).json
        assert readings == report["totalCreditsNanos"] == breakdown["totals"]["credits_nanos"], name
        totals.add(readings)
    assert totals == {12 + 12 + 999_977 + 500_000}  # each reading's pieces per day, rounded


def test_voiding_a_gauge_reading_merges_its_neighbours(h, agent):
    from ledger.usage.streams import usage_stream
    from ledger.usage.events import UsageRecorded, UsageVoided
    from ledger.store import NewEvent

    h.post_events(agent, [gauge("v1", "2026-11-18T00:00:00Z", "1"), gauge("v2", "2026-11-19T00:00:00Z", "5")])
    recorded = h.store.stream(usage_stream("acme", "v2"))[0].event
    assert isinstance(recorded, UsageRecorded)
    h.store.append([NewEvent(usage_stream("acme", "v2"), 2, UsageVoided(
        tenant_id="acme", org_id="prod", recorded_at=recorded.recorded_at, actor="admin", event_id="v2", reason="test", voided=recorded.usage
    ))])
    h.project()
    assert daily_storage(h) == {"2026-11-18": 1, "2026-11-19": 1, "2026-11-20": 0.5}


def _levels(h) -> dict[str, tuple[int, int]]:
    t = CREDITS.daily
    with h.engine.connect() as conn:
        rows = conn.execute(select(t.c.day, t.c.level_milli, t.c.readings).order_by(t.c.day)).all()
    return {r.day.date().isoformat(): (r.level_milli, r.readings) for r in rows}


# GET /api/usage ------------------------------------------------------------------------------
@pytest.fixture
def spent(h, agent):
    h.admin("POST", "/api/v1/admin/entities", json={
        "tenant_id": "acme", "entity_id": APP, "entity_type": "app", "name": "Sales Dashboard", "slug": "sales-dashboard", "owner_id": "jdoe",
    })
    h.admin("POST", "/api/v1/admin/entities", json={
        "tenant_id": "acme", "entity_id": "jdoe", "entity_type": "user", "name": "jdoe", "display_name": "Jane Doe",
    })
    events = [
        usage("a1", cost_usd="10", app_id=APP, user_id="jdoe"),  # 1000 credits
        usage("a2", cost_usd="2.505", app_id=APP, user_id="asmith", occurred_at="2026-11-19T10:00:00Z"),  # 250.5
        usage("u1", cost_usd="1", user_id="jdoe"),  # 100, no app
        metered("r1", "agent_run", agent_id="bot-1", quantity=4),  # 4, an agent only
        usage("oct", cost_usd="5", app_id=APP, occurred_at="2026-10-30T10:00:00Z"),  # last month: 500
    ]
    assert h.post_events(agent, events).status_code == 202
    h.project()
    return agent


def _seed_keys(rows: list[dict]) -> list[dict]:
    """Rows without the exact totalCreditsNanos beside each rounded figure."""
    return [{k: v for k, v in r.items() if k != "totalCreditsNanos"} for r in rows]


def test_usage_has_the_seed_shape_and_defaults_to_the_current_month(h, spent):
    response = get(h, "/api/usage")
    assert response.status_code == 200, response.json
    body = response.json
    assert list(body) == ["usageSummary", "dailyTotals", "budgets", "creditPool", "sync",
                          "totalCredits", "totalCreditsNanos", "range"]  # the seed's keys first
    assert body["totalCredits"] == 1354.5 and body["totalCreditsNanos"] == 1354_500_000_000
    assert sum(r["totalCreditsNanos"] for r in body["usageSummary"]) == body["totalCreditsNanos"]
    assert sum(r["totalCreditsNanos"] for r in body["dailyTotals"]) == body["totalCreditsNanos"]
    assert _seed_keys(body["usageSummary"]) == [
        {"entityId": APP, "entityType": "app", "resourceType": "ai", "totalCredits": 1250.5, "totalEvents": 2},
        {"entityId": "jdoe", "entityType": "user", "resourceType": "ai", "totalCredits": 100, "totalEvents": 1},
        {"entityId": "bot-1", "entityType": "agent", "resourceType": "agent_run", "totalCredits": 4, "totalEvents": 1},
    ]
    assert _seed_keys(body["dailyTotals"]) == [
        {"date": "2026-11-19", "resourceType": "ai", "totalCredits": 250.5},
        {"date": "2026-11-20", "resourceType": "agent_run", "totalCredits": 4},
        {"date": "2026-11-20", "resourceType": "ai", "totalCredits": 1100},
    ]
    assert body["budgets"] == []
    assert body["creditPool"] == {"included": 0, "used": 1354.5, "remaining": 0}
    assert body["sync"] == {"syncedAt": None, "lastSyncFailedAt": None, "lastSyncFailureCode": None, "stalenessLevel": None}


def test_usage_start_and_end_dates_are_inclusive(h, spent):
    body = get(h, "/api/usage?startDate=2026-10-30&endDate=2026-11-19").json
    assert _seed_keys(body["dailyTotals"]) == [
        {"date": "2026-10-30", "resourceType": "ai", "totalCredits": 500},
        {"date": "2026-11-19", "resourceType": "ai", "totalCredits": 250.5},
    ]
    assert body["creditPool"]["used"] == 1354.5  # the pool is always the current month


@pytest.mark.parametrize("query", ["startDate=2026-11-10&endDate=2026-11-01", "startDate=yesterday", "endDate=2026-13-01"])
def test_usage_rejects_bad_dates(h, spent, query):
    assert get(h, f"/api/usage?{query}").status_code == 422


def test_budgets_are_the_orgs_monthly_credit_budgets_of_apps_and_users(h, agent, spent):
    def budget(budget_id: str, **fields):
        body = {"id": budget_id, "name": budget_id, "period": "monthly", "unit": "credits", **fields}
        response = h.http.post("/api/v1/budgets", json=body, headers=agent)
        assert response.status_code == 201, response.json

    budget("sales-app", scope="app", scope_id=APP, limit_credits=2000)
    budget("jane", scope="user", scope_id="jdoe", limit_credits=1000)
    budget("usd-budget", scope="app", scope_id=APP, limit_usd=50, unit="usd")  # not a credits budget
    budget("daily", scope="user", scope_id="jdoe", limit_credits=5, period="daily")  # not monthly
    budget("team", scope="team", scope_id="eng", limit_credits=10)  # not an app or a user
    budget("off", scope="user", scope_id="asmith", limit_credits=10, enabled=False)
    h.project()
    budgets = get(h, "/api/usage").json["budgets"]
    assert budgets == [
        {
            "entityId": APP, "entityType": "app", "monthlyBudget": 2000, "creditsUsed": 1250.5, "isOverBudget": False,
            "budgetPercent": 62.5, "budgetRemaining": 749.5,
            "entity": {"name": "Sales Dashboard", "slug": "sales-dashboard", "ownerId": "jdoe"},
        },
        {
            "entityId": "jdoe", "entityType": "user", "monthlyBudget": 1000, "creditsUsed": 1100, "isOverBudget": True,
            "budgetPercent": 110.0, "budgetRemaining": 0,
            "entity": {"name": "jdoe", "slug": None, "ownerId": None},
        },
    ]


def test_entities_are_registered_once(h, agent):
    body = {"tenant_id": "acme", "entity_id": "x", "entity_type": "app", "name": "X"}
    assert h.admin("POST", "/api/v1/admin/entities", json=body).status_code == 201
    assert h.admin("POST", "/api/v1/admin/entities", json=body).status_code == 409
    assert h.admin("POST", "/api/v1/admin/entities", json={**body, "entity_type": "team"}).status_code == 422
    assert h.admin("POST", "/api/v1/admin/entities", json={**body, "tenant_id": "nobody"}).status_code == 404


# monthly and top consumers -------------------------------------------------------------------
def test_monthly_has_the_seed_shape(h, spent):
    body = get(h, "/api/usage/monthly").json
    assert list(body) == ["history", "creditPool"]
    assert body["history"] == [
        {"month": "2026-10", "resourceType": "ai", "totalCredits": 500, "totalEvents": 1},
        {"month": "2026-11", "resourceType": "agent_run", "totalCredits": 4, "totalEvents": 1},
        {"month": "2026-11", "resourceType": "ai", "totalCredits": 1350.5, "totalEvents": 3},
    ]
    assert get(h, "/api/usage/monthly?months=1").json["history"] == body["history"][1:]


@pytest.mark.parametrize("months", ["0", "25", "x"])
def test_monthly_out_of_range_is_422(h, spent, months):
    assert get(h, f"/api/usage/monthly?months={months}").status_code == 422


def test_monthly_accepts_24(h, spent):
    assert get(h, "/api/usage/monthly?months=24").status_code == 200


def test_top_consumers_has_the_seed_shape_with_names(h, spent):
    body = get(h, "/api/usage/top-consumers").json
    assert body == {
        "windowDays": 30,
        "startDate": "2026-10-22",
        "endDate": "2026-11-20",
        "topApps": [
            {"entityId": APP, "entityType": "app", "name": "Sales Dashboard", "slug": "sales-dashboard", "totalCredits": 1750.5, "totalEvents": 3},
        ],
        "topUsers": [
            {"actor": "jdoe", "actorType": "user", "displayName": "Jane Doe", "totalCredits": 1100, "totalEvents": 2},
            {"actor": "asmith", "actorType": "user", "displayName": None, "totalCredits": 250.5, "totalEvents": 1},
            {"actor": "bot-1", "actorType": "agent", "displayName": None, "totalCredits": 4, "totalEvents": 1},
        ],
    }
    narrow = get(h, "/api/usage/top-consumers?days=1&limit=1").json
    assert (narrow["startDate"], narrow["endDate"]) == ("2026-11-20", "2026-11-20")
    assert narrow["topApps"][0]["totalCredits"] == 1000
    assert [u["actor"] for u in narrow["topUsers"]] == ["jdoe"]


@pytest.mark.parametrize("query", ["days=0", "days=366", "limit=0", "limit=51", "days=x"])
def test_top_consumers_out_of_range_is_422(h, spent, query):
    assert get(h, f"/api/usage/top-consumers?{query}").status_code == 422


# License Manager sync ------------------------------------------------------------------------
LICENSES = {
    "LIC-OK": (200, {"license_key": "LIC-OK", "tier": "Enterprise", "nodes_total": 10, "credits_included": 50000,
                     "expires_at": "2027-06-30T00:00:00Z", "status": "active"}),
    "LIC-GONE": (404, {"error": "not found"}),
    "LIC-BUSY": (503, {"error": "maintenance"}),
    "LIC-BROKEN": (500, {"error": "boom"}),
    "LIC-GARBLED": (200, ["not", "a", "licence"]),
}
ORGS = {"ok": "LIC-OK", "gone": "LIC-GONE", "busy": "LIC-BUSY", "broken": "LIC-BROKEN", "garbled": "LIC-GARBLED"}


@pytest.fixture
def license_manager():
    seen = []

    def answer(method, path, headers, body):
        seen.append((path, headers.get("Authorization")))
        status, payload = LICENSES.get(path.rsplit("/", 1)[-1], (404, {}))
        return status, as_json(payload)

    server = FakeServer(answer)
    server.seen = seen
    yield server
    server.stop()


def issue_license(h, org: str, key: str) -> None:
    response = h.admin("POST", "/api/v1/admin/licenses", json={
        "tenant_id": "acme", "org_id": org, "tier": "Enterprise", "nodes_total": 10,
        "expires_at": "2027-12-31T00:00:00Z", "license_key": key,
    })
    assert response.status_code == 201, response.json


@pytest.fixture
def lm(database_url, clock, license_manager):
    harness = Harness(make_settings(
        database_url, clock, license_manager_url=license_manager.url, license_manager_token="lm-token",
    ))
    harness.tenant("acme", tuple(ORGS))
    for org, key in ORGS.items():  # the licences issued through the API are the ones synced
        issue_license(harness, org, key)
    harness.project()
    yield harness
    harness.close()


def sync_block(h, org: str) -> dict:
    return get(h, "/api/usage", headers={"X-Tenant-ID": "acme", "X-Org-ID": org}).json["sync"]


def test_each_license_manager_answer_has_its_code(lm, license_manager):
    response = lm.admin("POST", "/api/v1/admin/licenses/sync")
    assert response.status_code == 200, response.json
    codes = {o["org_id"]: o["code"] for o in response.json["synced"]}
    assert codes == {"ok": None, "gone": "license_not_recognized", "busy": "lm_unavailable", "broken": "lm_error", "garbled": "lm_error"}
    assert all(auth == "Bearer lm-token" for _, auth in license_manager.seen)
    assert sorted(p for p, _ in license_manager.seen) == sorted(f"/api/v1/licenses/{k}" for k in ORGS.values())
    lm.project()
    assert sync_block(lm, "ok") == {"syncedAt": "2026-11-20T12:00:00Z", "lastSyncFailedAt": None, "lastSyncFailureCode": None, "stalenessLevel": None}
    assert sync_block(lm, "gone") == {
        "syncedAt": None, "lastSyncFailedAt": "2026-11-20T12:00:00Z", "lastSyncFailureCode": "license_not_recognized", "stalenessLevel": "critical",
    }
    assert sync_block(lm, "busy")["lastSyncFailureCode"] == "lm_unavailable"
    assert sync_block(lm, "broken")["lastSyncFailureCode"] == "lm_error"
    pool = get(lm, "/api/usage", headers={"X-Tenant-ID": "acme", "X-Org-ID": "ok"}).json["creditPool"]
    assert pool == {"included": 50000, "used": 0, "remaining": 50000}


def test_an_unreachable_license_manager_and_staleness_over_time(lm, clock):
    lm.admin("POST", "/api/v1/admin/licenses/sync")
    lm.project()
    dead = replace(lm.settings, license_manager_url=f"http://127.0.0.1:{free_port()}")
    from workers import license_sync

    clock.advance(hours=23, minutes=59)
    outcomes = {o.org_id: o for o in license_sync.run(dead)}
    assert outcomes["ok"].code == "lm_unreachable" and not outcomes["ok"].ok
    lm.project()
    assert sync_block(lm, "ok") == {
        "syncedAt": "2026-11-20T12:00:00Z", "lastSyncFailedAt": "2026-11-21T11:59:00Z", "lastSyncFailureCode": "lm_unreachable", "stalenessLevel": None,
    }
    clock.advance(minutes=1)  # 24 h since the last success
    assert sync_block(lm, "ok")["stalenessLevel"] == "stale"
    clock.set(clock.now() + timedelta(days=6))  # 7 days exactly: still stale
    assert sync_block(lm, "ok")["stalenessLevel"] == "stale"
    clock.advance(seconds=1)
    assert sync_block(lm, "ok")["stalenessLevel"] == "critical"
    # the licence's credits stay until a sync says otherwise; a success clears the failure
    assert get(lm, "/api/usage", headers={"X-Tenant-ID": "acme", "X-Org-ID": "ok"}).json["creditPool"]["included"] == 50000
    lm.admin("POST", "/api/v1/admin/licenses/sync")
    lm.project()
    block = sync_block(lm, "ok")
    assert block["lastSyncFailedAt"] is None and block["lastSyncFailureCode"] is None and block["stalenessLevel"] is None


def test_sync_without_a_license_manager_is_503(h, agent):
    response = h.admin("POST", "/api/v1/admin/licenses/sync")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "LICENSE_MANAGER_NOT_CONFIGURED"


def test_the_sync_license_command_runs_the_same_sync(tmp_path, license_manager, clock):
    from click.testing import CliRunner

    from usage_ledger import cli

    url = f"sqlite:///{tmp_path}/cli.db"
    env = {"DATABASE_URL": url, "LICENSE_MANAGER_URL": license_manager.url}
    h = Harness(make_settings(url, clock))
    try:
        h.tenant("acme", ("ok", "gone"))
        issue_license(h, "ok", "LIC-OK")
        h.project()
        result = CliRunner().invoke(cli.main, ["sync-license"], env=env)
        assert result.exit_code == 0, result.output
        assert [s["ok"] for s in json.loads(result.stdout)["synced"]] == [True]
        issue_license(h, "gone", "LIC-GONE")
        h.project()
        result = CliRunner().invoke(cli.main, ["sync-license"], env=env)
        assert result.exit_code == 2
        assert {s["org_id"]: s.get("code") for s in json.loads(result.stdout)["synced"]}["gone"] == "license_not_recognized"
    finally:
        h.close()


def test_the_new_read_models_equal_a_replay(lm, clock):
    """rebuild --check: credits (rates, gauges), entities, licence sync and axon audit."""
    from projections.framework import check
    from projections.registry import all_projections

    agent = lm.agent("acme", "ok")
    lm.admin("PUT", "/api/v1/admin/credit-rates", json={"resource_type": "app_storage", "credits_per_unit": "0.000000002",
                                                        "effective_from": "2026-11-18T06:00:00Z"})
    lm.admin("POST", "/api/v1/admin/entities", json={"tenant_id": "acme", "entity_id": "files", "entity_type": "app", "name": "Files"})
    lm.post_events(agent, [gauge("r1", "2026-11-17T00:00:00Z", "1"), gauge("r2", "2026-11-19T00:00:00Z", "3")])
    lm.project()
    lm.post_events(agent, [gauge("r0", "2026-11-18T12:00:00Z", "2"), usage("ax", operation="completion")])
    lm.admin("POST", "/api/v1/admin/licenses/sync")
    lm.project()
    live = {p.name: p for p in all_projections()}
    shadows = {p.name: p for p in all_projections(prefix="check_")}
    for name in ("credits", "entities", "license_sync", "axon_audit", "usage_events", "usage_rollups"):
        assert check(lm.engine, lm.store, live[name], shadows[name]) == [], name
