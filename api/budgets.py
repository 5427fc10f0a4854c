"""Budgets of the cost controls surface: CRUD, the pre-flight check, status and alerts.
The handlers decode (`api.budget_schemas`), call the commands and rules of
`ledger.budgets` and the budget queries, and encode with `projections.budget_views`.

Basic client auth; the tenant comes from the credentials, X-Org-ID picks an org of the
tenant, X-User-ID is recorded as the author of writes. Reads (list, one budget, status,
alerts) also accept a portal session with permission.billing.manage, so the dashboard
reads budgets like any other client."""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from datetime import timezone
from typing import Iterator

from flask import current_app, g, request
from flask_smorest import Blueprint

from api import budget_webhooks as webhooks
from api.answers import answers, component
from api.answers_admin import BudgetAlertsOut, BudgetListOut, BudgetStatusOut, BudgetWrittenOut, CheckOut, WebhookSecretOut
from api.auth import Principal, authenticate, require_permission
from api.budget_schemas import TERM_FIELDS, BudgetChanges, BudgetIn, CheckIn, ListArgs, PageArgs, ReservedOut, decode_check
from api.consistency import appended, reflect, wanted_position
from api.budget_holds import budget_use, reserve
from api.services import services
from ledger.budgets.rules import BudgetUse, Estimate, decide, period_bounds, usage_scopes
from ledger.errors import DomainError, Invalid, NotFound
from ledger.identity.rules import check_id
from projections import budget_queries as q
from projections.budget_hold_views import held_fields
from projections.budget_views import (
    alert_delivery_json,
    alert_json,
    budget_json,
    decision_json,
    status_json,
    stored_budget_json,
)
from projections.usage import from_nanos, naive_utc, to_nanos

blp = Blueprint("budgets", __name__, url_prefix="/api/v1", description="Budgets (cost controls)")

_USER_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def _caller() -> Principal:
    return authenticate("client")


def _reader() -> Principal:
    """Budget reads: an agent client, or a portal user allowed to manage billing."""
    principal = authenticate("client", "user")
    if principal.kind == "user":
        require_permission(principal, "permission.billing.manage")
    return principal


def _author(principal: Principal) -> str:
    """X-User-ID names the person behind the write; without it, the client is the author."""
    user = request.headers.get("X-User-ID", "").strip()
    if not user:
        return principal.actor
    if not _USER_ID.match(user):
        raise Invalid("VALIDATION_FAILED", "X-User-ID must be 1-200 visible ASCII characters", field="X-User-ID")
    return f"user:{user}"


@contextmanager
def _audited(principal: Principal, action: str, target: str) -> Iterator[None]:
    """A refused budget write is recorded too (AccessAttempted), for the admin audit log."""
    try:
        yield
    except DomainError as error:
        if error.kind in ("invalid", "not_found", "conflict", "forbidden"):
            author = _author(principal)  # the client acted; an X-User-ID is only asserted
            services().ledger.audit.record_access_attempt(
                principal.tenant_id, principal.org_id, principal.actor, action, target, "failure", error.code,
                details={"on_behalf_of": author[5:]} if author != principal.actor else None,
            )
        raise


# answers ------------------------------------------------------------------------------
def _load(principal: Principal, budget_id: str) -> dict:
    with services().reader.connect() as conn:
        row = q.get_budget(conn, principal.tenant_id, budget_id)
    if row is None:
        raise NotFound("BUDGET_NOT_FOUND", f"Budget {budget_id} not found")
    return row


# CRUD ---------------------------------------------------------------------------------
@blp.route("/budgets", methods=["POST"])
@answers(BudgetWrittenOut, status=201)
@blp.arguments(BudgetIn())
def create_budget(body):
    """Create a budget (defaults: scope organization, on_exceed warn, thresholds [50, 80, 100])."""
    principal = _caller()
    author = _author(principal)
    terms = {k: body[k] for k in TERM_FIELDS if k in body}
    with _audited(principal, "BUDGET_CREATE", body["id"]):
        webhooks.check_url(terms)
        budget, position = services().ledger.cost_controls.create_budget(
            principal.as_actor(), author, {"budget_id": body["id"], **terms}
        )
    appended(position)
    now = naive_utc(services().settings.clock.now())
    meta = {"tenant_id": principal.tenant_id, "org_id": principal.org_id, "created_at": now, "created_by": author,
            "updated_at": now, "updated_by": author}
    secret = webhooks.after_write(principal.tenant_id, budget.budget_id, budget.webhook_url)
    return {**budget_json(budget, meta), **secret, "position": position}, 201


