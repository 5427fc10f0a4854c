"""A hypothesis state machine over ingest, void, amend, budget create/update/delete and
budget holds (reserve, commit by call or by a usage event, release, expire). The model keeps
what the ledger should hold; at every step, committed holds plus outstanding holds of the
block budget never exceed its limit, and every reserve is granted exactly when the model
says it fits. After any run:

- every read model equals a replay of the ledger into shadow tables
  (projections.framework.check against all_projections(prefix="check_"));
- /api/v1/usage/summary and /api/v1/budgets/{id}/status answer the totals the model keeps;
- every answer is the one the model predicts (202 / duplicate / 409 / 404 ...).

Bounded: derandomized, 12 runs of 15 steps on SQLite and 6 on PostgreSQL."""
from __future__ import annotations

import tempfile
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from projections import framework
from projections.registry import all_projections
from tests.conftest import ADMIN_KEY, NOW, Harness, drop_database, make_settings, new_database_url, usage
from ledger.clock import FixedClock
from workers.hold_expiry import expire_due

EVENT_IDS = [f"ev-{i}" for i in range(6)]
BUDGET_IDS = ["bud-org", "bud-team"]
COSTS = [Decimal("0.1"), Decimal("0.25"), Decimal("1.333333"), Decimal("0"), Decimal("2.5")]
TEAMS = ["t1", "t2"]
ADMIN = {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": "acme", "X-Org-ID": "prod"}
SIX = Decimal("0.000001")
HOLD_LIMIT = Decimal("5")  # the block budget of app "held-app", spent only through holds
HOLD_AMOUNTS = [Decimal("0.5"), Decimal("1"), Decimal("2.5")]


def money(value: Decimal) -> float:
    return float(value.quantize(SIX))



def _correction_applied(response, known: dict | None) -> bool:
    """A void or amend answers 404 for an unknown event, 409 once it is voided, else 200
    (and then the model applies it)."""
    if known is None:
        assert response.status_code == 404, response.json
        return False
    if known["voided"]:
        assert response.status_code == 409, response.json
        return False
    assert response.status_code == 200, response.json
    return True

class LedgerMachine(RuleBasedStateMachine):
    """Usage events keyed by id: {id: {"body": variant, "tokens", "cost", "team", "voided"}};
    budgets keyed by id: {id: limit}."""

    backend = "sqlite"

    @initialize()
    def start(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.url = new_database_url(self.backend, self.tmp.name)
        self.clock = FixedClock(NOW)
        self.h = Harness(make_settings(self.url, self.clock))
        self.h.tenant("acme", ("prod",))
        self.agent = self.h.agent("acme", "prod")
        self.events: dict[str, dict] = {}
        self.budgets: dict[str, Decimal] = {}
        # holds: {hold_id: {"amount", "expires_at", "state", "actual"}}
        self.holds: dict[str, dict] = {}
        # usage in "held-app" beyond what its holds' commits say (a usage event carrying the
        # id of a hold it did not commit; one that replaces a call's commit by its own cost):
        # a reserve sees it once the read model has (`project`)
        self.spend_unseen = self.spend_seen = Decimal(0)
        created = self.h.http.post("/api/v1/budgets", headers=self.agent, json={
            "id": "bud-hold", "name": "held", "scope": "app", "scope_id": "held-app", "limit_usd": str(HOLD_LIMIT),
            "period": "monthly", "on_exceed": "block",
        })
        assert created.status_code == 201, created.json
        self.h.project()

    def teardown(self):
        h = getattr(self, "h", None)
        if h is None:
            return
        try:
            h.project()
            self.compare_answers()
            for live, shadow in zip(all_projections(), all_projections(prefix="check_")):
                differing = framework.check(h.engine, h.store, live, shadow)
                assert differing == [], f"{live.name}: {differing} differ from a replay of the ledger"
        finally:
            h.close()
            drop_database(self.url)
            self.tmp.cleanup()

    # usage ---------------------------------------------------------------------------
    @rule(event_id=st.sampled_from(EVENT_IDS), variant=st.integers(0, 2), cost=st.sampled_from(COSTS),
          team=st.sampled_from(TEAMS))
    def ingest(self, event_id, variant, cost, team):
        tokens = 100 + variant
        body = usage(event_id, prompt_tokens=tokens, completion_tokens=10, cost_usd=str(cost), team_id=team)
        response = self.h.post_events(self.agent, [body])
        known = self.events.get(event_id)
        if known is None:
            assert response.status_code == 202 and response.json["accepted"] == 1, response.json
            self.events[event_id] = {"body": (variant, cost, team), "tokens": tokens + 10, "cost": cost, "team": team,
                                     "voided": False}
        elif known["body"] == (variant, cost, team):
            assert response.status_code == 202 and response.json["duplicates"] == 1, response.json
        else:
            assert response.status_code == 409, response.json
            assert response.json["error"]["code"] == "IDEMPOTENCY_CONFLICT"

    @rule(event_id=st.sampled_from(EVENT_IDS))
    def void(self, event_id):
        response = self.h.http.post(f"/api/v1/events/{event_id}/void", headers=ADMIN, json={"reason": "wrong"})
        known = self.events.get(event_id)
        if _correction_applied(response, known):
            known["voided"] = True

    @rule(event_id=st.sampled_from(EVENT_IDS), prompt=st.integers(0, 500), cost=st.sampled_from(COSTS))
    def amend(self, event_id, prompt, cost):
        response = self.h.http.post(
            f"/api/v1/events/{event_id}/amend", headers=ADMIN,
            json={"reason": "fix", "fields": {"prompt_tokens": prompt, "cost_usd": str(cost)}},
        )
        known = self.events.get(event_id)
        if _correction_applied(response, known):
            known["tokens"], known["cost"] = prompt + 10, cost

    # budgets -------------------------------------------------------------------------
    @rule(budget_id=st.sampled_from(BUDGET_IDS), limit=st.sampled_from([Decimal("1"), Decimal("3.5"), Decimal("100")]))
    def create_budget(self, budget_id, limit):
        scope = {"scope": "team", "scope_id": "t1"} if budget_id == "bud-team" else {}
        response = self.h.http.post("/api/v1/budgets", headers=self.agent, json={
            "id": budget_id, "name": budget_id, "limit_usd": str(limit), "period": "monthly", **scope,
        })
        if budget_id in self.budgets:
            assert response.status_code == 409, response.json
        else:
            assert response.status_code in (201, 409), response.json  # a deleted id may stay taken
            if response.status_code == 201:
                self.budgets[budget_id] = limit

    @rule(budget_id=st.sampled_from(BUDGET_IDS), limit=st.sampled_from([Decimal("0.5"), Decimal("2"), Decimal("50")]))
    def update_budget(self, budget_id, limit):
        response = self.h.http.put(f"/api/v1/budgets/{budget_id}", headers=self.agent, json={"limit_usd": str(limit)})
        if budget_id in self.budgets:
            assert response.status_code == 200, response.json
            self.budgets[budget_id] = limit
        else:
            assert response.status_code == 404, response.json

    @rule(budget_id=st.sampled_from(BUDGET_IDS))
    def delete_budget(self, budget_id):
        response = self.h.http.delete(f"/api/v1/budgets/{budget_id}", headers=self.agent)
        if budget_id in self.budgets:
            assert response.status_code == 204, response.json
            del self.budgets[budget_id]
        else:
            assert response.status_code == 404, response.json

    # holds ---------------------------------------------------------------------------
    def outstanding(self) -> Decimal:
        now = self.clock.now()
        return sum((x["amount"] for x in self.holds.values() if x["state"] == "held" and now < x["expires_at"]), Decimal(0))

    def committed(self) -> Decimal:
        return sum((x["actual"] for x in self.holds.values() if x["state"] == "committed"), Decimal(0))

    def held_state(self, hold: dict) -> str:
        return "expired" if hold["state"] == "held" and self.clock.now() >= hold["expires_at"] else hold["state"]

    def project(self) -> None:
        self.h.project()
        self.spend_seen += self.spend_unseen
        self.spend_unseen = Decimal(0)

    @rule(amount=st.sampled_from(HOLD_AMOUNTS), ttl=st.sampled_from([30, 90]))
    def reserve(self, amount, ttl):
        fits = self.committed() + self.spend_seen + self.outstanding() + amount <= HOLD_LIMIT
        response = self.h.http.post("/api/v1/budgets/check", headers=self.agent, json={
            "reserve": True, "estimated_cost_usd": str(amount), "app_id": "held-app", "ttl_seconds": ttl,
        })
        if fits:
            assert response.status_code == 201, response.json
            self.holds[response.json["hold_id"]] = {
                "amount": amount, "expires_at": self.clock.now() + timedelta(seconds=ttl), "state": "held", "actual": None,
            }
        else:
            assert response.status_code == 200 and response.json["allowed"] is False, response.json

    def pick(self, index: int) -> tuple[str, dict] | None:
        if not self.holds:
            return None
        hold_id = sorted(self.holds)[index % len(self.holds)]
        return hold_id, self.holds[hold_id]

    @rule(index=st.integers(0, 20), share=st.sampled_from([Decimal("0"), Decimal("0.4"), Decimal("1")]),
          by_usage=st.booleans())
    def commit_hold(self, index, share, by_usage):
        picked = self.pick(index)
        if picked is None:
            return
        hold_id, hold = picked
        actual = (hold["amount"] * share).quantize(SIX)
        state = self.held_state(hold)
        if by_usage:  # a usage event carrying the hold id: spend either way, a commit only of a held hold
            event_id = f"use-{hold_id}-{len(self.events)}"
            response = self.h.post_events(self.agent, [usage(event_id, cost_usd=str(actual), app_id="held-app",
                                                             team_id="t2", hold_id=hold_id)])
            assert response.status_code == 202, response.json
            self.events[event_id] = {"body": None, "tokens": 1500, "cost": actual, "team": "t2", "voided": False,
                                     "held": state != "held"}
            if state == "held":
                hold.update(state="committed", actual=actual)
            elif state == "committed" and hold.get("by_call") and not hold.get("replaced"):
                hold["replaced"] = True  # the first usage carrying its id is the call's spend: counted once
                self.spend_unseen += actual - hold["actual"]
            else:  # spend recorded without a hold: it can only make later reserves fail
                self.spend_unseen += actual
            return
        response = self.h.http.post(f"/api/v1/budgets/holds/{hold_id}/commit", headers=self.agent,
                                    json={"actual_cost_usd": str(actual)})
        if state == "held":
            assert response.status_code == 200 and response.json["state"] == "committed", response.json
            hold.update(state="committed", actual=actual, by_call=True)
        elif state == "committed" and hold.get("by_call") and hold["actual"] == actual:
            assert response.status_code == 200, response.json
        else:
            assert response.status_code == 409, response.json

    @rule(index=st.integers(0, 20))
    def release_hold(self, index):
        picked = self.pick(index)
        if picked is None:
            return
        hold_id, hold = picked
        state = self.held_state(hold)
        response = self.h.http.post(f"/api/v1/budgets/holds/{hold_id}/release", headers=self.agent)
        if state == "committed":
            assert response.status_code == 409, response.json
        else:
            assert response.status_code == 200 and response.json["state"] == ("released" if state == "held" else state)
            if state == "held":
                hold["state"] = "released"

    @rule(seconds=st.sampled_from([20, 60]), job=st.booleans())
    def time_passes(self, seconds, job):
        self.clock.advance(seconds=seconds)
        if job:
            self.project()
            expire_due(self.h.services)
        for hold in self.holds.values():
            if self.held_state(hold) == "expired":
                hold["state"] = "expired"

    @invariant()
    def holds_never_exceed_the_block_limit(self):
        if hasattr(self, "holds"):
            assert self.committed() + self.outstanding() <= HOLD_LIMIT

    @rule()
    def catch_up(self):
        self.project()
        self.compare_answers()

    @invariant()
    def the_ledger_holds_every_acknowledged_event(self):
        if hasattr(self, "h"):
            assert self.h.ledger_count() >= len(self.events)

    # the model's totals against the API's answers --------------------------------------
    def call_spend(self) -> Decimal:
        """Commits through the endpoint are spend until a usage event carrying the hold's id replaces them."""
        return sum((x["actual"] for x in self.holds.values() if x.get("by_call") and not x.get("replaced")), Decimal(0))

    def compare_answers(self):
        live = [e for e in self.events.values() if not e["voided"]]
        summary = self.h.http.get("/api/v1/usage/summary", headers=self.agent).json
        assert summary["total_llm_requests"] == len(live), summary
        assert summary["total_tokens"] == sum(e["tokens"] for e in live), summary
        assert summary["estimated_cost_usd"] == money(sum((e["cost"] for e in live), Decimal(0))), summary
        for budget_id, limit in self.budgets.items():
            spent = [e for e in live if budget_id == "bud-org" or e["team"] == "t1"]
            used = sum((e["cost"] for e in spent), Decimal(0))
            if budget_id == "bud-org":  # commits through the endpoint are spend of the org too
                used += self.call_spend()
            status = self.h.http.get(f"/api/v1/budgets/{budget_id}/status", headers=self.agent).json
            assert status["used"] == money(used), (budget_id, status, used)
            assert status["limit"] == money(limit), (budget_id, status)
            assert status["status"] == ("exceeded" if used >= limit else status["status"]), status
        status = self.h.http.get("/api/v1/budgets/bud-hold/status", headers=self.agent).json
        hold_spend = sum((e["cost"] for e in live if e.get("held") is not None), Decimal(0))
        call_spend = self.call_spend()
        assert status["used"] == money(hold_spend + call_spend), (status, hold_spend, call_spend)
        assert status["held_usd"] == money(self.outstanding()), status
        for hold_id, hold in self.holds.items():
            answer = self.h.http.get(f"/api/v1/budgets/holds/{hold_id}", headers=self.agent).json
            assert answer["state"] == self.held_state(hold), (answer, hold)
        for budget_id in set(BUDGET_IDS) - set(self.budgets):
            assert self.h.http.get(f"/api/v1/budgets/{budget_id}/status", headers=self.agent).status_code == 404


class PostgresLedgerMachine(LedgerMachine):
    backend = "postgres"


_BOUNDED = dict(
    stateful_step_count=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
LedgerMachine.TestCase.settings = settings(max_examples=12, **_BOUNDED)
PostgresLedgerMachine.TestCase.settings = settings(max_examples=6, **_BOUNDED)
test_sqlite_read_models_always_equal_a_replay_of_the_ledger = LedgerMachine.TestCase
test_postgres_read_models_always_equal_a_replay_of_the_ledger = PostgresLedgerMachine.TestCase
