"""Reads whose work must not grow with history: a budget's held amount reads the holds held
now, not every hold the budget has seen, and a page of budgets reads each of them once, not
once per budget; a reserve reads the newest version of each period stream, not all of them. Checked on PostgreSQL's own plans (EXPLAIN ANALYZE: the rows each
statement reads), with statistics taken while the tables were small, as they are after a
deployment's first ANALYZE: plans made on such statistics are what made these reads grow
(430 ms for one budget's status after 3,000 holds; 2.6 ms of every reserve)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ledger.budgets.hold_commands import hold_stream
from ledger.store import EVENTS_TABLE, newest_events_sql
from projections.budget_queries import BUDGETS
from tests.test_budget_holds import create, granted, reserve

SETTLED = 3000
OUTSTANDING = 200


def rows_read(conn, sql: str, params, relation: str) -> int:
    """Rows of `relation` the statement's plan read (returned or filtered out), over all loops."""
    (plan,), = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).one()  # psycopg parses the JSON

    def walk(node) -> int:
        own = 0
        if node.get("Relation Name") == relation:
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
            own = read * node["Actual Loops"]
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan["Plan"])


@contextmanager
def statements_on(relation: str):
    """The statements (and their parameters) any engine of this process runs that read `relation`."""
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if relation in statement and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", capture)


def copy_hold(h, holds_like: str, copies: int, settled: bool = True) -> None:
    """`copies` more holds on the same budgets as `holds_like`, committed (`settled`) or still
    held, written straight into the read model as its projection leaves them, after an
    ANALYZE of the small tables."""
    changed = {"hold_id": "hold_id || '-' || n"}
    if settled:
        changed |= {"state": "'committed'", "actual_nanos": "amount_nanos"}
    with h.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        for table in (BUDGETS.holds, BUDGETS.hold_amounts):
            columns = [c.name for c in table.c]
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(changed.get(c, c) for c in columns)}"
                f" FROM {table.name}, generate_series(1, {copies}) AS n WHERE hold_id = %(hold)s",
                {"hold": holds_like},
            )


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_budgets_held_amount_reads_only_the_holds_held_now(h, agent):
    create(h, agent, id="org-warn", on_exceed="warn")
    create(h, agent, id="org-block")
    h.project()
    held = granted(reserve(h, agent, "2"))
    h.project()
    copy_hold(h, held, SETTLED)

    with statements_on("budget_hold_amounts") as seen:
        status = h.http.get("/api/v1/budgets/org-warn/status", headers=agent)
        listed = h.http.get("/api/v1/budgets", headers=agent)
    assert status.status_code == 200 and listed.status_code == 200
    assert status.json["held_usd"] == 2  # the one hold held now; the settled ones are spend, not held
    assert {b["id"]: b["held_usd"] for b in listed.json["budgets"]} == {"org-warn": 2, "org-block": 2}
    assert len(seen) == 2
    with h.engine.connect() as conn:
        for sql, params in seen:
            # per budget: the tenant's one held hold, then one primary-key lookup of its amount
            assert rows_read(conn, sql, params, "budget_hold_amounts") <= 2 * len(listed.json["budgets"])


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_page_of_budgets_reads_each_outstanding_hold_once(h, agent):
    budgets = 30
    for n in range(budgets):
        create(h, agent, id=f"warn-{n:02}", on_exceed="warn", limit_usd=10**6)
    h.project()
    held = granted(reserve(h, agent, "2"))
    h.project()
    copy_hold(h, held, OUTSTANDING - 1, settled=False)

    with statements_on("budget_holds") as seen:
        listed = h.http.get("/api/v1/budgets", headers=agent)
        checked = h.http.post("/api/v1/budgets/check", json={"estimated_cost_usd": "1"}, headers=agent)
    assert listed.status_code == 200 and checked.status_code == 200
    # every budget holds $2 of each outstanding hold, to the nano-dollar
    assert {b["id"]: b["held_usd"] for b in listed.json["budgets"]} == {f"warn-{n:02}": 2 * OUTSTANDING for n in range(budgets)}
    assert checked.json["allowed"] is True  # warn budgets never refuse; the check read them all
    assert len(seen) == 2  # the page's held amounts, the check's snapshot of the org's budgets
    with h.engine.connect() as conn:
        for sql, params in seen:
            # once per statement, not once per budget (that was 30 × 200)
            assert rows_read(conn, sql, params, "budget_holds") <= OUTSTANDING


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_reserve_reads_the_newest_version_of_each_period_stream_only(h, agent):
    create(h, agent, id="org-block", limit_usd=10**6)
    h.project()
    for n in range(60):  # 60 versions of the budget's period stream, and 60 hold streams
        granted(reserve(h, agent, "1", hold_id=f"hold-{n}"))
    with h.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        (stream, last), = conn.exec_driver_sql(
            f"SELECT originator_id, MAX(originator_version) FROM {EVENTS_TABLE} GROUP BY originator_id HAVING MAX(originator_version) > 2"
        )  # the period stream
        assert last == 60
        conn.exec_driver_sql(  # 3,000 more versions of it, as many reserves would leave
            f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state)"
            f" SELECT originator_id, originator_version + n, topic, state FROM {EVENTS_TABLE}, generate_series(1, {SETTLED}) AS n"
            " WHERE originator_id = %(stream)s AND originator_version = 60",
            {"stream": stream},
        )
        newest = [stream, hold_stream("acme", "hold-7")]
        sql = newest_events_sql(len(newest), "%s")
        assert [(r[0], r[1]) for r in conn.exec_driver_sql(sql, tuple(newest))] == [(stream, 60 + SETTLED), (newest[1], 1)]
        assert rows_read(conn, sql, tuple(newest), EVENTS_TABLE) == 2
    assert granted(reserve(h, agent, "1"))  # and the reserve decides on that newest version