@blp.route("/budgets", methods=["GET"])
@answers(BudgetListOut)
@blp.arguments(ListArgs(), location="query")
def list_budgets(args):
    """The budgets of the caller's organization (or org_id, another org of the same tenant)."""
    principal = _reader()
    position = reflect("budget_status")
    if args.get("tenant_id", principal.tenant_id) != principal.tenant_id:
        rows, total = [], 0  # another tenant's budgets are never visible
    else:
        with services().reader.connect() as conn:
            rows, total = q.list_budgets(
                conn,
                principal.tenant_id,
                args.get("org_id") or principal.org_id,
                scope=args.get("scope"),
                scope_id=args.get("scope_id"),
                enabled=args.get("enabled"),
                limit=args["limit"],
                offset=args["offset"],
            )
    amounts = _amounts(principal.tenant_id, rows)
    return {
        "budgets": [{**stored_budget_json(r), **amounts[r["budget_id"]]} for r in rows],
        "total": total,
        "limit": args["limit"],
        "offset": args["offset"],
        "position": position,
    }


def _amounts(tenant_id: str, rows: list[dict]) -> dict[str, dict]:
    """used_*, held_* and available_* of each budget in its current period."""
    now = services().settings.clock.now()
    with services().reader.connect() as conn:
        figures = q.spend_and_held(conn, tenant_id, rows, now)
    return {r["budget_id"]: held_fields(r["unit"], r["limit_nanos"], *figures.get(r["budget_id"], (0, 0)), with_used=True) for r in rows}


@blp.route("/budgets/<budget_id>", methods=["GET"])
@answers(BudgetWrittenOut)
def get_budget(budget_id):
    """One budget."""
    principal = _reader()
    position = reflect("budget_status")
    return {**stored_budget_json(_load(principal, budget_id)), "position": position}


@blp.route("/budgets/<budget_id>", methods=["PUT"])
@answers(BudgetWrittenOut)
@blp.arguments(BudgetChanges())
def update_budget(body, budget_id):
    """Change a budget: only the fields sent change."""
    principal = _caller()
    author = _author(principal)
    changes = {k: body[k] for k in TERM_FIELDS if k in body}
    if "id" in body:
        changes["budget_id"] = body["id"]
    with _audited(principal, "BUDGET_UPDATE", budget_id):
        webhooks.check_url(changes)
        stored, position = services().ledger.cost_controls.update_budget(principal.as_actor(), author, budget_id, changes)
    appended(position)
    now = naive_utc(services().settings.clock.now())
    meta = {"tenant_id": stored.tenant_id, "org_id": stored.org_id, "updated_at": now, "updated_by": author}
    secret = webhooks.after_write(principal.tenant_id, budget_id, stored.terms.webhook_url)
    return {**budget_json(stored.terms, meta), **secret, "position": position}


@blp.route("/budgets/<budget_id>", methods=["DELETE"])
@blp.response(204)
def delete_budget(budget_id):
    """Delete a budget; its history stays in the ledger."""
    principal = _caller()
    with _audited(principal, "BUDGET_DELETE", budget_id):
        appended(services().ledger.cost_controls.delete_budget(principal.as_actor(), _author(principal), budget_id))
    webhooks.forget(principal.tenant_id, budget_id)


@blp.route("/budgets/<budget_id>/webhook-secret/rotate", methods=["POST"])
@answers(WebhookSecretOut)
def rotate_webhook_secret(budget_id):
    """Replace the budget's webhook signing secret; the new one is answered this once."""
    principal = _caller()
    author = _author(principal)
    with _audited(principal, "BUDGET_WEBHOOK_SECRET_ROTATE", budget_id):
        secret, position = webhooks.rotate(principal.tenant_id, budget_id, author, principal.as_actor().client_id)
    appended(position)
    return {"budget_id": budget_id, "webhook_secret": secret, "position": position}


# check --------------------------------------------------------------------------------
def _check_org(principal: Principal, org_id: str) -> None:
    """The org must be one of the caller's tenant. Orgs are never deleted, so this app
    remembers the ones it has seen exist."""
    known: set = current_app.extensions.setdefault("budget_check_known_orgs", set())
    if org_id == principal.org_id or (principal.tenant_id, org_id) in known:
        return
    check_id("org_id", org_id)
    if not services().ledger.identity.org_exists(principal.tenant_id, org_id):
        raise NotFound("ORG_NOT_FOUND", f"Organization {org_id} not found")
    known.add((principal.tenant_id, org_id))


