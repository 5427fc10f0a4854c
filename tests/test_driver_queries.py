"""Hot reads run as driver SQL (projections/sql.py `DriverQuery`) answer exactly what
SQLAlchemy's own execution of the same statement answers, on both backends: every column
through its type's result processing (datetimes from SQLite's text, exact sums past 64
bits, the statement's own constants filled in)."""
from __future__ import annotations

from sqlalchemy import update

from projections import budget_queries as bq
from projections.budget_queries import BUDGETS, current_period_starts
from projections.usage import naive_utc
from tests.conftest import NOW, usage
from tests.test_budget_holds import create, granted, reserve


def _both_ways(conn, query, **params):
    driver = query.mappings(conn, **params)
    sqlalchemy = [dict(r) for r in conn.execute(query.statement, params).mappings()]
    return driver, sqlalchemy


def test_the_budgets_with_spend_read_answers_as_sqlalchemy_does(h, agent):
    create(h, agent, id="org-block")
    create(h, agent, id="team-warn", scope="team", scope_id="t1", on_exceed="warn", period="daily")
    create(h, agent, id="credits", limit_usd=None, limit_credits=100, period="weekly")
    create(h, agent, id="agent-down", scope="agent", scope_id="a1", on_exceed="downgrade", downgrade_model="gpt-4o-mini",
           period="yearly")
    assert h.post_events(agent, [usage("u1", team_id="t1", agent_id="a1"), usage("u2")]).status_code in (200, 201, 202)
    h.project()
    granted(reserve(h, agent, "2", team_id="t1"))
    h.project()
    with h.engine.begin() as conn:  # a spend row past 64 bits (SQLite keeps it as text)
        s = BUDGETS.spend.c
        changed = conn.execute(update(BUDGETS.spend).where(
            s.tenant_id == "acme", s.scope == "team", s.scope_id == "t1", s.period == "quarterly",
            s.period_start == current_period_starts(NOW)["quarterly"],
        ).values(cost_nanos=2**64 + 7))
        assert changed.rowcount == 1
    create(h, agent, id="team-quarter", scope="team", scope_id="t1", period="quarterly")
    h.project()

    params = {f"start_{p}": start for p, start in current_period_starts(NOW).items()}
    shapes = {None: {}, 2: {"scope_0": "organization", "scope_id_0": "", "scope_1": "team", "scope_id_1": "t1"}}
    with h.engine.connect() as conn:
        for pairs, scopes in shapes.items():
            driver, sqlalchemy = _both_ways(
                conn, bq._budgets_with_spend(pairs), tenant_id="acme", org_id="prod", now=naive_utc(NOW), **params, **scopes
            )
            assert driver == sqlalchemy
            assert len(driver) == (5 if pairs is None else 4)
            assert [type(v) for v in driver[0].values()] == [type(v) for v in sqlalchemy[0].values()]
        by_id = {r["budget_id"]: r for r in driver}
        assert by_id["team-quarter"]["used_nanos"] == 2**64 + 7
        whole_org = {r["budget_id"]: r for r in _both_ways(
            conn, bq._budgets_with_spend(None), tenant_id="acme", org_id="prod", now=naive_utc(NOW), **params)[0]}
        assert whole_org["team-warn"]["held_nanos"] == 2 * 10**9 and whole_org["team-warn"]["next_expiry"] is not None
        assert whole_org["org-block"]["used_nanos"] > 0
