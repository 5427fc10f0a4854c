"""Budgets in credits count gauge credits too: one "used" figure in the budget status, the
pre-flight check and the credit report."""
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
    check = h.http.post(
        f"/api/v1/budgets/check?min_position={h.store.max_position()}", json={"org_id": "prod", "app_id": APP}, headers=agent
    ).json
    assert check["allowed"] is False, check  # 1,000 event credits alone would fit
