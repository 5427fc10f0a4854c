"""A 202 means the event is counted: sums past 64 bits stay exact in every read model (issue
20, item 6), and every value the read models could not hold is refused with 422, nothing
written."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from projections.framework import parked_errors
from tests.conftest import ADMIN_KEY, usage

MAX_COST = Decimal("999999.999999999")  # the highest cost one event may state
EVENTS = 10_000
ORG = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
HOUR = "2026-11-20T11:00:00Z"
APP = "big-app"


def _same(answer: dict, field: str, expected: Decimal, nanos: str | None = None) -> bool:
    """The exact nano figure where the answer has one beside the rounded field; else the
    rounded field is the exact figure rounded once (6 decimals, as JSON numbers)."""
    nanos = nanos or f"{field}_nanos"
    if nanos in answer:
        return int(answer[nanos]) == expected * 10**9
    return answer[field] == float(expected.quantize(Decimal("0.000001")))


def test_ten_thousand_events_at_the_highest_cost_in_one_hour_are_counted_exactly(h, agent):
    for budget in (
        {"id": "usd", "name": "usd", "limit_usd": "999999999", "period": "monthly"},
        {"id": "cr", "name": "cr", "unit": "credits", "scope": "app", "scope_id": APP, "limit_credits": "999999999",
         "period": "monthly"},
    ):
        assert h.http.post("/api/v1/budgets", json=budget, headers=agent).status_code == 201
    for batch in range(EVENTS // 1000):
        events = [
            usage(f"max-{batch}-{i}", cost_usd=str(MAX_COST), app_id=APP, occurred_at=HOUR)
            for i in range(1000)
        ]
        response = h.post_events(agent, events)
        assert response.status_code == 202 and response.json["accepted"] == 1000, response.json
    h.project()
    with h.engine.connect() as conn:
        assert parked_errors(conn) == []
    cost = MAX_COST * EVENTS  # 9,999,999,999.99999: 10^19 nanos, above 2^63
    credits = cost * 100  # ai: 100 credits per dollar; 10^21 nanos
    assert cost * 10**9 > 2**63

    summary = h.http.get("/api/v1/usage/summary?start_date=2026-11-20&end_date=2026-11-20", headers=agent).json
    assert summary["total_events"] == EVENTS, summary
    assert _same(summary, "estimated_cost_usd", cost, "estimated_cost_nanos"), summary
    for granularity in ("hourly", "daily"):
        answer = h.http.get(f"/api/v1/usage?granularity={granularity}&start_date=2026-11-20&end_date=2026-11-20", headers=agent).json
        (row,) = [r for r in answer["data"] if r["event_count"]]
        assert row["event_count"] == EVENTS and _same(row, "estimated_cost_usd", cost, "estimated_cost_nanos"), row
    breakdown = h.http.get(
        "/api/v1/usage/breakdown?start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z&group_by=model", headers=agent
    ).json
    (group,) = breakdown["breakdown"]
    assert group["events"] == EVENTS and _same(group, "cost_usd", cost) and _same(group, "credits", credits), group
    assert breakdown["totals"]["events"] == EVENTS and _same(breakdown["totals"], "cost_usd", cost), breakdown
    # an edge of the window read from the raw events: the sum of per-event rows is exact too
    edge = h.http.get(
        "/api/v1/usage/breakdown?start=2026-11-20T10:30:00Z&end=2026-11-20T11:30:00Z&group_by=model", headers=agent
    ).json
    (group,) = edge["breakdown"]
    assert group["events"] == EVENTS and _same(group, "cost_usd", cost) and _same(group, "credits", credits), group

    usd = h.http.get("/api/v1/budgets/usd/status", headers=agent).json
    assert _same(usd, "used", cost), usd
    assert usd["thresholds_crossed"] == [50, 80, 100]
    cr = h.http.get("/api/v1/budgets/cr/status", headers=agent).json
    assert _same(cr, "used", credits), cr
    report = h.admin("GET", "/api/usage?startDate=2026-11-01&endDate=2026-11-20", headers=ORG).json
    (entry,) = report["usageSummary"]
    assert entry["totalEvents"] == EVENTS and _same(entry, "totalCredits", credits, "totalCreditsNanos"), entry

    # the stored sums are exact integers, never floating point
    with h.engine.connect() as conn:
        for table in ("usage_hourly", "usage_daily", "usage_daily_org", "budget_spend"):
            kinds = conn.execute(text(f"SELECT cost_nanos FROM {table}")).scalars().all()
            assert [int(k) for k in kinds if int(k)] == [cost * 10**9] * len([k for k in kinds if int(k)]), (table, kinds)
            if h.engine.dialect.name == "sqlite":
                types = conn.execute(text(f"SELECT DISTINCT typeof(cost_nanos) FROM {table}")).scalars().all()
                assert "real" not in types, (table, types)


def test_sums_sort_by_their_exact_value_past_64_bits(h, agent):
    """Top models by cost: a sum past 2^63 sorts above every sum within it."""
    small = [usage(f"s-{i}", llm_model="gpt-4o-mini", cost_usd="999999", occurred_at=HOUR) for i in range(3)]
    big = [usage(f"b-{i}", cost_usd=str(MAX_COST), occurred_at=HOUR) for i in range(10_000)]
    for chunk in (small, *[big[i:i + 1000] for i in range(0, len(big), 1000)]):
        assert h.post_events(agent, chunk).status_code == 202
    h.project()
    from projections.usage import UsageTables
    from sqlalchemy import func, select

    t = UsageTables().hourly
    with h.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.model, func.sum(t.c.cost_nanos).label("cost")).group_by(t.c.model).order_by(func.sum(t.c.cost_nanos).desc())
        ).all()
    assert [(m, c) for m, c in rows] == [("gpt-4o", int(MAX_COST * 10**9) * 10_000), ("gpt-4o-mini", 3 * 999999 * 10**9)]


# 422 for every value the read models could not hold; nothing written -------------------------
def _facts(h) -> int:
    """Events in the ledger other than the audit record of a refused attempt."""
    stored = h.store.read_window(0, h.store.max_position() + 1)
    return sum(1 for s in stored if getattr(s, "topic", "") != "AccessAttempted")


def _refused(h, response, field: str) -> None:
    assert response.status_code == 422, response.json
    error = response.json["error"]
    fields = {error.get("field")} | {i.get("field") for i in error.get("items", [])}
    assert field in fields, error


@pytest.mark.parametrize(
    "event, field",
    [
        (usage("c", cost_usd="1000000"), "cost_usd"),
        (usage("c", credits="1000000"), "credits"),
        (usage("c", reported_cost_usd="1000000"), "reported_cost_usd"),
        (usage("c", cost_usd="0.0000000001"), "cost_usd"),
        ({"event_id": "q", "event_type": "app_run", "resource_type": "app_compute", "quantity": 999999999999999}, "quantity"),
        ({"event_id": "q", "event_type": "app_run", "resource_type": "app_compute", "quantity": 10**15}, "quantity"),
        (usage("t", prompt_tokens=10**12 + 1), "prompt_tokens"),
    ],
)
def test_usage_values_past_the_limits_are_refused_with_nothing_recorded(h, agent, event, field):
    before = _facts(h)
    _refused(h, h.post_events(agent, [event]), field)
    assert _facts(h) == before


def test_a_computed_cost_past_the_limit_is_refused_with_nothing_recorded(h, agent):
    price = {"provider": "openai", "model": "gpt-4o", "input_per_1k": "999999.999999999", "output_per_1k": "1"}
    assert h.admin("PUT", "/api/v1/admin/pricing", json=price).status_code == 200
    before = _facts(h)
    # 1,000 tokens at the highest price: below the limit; 2,000: above
    ok = usage("ok", prompt_tokens=1000, completion_tokens=0, occurred_at=None)
    too_much = usage("big", prompt_tokens=2000, completion_tokens=0, occurred_at=None)
    _refused(h, h.post_events(agent, [too_much, ok]), "prompt_tokens")
    assert _facts(h) == before
    assert h.post_events(agent, [ok]).status_code == 202
    h.project()
    (record,) = h.http.get("/api/v1/usage/records?start=2026-11-01", headers=agent).json["records"]
    assert record["event_id"] == "ok" and abs(Decimal(str(record["cost_usd"])) - MAX_COST) < Decimal("0.000001"), record
    with h.engine.connect() as conn:
        assert conn.execute(text("SELECT cost_nanos FROM usage_events")).scalar_one() == int(MAX_COST * 10**9)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"limit_usd": 10_000_000_000}, "limit_usd"),
        ({"limit_usd": 1_000_000_000}, "limit_usd"),
        ({"limit_usd": "0.0000000001"}, "limit_usd"),
        ({"unit": "credits", "limit_credits": 1_000_000_000}, "limit_credits"),
    ],
)
def test_budget_limits_past_the_limits_are_refused(h, agent, body, field):
    before = _facts(h)
    budget = {"id": "b", "name": "b", "period": "monthly", **body}
    _refused(h, h.http.post("/api/v1/budgets", json=budget, headers=agent), field)
    assert _facts(h) == before


@pytest.mark.parametrize(
    "price, field",
    [
        ({"input_per_1k": "1000000", "output_per_1k": "1"}, "input_per_1k"),
        ({"input_per_1k": "1", "output_per_1k": "1000000"}, "output_per_1k"),
        ({"input_per_1k": "1", "output_per_1k": "1", "cached_input_per_1m": "1000000"}, "cached_input_per_1m"),
        ({"input_per_1k": "0.0000000001", "output_per_1k": "1"}, "input_per_1k"),
    ],
)
def test_prices_past_the_limits_are_refused(h, agent, price, field):
    before = _facts(h)
    _refused(h, h.admin("PUT", "/api/v1/admin/pricing", json={"provider": "openai", "model": "gpt-4o", **price}), field)
    assert _facts(h) == before


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/admin/credit-rates", {"resource_type": "app_compute", "credits_per_unit": "1000000000"}, "credits_per_unit"),
    ],
)
def test_credit_rates_past_the_limits_are_refused(h, agent, path, body, field):
    before = _facts(h)
    _refused(h, h.admin("PUT", path, json=body), field)
    assert _facts(h) == before


@pytest.mark.parametrize("field", ["estimated_cost_usd", "estimated_credits"])
def test_hold_estimates_past_the_limits_are_refused(h, agent, field):
    before = _facts(h)
    response = h.http.post("/api/v1/budgets/check", json={"org_id": "prod", "reserve": True, field: "1000000.000000001"}, headers=agent)
    _refused(h, response, field)
    assert _facts(h) == before


def test_an_existing_database_is_rebuilt_with_the_exact_columns(h, agent):
    """A database made before exact sums (64-bit measure columns, older schema versions):
    setup resets the read models whose shape changed and the replay gives the same figures
    in the new columns."""
    from sqlalchemy import BigInteger, Column, MetaData, Table, update

    from projections.framework import catch_up, projection_positions
    from projections.registry import all_projections, setup_database
    from projections.usage import UsageRollupsProjection

    events = [usage(f"e-{i}", cost_usd="1.000000001", occurred_at=HOUR) for i in range(5)]
    assert h.post_events(agent, events).status_code == 202
    h.project()
    before = h.http.get("/api/v1/usage/summary?start_date=2026-11-20&end_date=2026-11-20", headers=agent).json
    rollups = UsageRollupsProjection()
    old = MetaData()
    for table in rollups.tables:  # the old shape: every measure a BIGINT
        Table(table.name, old, *[Column(c.name, BigInteger if c.name.endswith(("_nanos", "_tokens", "_milli")) else c.type,
                                         primary_key=c.primary_key) for c in table.columns])
    rollups.metadata.drop_all(h.engine)
    old.create_all(h.engine)
    with h.engine.begin() as conn:
        for name, version in (("usage_rollups", 3), ("budget_status", 4), ("credits", 1)):
            conn.execute(update(projection_positions).where(projection_positions.c.name == name).values(schema_version=version))

    assert set(setup_database(h.settings)) == {"usage_rollups", "budget_status", "credits"}
    with h.engine.connect() as conn:
        if h.engine.dialect.name == "postgresql":
            kind = conn.execute(text(
                "SELECT data_type, numeric_precision FROM information_schema.columns "
                "WHERE table_name = 'usage_hourly' AND column_name = 'cost_nanos'"
            )).one()
            assert tuple(kind) == ("numeric", 38)
        else:
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'usage_hourly'")).scalar_one()
            assert '"cost_nanos" EXACT_BLOB' in ddl.replace("\n", " ").replace("\t", "") or "cost_nanos EXACT_BLOB" in ddl
    for projection in all_projections():
        catch_up(h.engine, h.store, projection)
    after = h.http.get("/api/v1/usage/summary?start_date=2026-11-20&end_date=2026-11-20", headers=agent).json
    assert {k: v for k, v in after.items() if k != "position"} == {k: v for k, v in before.items() if k != "position"}
    assert after["estimated_cost_nanos"] == 5_000_000_005
