"""Budgets of the cost controls surface (seed 002, SPEC.md §5.2): CRUD, the pre-flight
check, status and alerts. Basic client auth; the tenant comes from the credentials,
X-Org-ID picks an org of the tenant, X-User-ID is recorded as the author of writes.

Reads (list, one budget, status, alerts) also accept a portal session with
permission.billing.manage, so the dashboard reads budgets like any other client."""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from datetime import timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Iterator

import msgspec

from flask import current_app, g, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from api.auth import Principal, authenticate, require_permission
from api.consistency import appended, reflect
from api.formats import money, timestamp
from api.services import services
from ledger.budgets.commands import ON_EXCEED, PERIODS, SCOPES, UNITS, percentage, period_bounds
from ledger.errors import DomainError, Invalid, NotFound
from ledger.budgets.events import BudgetTerms
from ledger.identity.rules import check_id
from projections import budget_queries as q
from projections.budgets import budget_terms, from_basis_points
from projections.usage import from_nanos, naive_utc, to_nanos

blp = Blueprint("budgets", __name__, url_prefix="/api/v1", description="Budgets (cost controls)")

_USER_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_ID = validate.Length(min=1, max=128)


class BudgetIn(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scope = fields.String(load_default="organization", validate=validate.OneOf(SCOPES))
    scope_id = fields.String(allow_none=True, validate=_ID)
    limit_usd = fields.Decimal(allow_none=True, metadata={"description": "required when unit is usd"})
    limit_credits = fields.Decimal(allow_none=True, metadata={"description": "required when unit is credits"})
    unit = fields.String(validate=validate.OneOf(UNITS), metadata={"description": "usd (default) or credits"})
    period = fields.String(required=True, validate=validate.OneOf(PERIODS))
    on_exceed = fields.String(load_default="warn", validate=validate.OneOf(ON_EXCEED))
    alert_thresholds = fields.List(fields.Decimal(), metadata={"description": "percentages; default [50, 80, 100]"})
    enabled = fields.Boolean(load_default=True)
    webhook_url = fields.String(allow_none=True, validate=validate.Length(max=2048))
    downgrade_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=256))


class BudgetChanges(BudgetIn):
    """PUT: the fields to change; the others keep their values."""

    class Meta:
        unknown = RAISE

    id = fields.String(validate=validate.Length(min=1, max=64))
    name = fields.String(validate=validate.Length(min=1, max=200))
    scope = fields.String(validate=validate.OneOf(SCOPES))
    period = fields.String(validate=validate.OneOf(PERIODS))
    on_exceed = fields.String(validate=validate.OneOf(ON_EXCEED))
    enabled = fields.Boolean()


class ListArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    scope = fields.String(validate=validate.OneOf(SCOPES))
    scope_id = fields.String(validate=_ID)
    enabled = fields.Boolean()
    tenant_id = fields.String(validate=_ID)
    org_id = fields.String(validate=_ID)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    min_position = fields.Integer(validate=validate.Range(min=0))


class PageArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    min_position = fields.Integer(validate=validate.Range(min=0))


_CheckId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class CheckIn(msgspec.Struct, frozen=True):
    """The pre-flight check's body. Decoded with msgspec: this is a hot path (NOTES.md)."""

    org_id: _CheckId | None = None
    team_id: _CheckId | None = None
    agent_id: _CheckId | None = None
    workflow_id: _CheckId | None = None
    user_id: _CheckId | None = None
    app_id: _CheckId | None = None
    estimated_cost_usd: Decimal | None = None  # 0 ≤ x ≤ 1,000,000, checked in _check_body


_check_decoder = msgspec.json.Decoder(CheckIn)
_CHECK_FIELD = re.compile(r"`\$\.([A-Za-z_]+)")


def _check_body() -> CheckIn:
    try:
        body = _check_decoder.decode(request.get_data(cache=False) or b"{}")
    except msgspec.ValidationError as error:
        match = _CHECK_FIELD.search(str(error))
        raise Invalid("VALIDATION_FAILED", str(error), field=match.group(1) if match else None) from None
    except msgspec.DecodeError as error:
        raise Invalid("MALFORMED_JSON", f"Request body is not a JSON object: {error}") from None
    estimate = body.estimated_cost_usd
    if estimate is not None and not (estimate.is_finite() and 0 <= estimate <= 10**6):
        raise Invalid("VALIDATION_FAILED", "estimated_cost_usd must be between 0 and 1,000,000", field="estimated_cost_usd")
    return body


def _check_schema_doc() -> dict:
    schema = msgspec.json.schema(CheckIn)
    return schema["$defs"]["CheckIn"]


