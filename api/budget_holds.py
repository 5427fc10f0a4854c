"""Budget holds: reserve through the check (`"reserve": true`), then commit, release or read
a hold. Basic client auth; holds belong to the caller's tenant (another tenant's hold id is
not found). A reserve is decided on fresh state: the budgets and recorded spend in one
statement of the budget_status read model, the holds from the ledger itself (see
`ledger.budgets.hold_commands`); it never answers from the check's per-process snapshot.

Hold writes raise no read-your-writes marks: they are as frequent as usage and nothing the
caller reads next depends on a read model having seen them (a hold is read from the ledger,
a reserve decides on the ledger's holds). A caller that wants a budget's status to show a
hold passes the answer's `position` as `min_position`."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Collection

from flask_smorest import Blueprint

from api.auth import Principal, authenticate
from api.budget_schemas import CheckIn, CommitIn, HoldOut
from flask import g

from api.consistency import consult
from api.services import services
from ledger.budgets.hold_commands import Fresh, HoldTarget, ReserveRequest
from ledger.budgets.holds import DEFAULT_TTL_SECONDS
from ledger.budgets.rules import BudgetUse, period_bounds, usage_scopes
from ledger.errors import Conflict, Invalid
from projections import budget_hold_queries as hq
from projections import budget_queries as q
from projections.budget_hold_views import hold_json, placed_json
from projections.budget_views import decision_json
from projections.usage import from_nanos, to_nanos

blp = Blueprint("budget_holds", __name__, url_prefix="/api/v1", description="Budget holds (reserve, commit, release)")


def budget_use(row: dict) -> BudgetUse:
    """A row of `org_budgets_with_spend` as the rules take it (amounts in the budget's unit),
    with its outstanding holds as the read model knows them."""
    return BudgetUse(
        budget_id=row["budget_id"],
        name=row["name"],
        unit=row["unit"],
        on_exceed=row["on_exceed"],
        limit=from_nanos(row["limit_nanos"]),
        used=from_nanos(row["used_nanos"]),
        downgrade_model=row["downgrade_model"],
        held=from_nanos(row["held_nanos"]),
    )


def incarnation(created_at: datetime) -> str:
    return created_at.replace(tzinfo=timezone.utc).isoformat()


class ReadModelSpend:
    """The budget_status read model, as a reserve consults it."""

    def __init__(self, tenant_id: str, org_id: str, body: CheckIn):
        self.tenant_id, self.org_id, self.pairs = tenant_id, org_id, set(usage_scopes(body))

    def targets(self) -> Fresh:
        svc = services()
        now = svc.settings.clock.now()
        with svc.reader.connect() as conn:
            rows, position = q.org_budgets_with_spend(conn, self.tenant_id, self.org_id, now, self.pairs)
        targets = [
            HoldTarget(budget_use(r), r["period"], period_bounds(r["period"], now)[0], incarnation(r["created_at"]))
            for r in rows
            if (r["scope"], r["scope_id"]) in self.pairs
        ]
        return Fresh(targets, position)

    def committed(self, hold_ids: Collection[str]) -> dict[str, int]:
        with services().reader.connect() as conn:
            return hq.counted_commits(conn, self.tenant_id, hold_ids)


def _whole_nanos(value: Decimal | None) -> Decimal | None:
    return None if value is None else from_nanos(to_nanos(value))


def reserve(principal: Principal, body: CheckIn, org_id: str):
    """The check with `"reserve": true`: 201 with the hold, or 200 with the refusal. Like
    every read it first waits (bounded) for the budgets the caller must see (min_position,
    its own and its tenant's configuration writes)."""
    consult("budget_status")
    request = ReserveRequest(
        org_id=org_id,
        estimated_cost_usd=_whole_nanos(body.estimated_cost_usd),
        estimated_credits=_whole_nanos(body.estimated_credits),
        ttl_seconds=body.ttl_seconds or DEFAULT_TTL_SECONDS,
        hold_id=body.hold_id,
        team_id=body.team_id,
        agent_id=body.agent_id,
        workflow_id=body.workflow_id,
        user_id=body.user_id,
        app_id=body.app_id,
    )
    reserved = services().ledger.holds.reserve(principal.as_actor(), request, ReadModelSpend(principal.tenant_id, org_id, body))
    if reserved.placed is None:
        return decision_json(reserved.decision)
    placed = reserved.placed
    if not reserved.position:  # the same hold id and body again: the hold as it was placed
        answer = {"allowed": True, **{k: v for k, v in (("action", placed.action), ("downgrade_model", placed.downgrade_model)) if v}}
        return {**answer, **placed_json(placed)}, 201
    g.ledger_position = reserved.position
    return {**decision_json(reserved.decision), **placed_json(placed), "position": reserved.position}, 201


def _caller() -> Principal:
    return authenticate("client")


@blp.route("/budgets/holds/<hold_id>", methods=["GET"])
@blp.response(200, HoldOut)
def get_hold(hold_id):
    """A hold: held, committed, released or expired (a hold past its expiry is expired at once)."""
    principal = _caller()
    found = services().ledger.holds.require(principal.tenant_id, hold_id)
    return hold_json(found, services().settings.clock.now())


@blp.route("/budgets/holds/<hold_id>/commit", methods=["POST"])
@blp.arguments(CommitIn())
@blp.response(200, HoldOut)
def commit_hold(body, hold_id):
    """Commit a hold at the call's actual cost (recorded in full, even above the hold); the
    rest is released. Exactly once: a usage event carrying the hold id commits it too."""
    principal = _caller()
    usd, credits = body.get("actual_cost_usd"), body.get("actual_credits")
    if usd is None and credits is None:
        raise Invalid("VALIDATION_FAILED", "actual_cost_usd or actual_credits is required", field="actual_cost_usd")
    holds = services().ledger.holds
    found = holds.commit(principal.as_actor(), hold_id, _whole_nanos(usd), _whole_nanos(credits), body.get("event_id"))
    now = services().settings.clock.now()
    answer = hold_json(found, now)
    if answer["state"] != "committed":
        raise Conflict(f"HOLD_{answer['state'].upper()}", f"Hold {hold_id} is {answer['state']}; it cannot be committed")
    settlement = found.settlement
    if not found.position and (
        settlement.via != "call" or (settlement.actual_cost_usd, settlement.actual_credits, settlement.event_id)
        != (_whole_nanos(usd), _whole_nanos(credits), body.get("event_id"))
    ):
        raise Conflict("HOLD_COMMITTED", f"Hold {hold_id} was committed already, with another actual cost")
    return _settled(answer, found.position)


def _settled(answer: dict, position: int) -> dict:
    if not position:
        return answer
    g.ledger_position = position
    return {**answer, "position": position}


@blp.route("/budgets/holds/<hold_id>/release", methods=["POST"])
@blp.response(200, HoldOut)
def release_hold(hold_id):
    """Release a hold: the call was not made. Idempotent; a committed hold cannot be released."""
    principal = _caller()
    found = services().ledger.holds.release(principal.as_actor(), hold_id)
    answer = hold_json(found, services().settings.clock.now())
    if answer["state"] == "committed":
        raise Conflict("HOLD_COMMITTED", f"Hold {hold_id} is committed; it cannot be released")
    return _settled(answer, found.position)
