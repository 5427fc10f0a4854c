"""Budgets on both backends: CRUD with its defaults, the pre-flight check, period status,
tenant isolation."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.budgets.events import BudgetCreated
from ledger.usage.events import UsageAmended, UsageVoided
from ledger.store import NewEvent
from ledger.application import usage_stream
from tests.conftest import usage

SEED_BODY = {
    "id": "monthly-budget",
    "name": "Monthly Production Budget",
    "scope": "organization",
    "limit_usd": 1000.00,
    "period": "monthly",
    "on_exceed": "warn",
    "alert_thresholds": [50, 80, 100],
}


@pytest.fixture
def author(agent) -> dict:
    return {**agent, "X-User-ID": "alice.admin"}


def create(h, headers, **fields):
    body = {"id": "b", "name": "Budget", "limit_usd": 10, "period": "monthly", **fields}
    return h.http.post("/api/v1/budgets", json={k: v for k, v in body.items() if v is not None}, headers=headers)


def check(h, headers, **body):
    """The pre-flight check, reading at least everything in the ledger so far (read-your-writes:
    the check answers from a short-lived snapshot otherwise)."""
    position = h.store.max_position()
    return h.http.post(
        f"/api/v1/budgets/check?min_position={position}", json={"org_id": "prod", **body}, headers=headers
    )


# CRUD and defaults ------------------------------------------------------------------
def test_the_seed_example_creates_the_budget_as_sent(h, author):
    response = h.http.post("/api/v1/budgets", json=SEED_BODY, headers=author)
    assert response.status_code == 201, response.json
    body = response.json
    assert {k: body[k] for k in SEED_BODY} == SEED_BODY
    assert body["created_by"] == "user:alice.admin"
    assert response.headers["X-Ledger-Position"] == str(body["position"])
    h.project()
    fetched = h.http.get("/api/v1/budgets/monthly-budget", headers=author).json
    assert {k: fetched[k] for k in SEED_BODY} == SEED_BODY
    assert fetched["org_id"] == "prod" and fetched["tenant_id"] == "acme"


def test_omitted_fields_take_the_seed_defaults(h, author):
    response = h.http.post(
        "/api/v1/budgets", json={"id": "minimal", "name": "Minimal", "limit_usd": 5, "period": "daily"}, headers=author
    )
    assert response.status_code == 201, response.json
    h.project()
    budget = h.http.get("/api/v1/budgets/minimal", headers=author).json
    assert budget["scope"] == "organization"
    assert budget["scope_id"] is None
    assert budget["on_exceed"] == "warn"
    assert budget["alert_thresholds"] == [50, 80, 100]
    assert budget["enabled"] is True
    assert budget["unit"] == "usd" and budget["limit_usd"] == 5 and budget["limit_credits"] is None
    assert budget["webhook_url"] is None and budget["downgrade_model"] is None


@pytest.mark.parametrize("missing", ["id", "name", "limit_usd", "period"])
def test_required_fields_are_required(h, author, missing):
    body = {"id": "x", "name": "X", "limit_usd": 5, "period": "daily"}
    del body[missing]
    response = h.http.post("/api/v1/budgets", json=body, headers=author)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert missing in error.get("fields", {}) or error.get("field") == missing


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"scope": "galaxy"}, "scope"),
        ({"period": "hourly"}, "period"),
        ({"on_exceed": "explode"}, "on_exceed"),
        ({"on_exceed": "downgrade"}, "downgrade_model"),
        ({"scope": "team"}, "scope_id"),
        ({"limit_usd": 0}, "limit_usd"),
        ({"limit_usd": -5}, "limit_usd"),
        ({"alert_thresholds": [0]}, "alert_thresholds"),
        ({"webhook_url": "ftp://example.invalid/x"}, "webhook_url"),
        ({"unit": "credits"}, "limit_usd"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_budgets_are_rejected_naming_the_field(h, author, fields, field):
    before = h.ledger_count()
    response = create(h, author, **fields)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert field in error.get("fields", {}) or error.get("field") == field, error
    assert h.ledger_count() - before <= 1  # at most the AccessAttempted record, never a budget


def test_a_duplicate_id_is_a_conflict(h, author):
    assert create(h, author, id="dup").status_code == 201
    response = create(h, author, id="dup", name="Other")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "BUDGET_EXISTS"


def test_unknown_budgets_answer_404_everywhere(h, author):
    for method, path in (
        ("GET", "/api/v1/budgets/nope"),
        ("PUT", "/api/v1/budgets/nope"),
        ("DELETE", "/api/v1/budgets/nope"),
        ("GET", "/api/v1/budgets/nope/status"),
        ("GET", "/api/v1/budgets/nope/alerts"),
    ):
        response = h.http.open(path, method=method, json={"name": "x"} if method == "PUT" else None, headers=author)
        assert response.status_code == 404, (method, path, response.json)
        assert response.json["error"]["code"] == "BUDGET_NOT_FOUND"


def test_a_budget_of_another_tenant_is_404_and_never_listed(h, author):
    h.tenant("globex", ("main",))
    other = h.agent("globex", "main")
    assert create(h, other, id="theirs", name="Globex secret").status_code == 201
    h.project()
    for method, path in (
        ("GET", "/api/v1/budgets/theirs"),
        ("PUT", "/api/v1/budgets/theirs"),
        ("DELETE", "/api/v1/budgets/theirs"),
        ("GET", "/api/v1/budgets/theirs/status"),
        ("GET", "/api/v1/budgets/theirs/alerts"),
    ):
        response = h.http.open(path, method=method, json={"name": "mine now"} if method == "PUT" else None, headers=author)
        assert response.status_code == 404, (method, path)
    listed = h.http.get("/api/v1/budgets?tenant_id=globex", headers=author).json
    assert listed["budgets"] == [] and listed["total"] == 0
    listed = h.http.get("/api/v1/budgets?tenant_id=globex&org_id=main", headers=author).json
    assert listed["budgets"] == []
    # and the same id is free in our tenant
    assert create(h, author, id="theirs").status_code == 201
    h.project()
    assert h.http.get("/api/v1/budgets/theirs", headers=other).json["name"] == "Globex secret"


def test_list_filters_scope_scope_id_enabled_and_pages(h, author):
    create(h, author, id="org-1")
    create(h, author, id="team-eng", scope="team", scope_id="engineering")
    create(h, author, id="team-sales", scope="team", scope_id="sales", enabled=False)
    create(h, author, id="agent-bot", scope="agent", scope_id="support-bot")
    create(h, {**author, "X-Org-ID": "research"}, id="research-1")
    h.project()

    def ids(query: str) -> list[str]:
        response = h.http.get(f"/api/v1/budgets{query}", headers=author)
        assert response.status_code == 200, response.json
        return [b["id"] for b in response.json["budgets"]]

    assert ids("") == ["agent-bot", "org-1", "team-eng", "team-sales"]
    assert ids("?scope=team") == ["team-eng", "team-sales"]
    assert ids("?scope=team&scope_id=sales") == ["team-sales"]
    assert ids("?enabled=false") == ["team-sales"]
    assert ids("?enabled=true&scope=team") == ["team-eng"]
    assert ids("?limit=2&offset=1") == ["org-1", "team-eng"]
    assert ids("?org_id=research") == ["research-1"]
    assert ids("?tenant_id=acme&org_id=prod&scope=agent") == ["agent-bot"]
    assert h.http.get("/api/v1/budgets?limit=2", headers=author).json["total"] == 4
    assert h.http.get("/api/v1/budgets?limit=0", headers=author).status_code == 422


def test_put_changes_only_the_fields_sent_and_records_the_author(h, author):
    create(h, author, id="b", name="Before", on_exceed="warn")
    response = h.http.put(
        "/api/v1/budgets/b", json={"limit_usd": 25, "on_exceed": "block"}, headers={**author, "X-User-ID": "bob"}
    )
    assert response.status_code == 200, response.json
    h.project()
    budget = h.http.get("/api/v1/budgets/b", headers=author).json
    assert (budget["name"], budget["limit_usd"], budget["on_exceed"]) == ("Before", 25, "block")
    assert budget["created_by"] == "user:alice.admin" and budget["updated_by"] == "user:bob"
    assert h.http.put("/api/v1/budgets/b", json={"id": "renamed"}, headers=author).status_code == 422


def test_delete_removes_the_budget_and_the_id_can_be_used_again(h, author):
    create(h, author, id="gone")
    assert h.http.delete("/api/v1/budgets/gone", headers=author).status_code == 204
    assert h.http.delete("/api/v1/budgets/gone", headers=author).status_code == 404
    h.project()
    assert h.http.get("/api/v1/budgets/gone", headers=author).status_code == 404
    assert create(h, author, id="gone", name="Again").status_code == 201
    h.project()
    assert h.http.get("/api/v1/budgets/gone", headers=author).json["name"] == "Again"


def test_every_budget_write_is_an_event_with_its_author(h, author):
    create(h, author, id="audited")
    h.http.put("/api/v1/budgets/audited", json={"name": "Renamed"}, headers=author)
    h.http.delete("/api/v1/budgets/audited", headers=author)
    create(h, {**author, "X-User-ID": "mallory"}, id="x")
    create(h, {**author, "X-User-ID": "mallory"}, id="x")  # refused: a conflict
    events = [r.event for r in h.store.read()]
    budget_events = [(e.type, e.actor) for e in events if e.type.startswith("Budget")]
    assert budget_events == [
        ("BudgetCreated", "user:alice.admin"),
        ("BudgetUpdated", "user:alice.admin"),
        ("BudgetDeleted", "user:alice.admin"),
        ("BudgetCreated", "user:mallory"),
    ]
    updated = next(e for e in events if e.type == "BudgetUpdated")
    assert updated.changed == ("name",) and updated.previous.name == "Budget"
    refused = [e for e in events if e.type == "AccessAttempted"]
    assert [(e.action, e.target, e.outcome, e.reason, e.details) for e in refused] == [
        ("BUDGET_CREATE", "x", "failure", "BUDGET_EXISTS", {"on_behalf_of": "mallory"})
    ]
    assert refused[0].actor.startswith("client:")  # the client acted; the user is only asserted


def test_credit_budgets_count_credits(h, author, agent):
    response = create(h, author, id="credits", limit_usd=None, unit="credits", limit_credits=100, period="monthly")
    assert response.status_code == 201, response.json
    assert response.json["limit_credits"] == 100 and response.json["limit_usd"] is None
    h.post_events(agent, [usage("c-1", credits="60", cost_usd="999")])
    h.project()
    status = h.http.get("/api/v1/budgets/credits/status", headers=agent).json
    assert (status["unit"], status["used"], status["limit"], status["percentage"]) == ("credits", 60, 100, 60)
    assert status["status"] == "warning" and status["thresholds_crossed"] == [50]


# status -----------------------------------------------------------------------------
def test_status_is_ok_then_warning_then_exceeded(h, author, agent):
    create(h, author, id="s", limit_usd=100, period="monthly")
    h.project()
    status = h.http.get("/api/v1/budgets/s/status", headers=agent).json
    assert status == {
        "budget_id": "s",
        "budget_name": "Budget",
        "period": "monthly",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "unit": "usd",
        "used": 0,
        "limit": 100,
        "remaining": 100,
        "percentage": 0,
        "status": "ok",
        "thresholds_crossed": [],
        "as_of": "2026-11-20T12:00:00Z",
        "held_usd": 0,
        "available_usd": 100,
        "position": status["position"],
    }
    h.post_events(agent, [usage("s-1", cost_usd="49.99")])
    h.project()
    status = h.http.get("/api/v1/budgets/s/status", headers=agent).json
    assert (status["status"], status["used"], status["remaining"], status["thresholds_crossed"]) == ("ok", 49.99, 50.01, [])
    h.post_events(agent, [usage("s-2", cost_usd="0.01")])
    h.project()
    status = h.http.get("/api/v1/budgets/s/status", headers=agent).json
    assert (status["status"], status["percentage"], status["thresholds_crossed"]) == ("warning", 50, [50])
    h.post_events(agent, [usage("s-3", cost_usd="60")])
    h.project()
    status = h.http.get("/api/v1/budgets/s/status", headers=agent).json
    assert (status["status"], status["used"], status["remaining"], status["percentage"]) == ("exceeded", 110, 0, 110)
    assert status["thresholds_crossed"] == [50, 80, 100]


def test_reads_wait_for_min_position_instead_of_sleeping(h, author):
    position = create(h, author, id="later").json["position"]
    response = h.http.get(f"/api/v1/budgets/later?min_position={position}", headers={**author})
    assert response.status_code == 503  # nobody projects in this test: the wait runs out
    assert response.headers["Retry-After"]
    h.project()
    response = h.http.get(f"/api/v1/budgets/later?min_position={position}", headers=author)
    assert response.status_code == 200 and int(response.headers["X-Ledger-Position"]) >= position


def test_a_budget_created_mid_period_counts_the_periods_earlier_spend(h, author, agent):
    h.post_events(agent, [usage("early-1", cost_usd="30", occurred_at="2026-11-02T10:00:00Z"),
                          usage("early-2", cost_usd="20", occurred_at="2026-11-19T10:00:00Z"),
                          usage("last-month", cost_usd="500", occurred_at="2026-10-31T23:59:59Z")])
    h.project()
    create(h, author, id="late", limit_usd=100, period="monthly")
    h.project()
    status = h.http.get("/api/v1/budgets/late/status", headers=agent).json
    assert status["used"] == 50 and status["thresholds_crossed"] == [50]


def test_voids_and_amends_change_the_spend(h, author, agent):
    create(h, author, id="v", limit_usd=100, period="daily")
    h.post_events(agent, [usage("keep", cost_usd="10"), usage("void-me", cost_usd="30"), usage("amend-me", cost_usd="5")])
    h.project()
    stored = h.store.first_events([usage_stream("acme", "void-me"), usage_stream("acme", "amend-me")])
    voided = stored[usage_stream("acme", "void-me")].usage
    amended = stored[usage_stream("acme", "amend-me")].usage
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    common = dict(tenant_id="acme", org_id="prod", recorded_at=now, actor="admin")
    h.store.append([
        NewEvent(usage_stream("acme", "void-me"), 2, UsageVoided(**common, event_id="void-me", reason="test", voided=voided)),
        NewEvent(usage_stream("acme", "amend-me"), 2, UsageAmended(
            **common, event_id="amend-me", reason="test", fields={"cost_usd": "7.5"},
            previous=amended, current=_replace(amended, cost_usd=Decimal("7.5")),
        )),
    ])
    h.project()
    assert h.http.get("/api/v1/budgets/v/status", headers=agent).json["used"] == 17.5


def _replace(struct, **changes):
    import msgspec

    return msgspec.structs.replace(struct, **changes)


# period boundaries with the injected clock ---------------------------------------------
def test_a_monthly_budget_starts_again_at_the_end_of_the_month(h, author, agent, clock):
    clock.set(datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc))
    create(h, author, id="m", limit_usd=100, period="monthly", on_exceed="block")
    h.post_events(agent, [usage("nov", cost_usd="100", occurred_at="2026-11-30T23:59:59Z")])
    h.project()
    assert check(h, agent, estimated_cost_usd=0.01).json["allowed"] is False
    clock.set(datetime(2026, 12, 1, 0, 0, 0, tzinfo=timezone.utc))
    assert check(h, agent, estimated_cost_usd=0.01).json == {"allowed": True}
    h.post_events(agent, [usage("dec", cost_usd="1", occurred_at="2026-12-01T00:00:00Z")])
    h.project()
    status = h.http.get("/api/v1/budgets/m/status", headers=agent).json
    assert (status["period_start"], status["period_end"], status["used"]) == ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 1)


def test_a_weekly_budget_runs_from_monday_to_monday(h, author, agent, clock):
    clock.set(datetime(2026, 11, 23, 8, tzinfo=timezone.utc))  # a Monday
    create(h, author, id="w", limit_usd=100, period="weekly")
    h.post_events(agent, [
        usage("sunday", cost_usd="40", occurred_at="2026-11-22T23:59:59Z"),
        usage("monday", cost_usd="2", occurred_at="2026-11-23T00:00:00Z"),
    ])
    h.project()
    status = h.http.get("/api/v1/budgets/w/status", headers=agent).json
    assert (status["period_start"], status["period_end"], status["used"]) == ("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", 2)
    clock.set(datetime(2026, 11, 22, 23, 59, 59, tzinfo=timezone.utc))  # back on Sunday: last week
    status = h.http.get("/api/v1/budgets/w/status", headers=agent).json
    assert (status["period_start"], status["used"]) == ("2026-11-16T00:00:00Z", 40)


def test_a_quarterly_budget_turns_over_on_the_first_of_october(h, author, agent, clock):
    clock.set(datetime(2026, 10, 1, 0, 0, 30, tzinfo=timezone.utc))
    create(h, author, id="q", limit_usd=100, period="quarterly")
    h.post_events(agent, [
        usage("q3", cost_usd="70", occurred_at="2026-09-30T23:59:59Z"),
        usage("q4", cost_usd="3", occurred_at="2026-10-01T00:00:00Z"),
    ])
    h.project()
    status = h.http.get("/api/v1/budgets/q/status", headers=agent).json
    assert (status["period_start"], status["period_end"], status["used"]) == ("2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z", 3)


def test_leap_day_is_its_own_day_and_part_of_february(h, author, agent, clock):
    clock.set(datetime(2028, 2, 29, 23, 0, tzinfo=timezone.utc))
    create(h, author, id="day", limit_usd=100, period="daily")
    create(h, author, id="feb", limit_usd=100, period="monthly")
    create(h, author, id="year", limit_usd=100, period="yearly")
    h.post_events(agent, [
        usage("feb-28", cost_usd="1", occurred_at="2028-02-28T23:59:59Z"),
        usage("feb-29", cost_usd="2", occurred_at="2028-02-29T00:00:00Z"),
    ])
    h.project()
    day = h.http.get("/api/v1/budgets/day/status", headers=agent).json
    assert (day["period_start"], day["period_end"], day["used"]) == ("2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z", 2)
    feb = h.http.get("/api/v1/budgets/feb/status", headers=agent).json
    assert (feb["period_start"], feb["period_end"], feb["used"]) == ("2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", 3)
    year = h.http.get("/api/v1/budgets/year/status", headers=agent).json
    assert (year["period_start"], year["period_end"], year["used"]) == ("2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z", 3)


# the pre-flight check -----------------------------------------------------------------
def test_nothing_over_budget_answers_exactly_allowed_true(h, author, agent):
    h.project()
    assert check(h, agent).json == {"allowed": True}
    create(h, author, id="roomy", limit_usd=100, on_exceed="block")
    h.post_events(agent, [usage("small", cost_usd="1")])
    h.project()
    response = check(h, agent, team_id="engineering", agent_id="support-bot", estimated_cost_usd=5)
    assert response.status_code == 200 and response.json == {"allowed": True}


def test_a_block_budget_at_99_9_percent_blocks_an_estimate_that_crosses_it(h, author, agent):
    create(h, author, **SEED_BODY | {"on_exceed": "block"})
    h.post_events(agent, [usage("almost", cost_usd="999")])
    h.project()
    assert check(h, agent, estimated_cost_usd=1).json == {"allowed": True}  # exactly at the limit is not over it
    assert check(h, agent, estimated_cost_usd=1.01).json == {
        "allowed": False,
        "action": "block",
        "budget_id": "monthly-budget",
        "budget_name": "Monthly Production Budget",
        "used_usd": 999,
        "held_usd": 0,
        "limit_usd": 1000,
        "percentage": 99.9,
        "message": "Budget exceeded",
    }


def test_an_exceeded_block_budget_answers_the_seed_response(h, author, agent):
    create(h, author, **SEED_BODY | {"on_exceed": "block"})
    h.post_events(agent, [usage("over", cost_usd="1100")])
    h.project()
    assert check(h, agent, team_id="engineering", agent_id="support-bot").json == {
        "allowed": False,
        "action": "block",
        "budget_id": "monthly-budget",
        "budget_name": "Monthly Production Budget",
        "used_usd": 1100,
        "held_usd": 0,
        "limit_usd": 1000,
        "percentage": 110,
        "message": "Budget exceeded",
    }


def test_warn_and_downgrade_allow_and_the_most_restrictive_wins(h, author, agent):
    create(h, author, id="warn-org", name="Warn", limit_usd=10, on_exceed="warn")
    create(h, author, id="down-team", name="Down", scope="team", scope_id="engineering", limit_usd=10,
           on_exceed="downgrade", downgrade_model="gpt-4o-mini")
    create(h, author, id="block-agent", name="Block", scope="agent", scope_id="support-bot", limit_usd=10, on_exceed="block")
    h.post_events(agent, [usage("spend", cost_usd="12", team_id="engineering", agent_id="support-bot")])
    h.project()
    warned = check(h, agent).json
    assert warned == {
        "allowed": True,
        "action": "warn",
        "warnings": [{"budget_id": "warn-org", "budget_name": "Warn", "used_usd": 12, "held_usd": 0, "limit_usd": 10,
                      "percentage": 120, "message": "Budget exceeded"}],
    }
    downgraded = check(h, agent, team_id="engineering").json
    assert downgraded["allowed"] is True and downgraded["action"] == "downgrade"
    assert downgraded["downgrade_model"] == "gpt-4o-mini" and downgraded["budget_id"] == "down-team"
    assert [w["budget_id"] for w in downgraded["warnings"]] == ["warn-org"]
    blocked = check(h, agent, team_id="engineering", agent_id="support-bot").json
    assert blocked["allowed"] is False and blocked["budget_id"] == "block-agent" and blocked["budget_name"] == "Block"
    assert check(h, agent, team_id="sales", agent_id="other-bot").json["action"] == "warn"


def test_only_enabled_budgets_of_the_org_and_matching_scopes_count(h, author, agent):
    create(h, author, id="off", limit_usd=1, on_exceed="block", enabled=False)
    create(h, author, id="wf", scope="workflow", scope_id="nightly", limit_usd=1, on_exceed="block")
    create(h, author, id="usr", scope="user", scope_id="jdoe", limit_usd=1, on_exceed="block")
    create(h, author, id="app", scope="app", scope_id="console", limit_usd=1, on_exceed="block")
    create(h, {**author, "X-Org-ID": "research"}, id="research-block", limit_usd=1, on_exceed="block")
    h.post_events(agent, [usage("big", cost_usd="5", workflow_id="nightly", user_id="jdoe", app_id="console")])
    h.project()
    assert check(h, agent).json == {"allowed": True}
    assert check(h, agent, workflow_id="nightly").json["budget_id"] == "wf"
    assert check(h, agent, user_id="jdoe").json["budget_id"] == "usr"
    assert check(h, agent, app_id="console").json["budget_id"] == "app"
    assert check(h, agent, workflow_id="daily", user_id="kchen", app_id="other").json == {"allowed": True}
    # the research org has no spend, so its block budget is not exceeded
    assert check(h, agent, org_id="research").json == {"allowed": True}
    assert check(h, agent, org_id="research", estimated_cost_usd=2).json["budget_id"] == "research-block"
    h.tenant("globex", ("main",))
    assert check(h, agent, org_id="main").status_code == 404


def test_the_check_reads_only_matching_budgets_among_hundreds(h, author, agent):
    for i in range(300):
        create(h, author, id=f"agent-{i:03d}", scope="agent", scope_id=f"bot-{i:03d}", limit_usd=1, on_exceed="block")
    h.post_events(agent, [usage(f"u-{i}", cost_usd="2", agent_id=f"bot-{i:03d}") for i in range(0, 300, 3)])
    h.project()
    assert check(h, agent, agent_id="bot-003").json["budget_id"] == "agent-003"
    assert check(h, agent, agent_id="bot-004").json == {"allowed": True}
    assert check(h, agent, agent_id="bot-004", estimated_cost_usd=1.5).json["budget_id"] == "agent-004"


def test_check_and_budgets_need_client_credentials(h, author):
    assert h.http.post("/api/v1/budgets/check", json={"org_id": "prod"}).status_code == 401
    assert h.http.get("/api/v1/budgets").status_code == 401
    assert check(h, author, estimated_cost_usd=-1).status_code == 422


def test_budget_ids_are_unique_per_tenant_stream(h, author):
    create(h, author, id="evt")
    event = next(r.event for r in h.store.read() if isinstance(r.event, BudgetCreated))
    assert event.budget.alert_thresholds == (Decimal(50), Decimal(80), Decimal(100))
    assert event.tenant_id == "acme" and event.org_id == "prod" and event.client_id


def test_the_check_snapshot_is_refreshed_for_min_position(h, author, agent):
    create(h, author, id="tight", limit_usd=10, on_exceed="block")
    h.project()
    plain = lambda: h.http.post("/api/v1/budgets/check", json={"org_id": "prod"}, headers=agent)  # noqa: E731
    assert plain().json == {"allowed": True}  # may be answered from a snapshot from now on
    position = h.post_events(agent, [usage("burst", cost_usd="20")]).json["position"]
    h.project()
    fresh = h.http.post(f"/api/v1/budgets/check?min_position={position}", json={"org_id": "prod"}, headers=agent)
    assert fresh.json["allowed"] is False and int(fresh.headers["X-Ledger-Position"]) >= position


@pytest.mark.parametrize("unit", ["usd", "credits"])
def test_at_exactly_100_percent_the_check_refuses_and_the_status_says_exceeded(h, author, agent, unit):
    limit = {"limit_usd": 100} if unit == "usd" else {"limit_usd": None, "unit": "credits", "limit_credits": 100}
    create(h, author, id="full", name="Full", on_exceed="block", **limit)
    spend = {"cost_usd": "99.5", "credits": "99.5"}
    h.post_events(agent, [usage("most", **spend)])
    h.project()
    if unit == "usd":  # a request that fits exactly is allowed
        assert check(h, agent, estimated_cost_usd=0.5).json == {"allowed": True}
    assert check(h, agent).json == {"allowed": True}
    assert h.http.get("/api/v1/budgets/full/status", headers=agent).json["status"] == "warning"
    h.post_events(agent, [usage("rest", cost_usd="0.5", credits="0.5")])
    h.project()
    status = h.http.get("/api/v1/budgets/full/status", headers=agent).json
    assert (status["used"], status["limit"], status["percentage"], status["status"]) == (100, 100, 100, "exceeded")
    assert status["remaining"] == 0 and status["thresholds_crossed"] == [50, 80, 100]
    assert check(h, agent).json == {
        "allowed": False,
        "action": "block",
        "budget_id": "full",
        "budget_name": "Full",
        f"used_{unit}": 100,
        f"held_{unit}": 0,
        f"limit_{unit}": 100,
        "percentage": 100,
        "message": "Budget exceeded",
    }
    assert check(h, agent, estimated_cost_usd=0).json["allowed"] is False