_TERM_FIELDS = (
    "name", "scope", "scope_id", "unit", "limit_usd", "limit_credits", "period", "on_exceed",
    "alert_thresholds", "enabled", "webhook_url", "downgrade_model",
)
_CHECK_SCOPES = (("team", "team_id"), ("agent", "agent_id"), ("workflow", "workflow_id"), ("user", "user_id"), ("app", "app_id"))
_SEVERITY = {"warn": 0, "downgrade": 1, "block": 2}


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
            services().ledger.record_access_attempt(
                principal.tenant_id, principal.org_id, _author(principal), action, target, "failure", error.code
            )
        raise


# answers ------------------------------------------------------------------------------
def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def budget_json(terms: BudgetTerms, row: dict) -> dict:
    usd = terms.unit == "usd"
    return {
        "id": terms.budget_id,
        "name": terms.name,
        "scope": terms.scope,
        "scope_id": terms.scope_id,
        "limit_usd": money(terms.limit) if usd else None,
        "limit_credits": None if usd else money(terms.limit),
        "unit": terms.unit,
        "period": terms.period,
        "on_exceed": terms.on_exceed,
        "alert_thresholds": [_number(t) for t in terms.alert_thresholds],
        "enabled": terms.enabled,
        "webhook_url": terms.webhook_url,
        "downgrade_model": terms.downgrade_model,
        "tenant_id": row["tenant_id"],
        "org_id": row["org_id"],
        "created_at": timestamp(row.get("created_at")),
        "created_by": row.get("created_by"),
        "updated_at": timestamp(row.get("updated_at")),
        "updated_by": row.get("updated_by"),
    }


def _row_json(row: dict) -> dict:
    return budget_json(budget_terms(row), row)


