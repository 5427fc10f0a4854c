"""Budget figures that must tie out: budgets in credits count gauge credits too (one "used"
figure in the budget status, the pre-flight check and the credit report), and held amounts
add up exactly however large."""
from __future__ import annotations

from tests.conftest import ADMIN_KEY, usage

APP = "sales-app"
ORG = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}


def test_a_credit_budget_counts_gauge_credits_everywhere(h, agent):
    events = [
        usage("a1", cost_usd="10", app_id=APP),  # 1,000 credits
        # 1 GB of app storage held from midnight: 1 credit per GB-day → 0.5 by noon (now)
        {"event_id": "g1", "event_type": "storage", "resource_type": "app_storage", "quantity": 1_000_000_000,
         "app_id": APP, "occurred_at": "2026-11-20T00:00:00Z"},
    ]
    assert h.post_events(agent, events).status_code == 202
    body = {"id": "app", "name": "app", "period": "monthly", "unit": "credits", "scope": "app", "scope_id": APP,
            "limit_credits": 1000.25, "on_exceed": "block"}
    assert h.http.post("/api/v1/budgets", json=body, headers=agent).status_code == 201
    h.project()
    status = h.http.get("/api/v1/budgets/app/status", headers=agent).json
    report = h.admin("GET", "/api/usage", headers=ORG).json["budgets"]
    assert status["used"] == 1000.5 == report[0]["creditsUsed"]
    listed = h.http.get("/api/v1/budgets", headers=agent).json["budgets"][0]
    assert (listed["used_credits"], listed["available_credits"]) == (1000.5, 0) and "used_usd" not in listed
    check = h.http.post(
        f"/api/v1/budgets/check?min_position={h.store.max_position()}", json={"org_id": "prod", "app_id": APP}, headers=agent
    ).json
    assert check["allowed"] is False, check  # 1,000 event credits alone would fit


def test_a_recreated_budget_has_its_own_alerts(h, agent):
    from projections import framework
    from projections.registry import by_name
    from workers.alerts import BudgetAlerts, WebhookConfig

    job = BudgetAlerts(h.settings, h.store, h.engine, WebhookConfig(timeout_seconds=5, backoff_seconds=30))
    budget = {"id": "b1", "name": "B1", "limit_usd": 100, "period": "monthly", "alert_thresholds": [50, 80, 100]}
    assert h.http.post("/api/v1/budgets", json=budget, headers=agent).status_code == 201
    h.post_events(agent, [usage("spend", cost_usd="100")])
    h.project()
    assert job.run_once()["raised"] == 3
    h.project()
    assert h.http.delete("/api/v1/budgets/b1", headers=agent).status_code in (200, 204)
    assert h.http.post("/api/v1/budgets", json={**budget, "limit_usd": 750}, headers=agent).status_code == 201
    h.project()
    status = h.http.get("/api/v1/budgets/b1/status", headers=agent).json
    assert (status["percentage"], status["thresholds_crossed"]) == (13.33, [])
    assert h.http.get("/api/v1/budgets/b1/alerts", headers=agent).json["alerts"] == []

    h.post_events(agent, [usage("more", cost_usd="300")])  # 400 of 750: 53 %
    h.project()
    assert job.run_once()["raised"] == 1  # the new incarnation raises its own 50 %
    h.project()
    found = h.http.get("/api/v1/budgets/b1/alerts", headers=agent).json["alerts"]
    assert [(a["threshold"], a["limit"], a["raised"]) for a in found] == [(50, 750, True)]
    status = h.http.get("/api/v1/budgets/b1/status", headers=agent).json
    assert status["thresholds_crossed"] == [50]

    projection = by_name("budget_status")  # a replay gives the same rows and raises nothing
    assert framework.check(h.engine, h.store, projection, by_name("budget_status", prefix="check_")) == []
    framework.reset(h.engine, projection)
    framework.catch_up(h.engine, h.store, projection)
    assert job.run_once()["raised"] == 0
    assert h.http.get("/api/v1/budgets/b1/alerts", headers=agent).json["alerts"] == found


def test_held_amounts_past_64_bits_add_up_exactly(h, agent):
    """The held amounts are summed per budget once per statement and picked per budget:
    both sums stay exact past 2^63 nanos (SQLite's own SUM would raise or round)."""
    from sqlalchemy import insert, select

    from projections import budget_queries as q
    from tests.test_budget_holds import create, granted, reserve

    create(h, agent, id="org-warn", on_exceed="warn", limit_usd=10**8)
    h.project()
    first = granted(reserve(h, agent, "2"))
    h.project()
    big, holds = 9 * 10**17, 20  # each within 64 bits; 1.8 × 10^19 nanos together
    t, a = q.BUDGETS.holds, q.BUDGETS.hold_amounts
    with h.engine.begin() as conn:
        conn.execute(a.update().where(a.c.hold_id == first).values(amount_nanos=big))
        hold = dict(conn.execute(select(t).where(t.c.hold_id == first)).mappings().one())
        amount = dict(conn.execute(select(a).where(a.c.hold_id == first)).mappings().one())
        conn.execute(insert(t), [{**hold, "hold_id": f"{first}-{n}"} for n in range(1, holds)])
        conn.execute(insert(a), [{**amount, "hold_id": f"{first}-{n}"} for n in range(1, holds)])
    with h.engine.connect() as conn:
        budget = q.get_budget(conn, "acme", "org-warn")
        held = q.spend_and_held(conn, "acme", [budget], h.settings.clock.now())["org-warn"][1]
        rows, _ = q.org_budgets_with_spend(conn, "acme", budget["org_id"], h.settings.clock.now())
    assert held == big * holds == 18 * 10**18 > 2**63
    assert [r["held_nanos"] for r in rows] == [big * holds]