class CheckCache:
    """What the pre-flight check reads, kept per process for a short while.

    The check is on every agent's hot path, so it answers from a snapshot of the org's
    enabled budgets with their current-period spend and outstanding holds (one query when
    refreshed). A snapshot is refreshed when it is older than BUDGET_CHECK_CACHE_SECONDS
    (default 0.5; 0 disables the cache), when a period boundary has passed, when one of its
    holds has expired, or when the request's min_position is beyond it, so read-your-writes
    holds exactly as for every other read. Credentials are verified on every request (a
    disabled client or a revoked key is refused at once), and a reserve never reads the
    snapshot (`api.budget_holds`).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._snapshots: dict[tuple[str, str], tuple[float, int, dict, dict, object]] = {}
        self._starts: tuple[object, dict] = (None, {})

    def period_starts(self, now) -> dict:
        """Every period kind's current start; the shortest period is a UTC day, so they
        change only when the UTC date does."""
        day = now.astimezone(timezone.utc).date()
        if self._starts[0] != day:
            self._starts = (day, q.current_period_starts(now))
        return self._starts[1]

    @classmethod
    def of_app(cls) -> "CheckCache":
        cache = current_app.extensions.get("budget_check_cache")
        if cache is None:
            cache = current_app.extensions["budget_check_cache"] = cls(services().settings.budget_check_cache_seconds)
        return cache

    def budgets(self, tenant_id: str, org_id: str) -> dict[tuple[str, str], list[BudgetUse]]:
        """The org's enabled budgets by (scope, scope_id), with their current spend."""
        svc = services()
        now = svc.settings.clock.now()
        starts = self.period_starts(now)
        wanted = wanted_position("budget_status")  # min_position, own writes, the tenant's budgets
        key = (tenant_id, org_id)
        hit = self._snapshots.get(key)
        if (
            hit is not None
            and time.monotonic() - hit[0] < self.seconds
            and hit[1] >= wanted
            and hit[2] == starts
            and (hit[4] is None or naive_utc(now) < hit[4])
        ):
            g.ledger_position = hit[1]
            return hit[3]
        if wanted:
            reflect("budget_status")  # wait (bounded) until the read model has passed it
        with svc.reader.connect() as conn:
            rows, position = q.org_budgets_with_spend(conn, tenant_id, org_id, now)
        by_scope: dict[tuple[str, str], list[BudgetUse]] = {}
        for row in rows:
            by_scope.setdefault((row["scope"], row["scope_id"]), []).append(budget_use(row))
        g.ledger_position = position
        if self.seconds > 0:
            next_expiry = min((r["next_expiry"] for r in rows if r["next_expiry"] is not None), default=None)
            self._remember(self._snapshots, key, (time.monotonic(), position, starts, by_scope, next_expiry))
        return by_scope

    def _remember(self, store: dict, key, value) -> None:
        if len(store) >= self.MAX_ENTRIES:
            store.clear()
        store[key] = value


@blp.route("/budgets/check", methods=["POST"])
@answers(CheckOut)
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": component(CheckIn)}}})
@blp.alt_response(201, schema=ReservedOut, description="reserve: the hold was placed")
def check_budgets():
    """Pre-flight: may this request spend? Every enabled budget that matches is considered,
    on its recorded spend plus outstanding holds. With `"reserve": true` and an estimate, an
    allowed request also places a hold on every such budget (201 with `hold_id`)."""
    principal = _caller()
    body = decode_check(request.get_data(cache=False))
    org_id = body.org_id or principal.org_id
    _check_org(principal, org_id)
    if body.reserve:
        return reserve(principal, body, org_id)
    by_scope = CheckCache.of_app().budgets(principal.tenant_id, org_id)
    budgets = [budget for pair in usage_scopes(body) for budget in by_scope.get(pair, ())]
    # whole nanos, as spend is kept
    estimate = Estimate(usd=from_nanos(to_nanos(body.estimated_cost_usd)), credits=from_nanos(to_nanos(body.estimated_credits)))
    return decision_json(decide(budgets, estimate))


# status and alerts --------------------------------------------------------------------
@blp.route("/budgets/<budget_id>/status", methods=["GET"])
@answers(BudgetStatusOut)
def budget_status(budget_id):
    """Spend of the budget's current period against its limit."""
    principal = _reader()
    position = reflect("budget_status")
    row = _load(principal, budget_id)
    now = services().settings.clock.now()
    start, end = period_bounds(row["period"], now)
    with services().reader.connect() as conn:
        used, held = q.spend_and_held(conn, principal.tenant_id, [row], now).get(budget_id, (0, 0))
        crossed = q.thresholds_crossed(conn, principal.tenant_id, budget_id, naive_utc(start))
    held_amounts = held_fields(row["unit"], row["limit_nanos"], used, held)
    return {**status_json(row, start, end, used, crossed, now), **held_amounts, "position": position}


@blp.route("/budgets/<budget_id>/alerts", methods=["GET"])
@answers(BudgetAlertsOut)
@blp.arguments(PageArgs(), location="query")
def budget_alerts(args, budget_id):
    """Threshold alerts of the budget, newest period first, with their webhook delivery status."""
    principal = _reader()
    position = reflect("budget_status")
    _load(principal, budget_id)
    with services().reader.connect() as conn:
        rows, total = q.alerts(conn, principal.tenant_id, budget_id, args["limit"], args["offset"])
    return {
        "alerts": [{**alert_json(r), **alert_delivery_json(r)} for r in rows],
        "total": total,
        "limit": args["limit"],
        "offset": args["offset"],
        "position": position,
    }