def _percent(used_nanos: int, limit_nanos: int) -> float:
    value = percentage(Decimal(used_nanos), Decimal(limit_nanos))
    return _number(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _load(principal: Principal, budget_id: str) -> dict:
    with services().engine.connect() as conn:
        row = q.get_budget(conn, principal.tenant_id, budget_id)
    if row is None:
        raise NotFound("BUDGET_NOT_FOUND", f"Budget {budget_id} not found")
    return row


# CRUD ---------------------------------------------------------------------------------
@blp.route("/budgets", methods=["POST"])
@blp.arguments(BudgetIn)
def create_budget(body):
    """Create a budget (defaults: scope organization, on_exceed warn, thresholds [50, 80, 100])."""
    principal = _caller()
    author = _author(principal)
    terms = {k: body[k] for k in _TERM_FIELDS if k in body}
    with _audited(principal, "BUDGET_CREATE", body["id"]):
        budget, position = services().ledger.cost_controls.create_budget(
            principal.as_actor(), author, {"budget_id": body["id"], **terms}
        )
    appended(position)
    now = naive_utc(services().settings.clock.now())
    meta = {"tenant_id": principal.tenant_id, "org_id": principal.org_id, "created_at": now, "created_by": author,
            "updated_at": now, "updated_by": author}
    return {**budget_json(budget, meta), "position": position}, 201


@blp.route("/budgets", methods=["GET"])
@blp.arguments(ListArgs, location="query")
def list_budgets(args):
    """The budgets of the caller's organization (or org_id, another org of the same tenant)."""
    principal = _reader()
    position = reflect("budget_status")
    if args.get("tenant_id", principal.tenant_id) != principal.tenant_id:
        rows, total = [], 0  # another tenant's budgets are never visible
    else:
        with services().engine.connect() as conn:
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
    return {
        "budgets": [_row_json(r) for r in rows],
        "total": total,
        "limit": args["limit"],
        "offset": args["offset"],
        "position": position,
    }


@blp.route("/budgets/<budget_id>", methods=["GET"])
def get_budget(budget_id):
    """One budget."""
    principal = _reader()
    position = reflect("budget_status")
    return {**_row_json(_load(principal, budget_id)), "position": position}


@blp.route("/budgets/<budget_id>", methods=["PUT"])
@blp.arguments(BudgetChanges)
def update_budget(body, budget_id):
    """Change a budget: only the fields sent change."""
    principal = _caller()
    author = _author(principal)
    changes = {k: body[k] for k in _TERM_FIELDS if k in body}
    if "id" in body:
        changes["budget_id"] = body["id"]
    with _audited(principal, "BUDGET_UPDATE", budget_id):
        stored, position = services().ledger.cost_controls.update_budget(principal.as_actor(), author, budget_id, changes)
    appended(position)
    now = naive_utc(services().settings.clock.now())
    meta = {"tenant_id": stored.tenant_id, "org_id": stored.org_id, "updated_at": now, "updated_by": author}
    return {**budget_json(stored.terms, meta), "position": position}


@blp.route("/budgets/<budget_id>", methods=["DELETE"])
@blp.response(204)
def delete_budget(budget_id):
    """Delete a budget; its history stays in the ledger."""
    principal = _caller()
    with _audited(principal, "BUDGET_DELETE", budget_id):
        appended(services().ledger.cost_controls.delete_budget(principal.as_actor(), _author(principal), budget_id))


# check --------------------------------------------------------------------------------
def _check_org(principal: Principal, org_id: str) -> None:
    """The org must be one of the caller's tenant. Orgs are never deleted, so this app
    remembers the ones it has seen exist."""
    known: set = current_app.extensions.setdefault("budget_check_known_orgs", set())
    if org_id == principal.org_id or (principal.tenant_id, org_id) in known:
        return
    check_id("org_id", org_id)
    if not services().ledger.org_exists(principal.tenant_id, org_id):
        raise NotFound("ORG_NOT_FOUND", f"Organization {org_id} not found")
    known.add((principal.tenant_id, org_id))


def decide(rows: list[dict], estimate_nanos: int) -> dict:
    """The most restrictive action among the exceeded budgets (block > downgrade > warn)."""
    exceeded = []
    for row in rows:
        extra = estimate_nanos if row["unit"] == "usd" else 0
        if row["used_nanos"] + extra > row["limit_nanos"]:
            exceeded.append(row)
    if not exceeded:
        return {"allowed": True}
    exceeded.sort(key=lambda r: (-_SEVERITY[r["on_exceed"]], -r["used_nanos"] * 10**9 // r["limit_nanos"], r["budget_id"]))
    first = exceeded[0]
    warnings = [_finding(r, "Budget exceeded") for r in exceeded if r["on_exceed"] == "warn"]
    if first["on_exceed"] == "block":
        return {"allowed": False, "action": "block", **_finding(first, "Budget exceeded")}
    if first["on_exceed"] == "downgrade":
        answer = {
            "allowed": True,
            "action": "downgrade",
            "downgrade_model": first["downgrade_model"],
            **_finding(first, "Budget exceeded; use the downgrade model"),
        }
        return {**answer, "warnings": warnings} if warnings else answer
    return {"allowed": True, "action": "warn", "warnings": warnings}


def _finding(row: dict, message: str) -> dict:
    unit = "usd" if row["unit"] == "usd" else "credits"
    return {
        "budget_id": row["budget_id"],
        "budget_name": row["name"],
        f"used_{unit}": money(from_nanos(row["used_nanos"])),
        f"limit_{unit}": money(from_nanos(row["limit_nanos"])),
        "percentage": _percent(row["used_nanos"], row["limit_nanos"]),
        "message": message,
    }


class CheckCache:
    """What the pre-flight check reads, kept per process for a short while.

    The check is on every agent's hot path, so it answers from a snapshot of the org's
    enabled budgets with their current-period spend (one query when refreshed), and from
    credentials verified within the same window. A snapshot is refreshed when it is older
    than BUDGET_CHECK_CACHE_SECONDS (default 0.5; 0 disables the cache), when a period
    boundary has passed, or when the request's min_position is beyond it, so
    read-your-writes holds exactly as for every other read.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._principals: dict[tuple[str, str], tuple[float, Principal]] = {}
        self._snapshots: dict[tuple[str, str], tuple[float, int, dict, dict]] = {}
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

    def caller(self) -> Principal:
        key = (request.headers.get("Authorization", ""), request.headers.get("X-Org-ID", ""))
        hit = self._principals.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.seconds:
            g.principal = hit[1]
            return hit[1]
        principal = _caller()
        if self.seconds > 0:
            self._remember(self._principals, key, (time.monotonic(), principal))
        return principal

    def budgets(self, tenant_id: str, org_id: str) -> dict[tuple[str, str], list[dict]]:
        """The org's enabled budgets by (scope, scope_id), with their current spend."""
        svc = services()
        now = svc.settings.clock.now()
        starts = self.period_starts(now)
        wanted = _min_position()
        key = (tenant_id, org_id)
        hit = self._snapshots.get(key)
        if (
            hit is not None
            and time.monotonic() - hit[0] < self.seconds
            and hit[1] >= wanted
            and hit[2] == starts
        ):
            g.ledger_position = hit[1]
            return hit[3]
        if wanted:
            reflect("budget_status")  # wait (bounded) until the read model has passed it
        with svc.engine.connect() as conn:
            rows, position = q.org_budgets_with_spend(conn, tenant_id, org_id, now)
        by_scope: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            by_scope.setdefault((row["scope"], row["scope_id"]), []).append(row)
        g.ledger_position = position
        if self.seconds > 0:
            self._remember(self._snapshots, key, (time.monotonic(), position, starts, by_scope))
        return by_scope

    def _remember(self, store: dict, key, value) -> None:
        if len(store) >= self.MAX_ENTRIES:
            store.clear()
        store[key] = value


def _min_position() -> int:
    raw = request.args.get("min_position") or request.headers.get("X-Min-Ledger-Position") or "0"
    try:
        wanted = int(raw)
    except ValueError:
        wanted = -1
    if wanted < 0:
        raise Invalid("VALIDATION_FAILED", "min_position must be a non-negative integer", field="min_position")
    return wanted


@blp.route("/budgets/check", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": _check_schema_doc()}}})
def check_budgets():
    """Pre-flight: may this request spend? Every enabled budget that matches is considered."""
    cache = CheckCache.of_app()
    principal = cache.caller()
    body = _check_body()
    org_id = body.org_id or principal.org_id
    _check_org(principal, org_id)
    scopes = [("organization", "")] + [(scope, getattr(body, key)) for scope, key in _CHECK_SCOPES if getattr(body, key)]
    by_scope = cache.budgets(principal.tenant_id, org_id)
    rows = [row for pair in scopes for row in by_scope.get(pair, ())]
    return decide(rows, to_nanos(body.estimated_cost_usd))


# status and alerts --------------------------------------------------------------------
@blp.route("/budgets/<budget_id>/status", methods=["GET"])
def budget_status(budget_id):
    """Spend of the budget's current period against its limit."""
    principal = _reader()
    position = reflect("budget_status")
    row = _load(principal, budget_id)
    now = services().settings.clock.now()
    start, end = period_bounds(row["period"], now)
    with services().engine.connect() as conn:
        used = q.spend_in_period(conn, row, naive_utc(start))
        crossed = q.thresholds_crossed(conn, principal.tenant_id, budget_id, naive_utc(start))
    limit = row["limit_nanos"]
    thresholds = budget_terms(row).alert_thresholds
    pct = percentage(Decimal(used), Decimal(limit))
    if used >= limit:
        status = "exceeded"
    elif any(pct >= t for t in thresholds if t < 100):
        status = "warning"
    else:
        status = "ok"
    return {
        "budget_id": budget_id,
        "budget_name": row["name"],
        "period": row["period"],
        "period_start": timestamp(start),
        "period_end": timestamp(end),
        "unit": row["unit"],
        "used": money(from_nanos(used)),
        "limit": money(from_nanos(limit)),
        "remaining": money(from_nanos(max(limit - used, 0))),
        "percentage": _percent(used, limit),
        "status": status,
        "thresholds_crossed": [_number(from_basis_points(t)) for t in crossed],
        "as_of": timestamp(now),
        "position": position,
    }


@blp.route("/budgets/<budget_id>/alerts", methods=["GET"])
@blp.arguments(PageArgs, location="query")
def budget_alerts(args, budget_id):
    """Threshold alerts of the budget, newest period first, with their webhook delivery status."""
    principal = _reader()
    position = reflect("budget_status")
    _load(principal, budget_id)
    with services().engine.connect() as conn:
        rows, total = q.alerts(conn, principal.tenant_id, budget_id, args["limit"], args["offset"])
    return {
        "alerts": [alert_json(r) for r in rows],
        "total": total,
        "limit": args["limit"],
        "offset": args["offset"],
        "position": position,
    }


def alert_json(row: dict) -> dict:
    return {
        "alert_id": row["alert_id"],
        "budget_id": row["budget_id"],
        "budget_name": row["budget_name"],
        "threshold": _number(from_basis_points(row["threshold_bp"])),
        "percentage": _number(from_basis_points(row["percentage_bp"])),
        "unit": row["unit"],
        "used": money(from_nanos(row["used_nanos"])),
        "limit": money(from_nanos(row["limit_nanos"])),
        "period": row["period"],
        "period_start": timestamp(row["period_start"]),
        "period_end": timestamp(row["period_end"]),
        "created_at": timestamp(row["crossed_at"]),
        "raised": bool(row["raised"]),
        "delivery_status": row["delivery_status"],
        "delivery_attempts": row["attempts"],
        "last_attempt_at": timestamp(row["last_attempt_at"]),
        "next_attempt_at": timestamp(row["next_attempt_at"]),
        "delivered_at": timestamp(row["delivered_at"]),
        "last_error": row["last_error"],
    }
