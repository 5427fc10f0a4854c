"""Credit usage reporting, camelCase JSON: /api/usage, /api/usage/monthly,
/api/usage/top-consumers, /api/usage/resource-types.

Auth: portal sessions (or the admin key with X-Tenant-ID / X-Org-ID), with the seed's
pre-blocks as permissions.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from api.answers import answers
from api.answers_admin import CreditHistoryOut, CreditUsageOut, ResourceTypeOut, TopConsumersOut
from api.auth import Principal, authenticate, require_permission
from api.consistency import reflect
from api.formats import WindowNames, timestamp, window_range
from api.services import services
from ledger.errors import Invalid
from ledger.usage.resources import RESOURCE_TYPES
from projections import credits_queries as q
from projections.entities import entities_by_key
from projections.license_sync import license_of, staleness_level
from projections.usage import from_nanos

blp = Blueprint("credits", __name__, url_prefix="/api/usage", description="Credit usage reporting")

BILLING_MANAGE = "permission.billing.manage"
TENANT_SUPERUSER = "permission.tenant.superuser"
READ_MODELS = ("usage_rollups", "credits", "entities", "license_sync", "budget_status")
MAX_RANGE_DAYS = 731
_SIX = Decimal("0.000001")


class _Args(Schema):
    class Meta:
        unknown = EXCLUDE

    min_position = fields.Integer(validate=validate.Range(min=0))


class UsageArgs(_Args, WindowNames):
    window = ("startDate", "endDate")
    start_date = fields.Date(data_key="startDate", metadata={"description": "inclusive; default start of the current month"})
    end_date = fields.Date(data_key="endDate", metadata={"description": "inclusive; default today"})


class MonthlyArgs(_Args):
    months = fields.Integer(load_default=12, validate=validate.Range(min=1, max=24))


class TopArgs(_Args):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=365))
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=50))


def _reader(permission: str) -> Principal:
    return require_permission(authenticate("user", "admin"), permission)


def credits(nanos: int | Decimal) -> float:
    """Credits as JSON decimals (one type in every row: 50000.0, 1.25), 6 decimals."""
    value = from_nanos(nanos) if isinstance(nanos, int) else nanos
    return float(value.quantize(_SIX, rounding=ROUND_HALF_EVEN))


def _now() -> datetime:
    return services().settings.clock.now().astimezone(timezone.utc)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


@blp.route("", methods=["GET"])
@answers(CreditUsageOut)
@blp.arguments(UsageArgs(), location="query")
def usage(args):
    """Credits by entity and resource type, daily totals, budgets, credit pool and sync health."""
    principal = _reader(BILLING_MANAGE)
    now = _now()
    today = now.date()
    start_day = args.get("start_date") or today.replace(day=1)
    end_day = args.get("end_date") or today
    if start_day > end_day:
        raise Invalid("VALIDATION_FAILED", "startDate must not be after endDate", field="startDate")
    if (end_day - start_day).days >= MAX_RANGE_DAYS:
        raise Invalid("VALIDATION_FAILED", f"the range may span at most {MAX_RANGE_DAYS} days", field="startDate")
    start, end = q.window_days(start_day, end_day)
    tenant_id, org_id = principal.tenant_id, principal.org_id
    reflect(*READ_MODELS)
    with services().reader.connect() as conn:
        book = q.rate_book(conn)
        naive_now = _naive(now)
        by_entity = q.credit_totals(
            conn, tenant_id, org_id, start, end, naive_now, ["resource_type", "app_id", "user_id", "agent_id"], book
        )
        daily = q.credit_totals(conn, tenant_id, org_id, start, end, naive_now, ["day", "resource_type"], book)
        budgets = _budgets(conn, tenant_id, org_id, naive_now)
        pool = _credit_pool(conn, tenant_id, org_id, naive_now)
        sync = _sync(conn, tenant_id, org_id, naive_now)
    summary: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in by_entity:
        entity_type, entity_id = _entity_of(row, org_id)
        entry = summary[(entity_id, entity_type, row["resource_type"])]
        entry[0] += row["credits_nanos"]
        entry[1] += row["events"]
    usage_summary = [
        {
            "entityId": eid, "entityType": etype, "resourceType": rtype,
            "totalCredits": credits(c), "totalCreditsNanos": c, "totalEvents": n,
        }
        for (eid, etype, rtype), (c, n) in sorted(summary.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]
    daily_totals = [
        {
            "date": row["day"].date().isoformat(), "resourceType": row["resource_type"],
            "totalCredits": credits(row["credits_nanos"]), "totalCreditsNanos": row["credits_nanos"],
        }
        for row in sorted(daily, key=lambda r: (r["day"], r["resource_type"]))
    ]
    # one total, summed in nanos and rounded once: dailyTotals and usageSummary both sum to it
    total = sum(row["credits_nanos"] for row in daily)
    return {
        "usageSummary": usage_summary,
        "dailyTotals": daily_totals,
        "budgets": budgets,
        "creditPool": pool,
        "sync": sync,
        "totalCredits": credits(total),  # after the seed's keys
        "totalCreditsNanos": total,
        "range": window_range(start, end),
    }


def _entity_of(row: dict, org_id: str) -> tuple[str, str]:
    """Who a credit is attributed to: its app, else its user, else its agent, else the org."""
    for entity_type, column in (("app", "app_id"), ("user", "user_id"), ("agent", "agent_id")):
        if row[column]:
            return entity_type, row[column]
    return "org", org_id


def _budgets(conn, tenant_id: str, org_id: str, now: datetime) -> list[dict]:
    budgets = q.entity_credit_budgets(conn, tenant_id, org_id)
    if not budgets:
        return []
    month = q.month_start(now)
    used = q.entity_usage(conn, tenant_id, org_id, month, q.add_months(month, 1), now)
    names = entities_by_key(conn, tenant_id, {(b.entity_type, b.entity_id) for b in budgets})
    out = []
    for budget in budgets:
        spent = from_nanos(used.get((budget.entity_type, budget.entity_id), 0))
        limit = Decimal(budget.monthly_budget)
        entity = names.get((budget.entity_type, budget.entity_id))
        out.append(
            {
                "entityId": budget.entity_id,
                "entityType": budget.entity_type,
                "monthlyBudget": credits(limit),
                "creditsUsed": credits(spent),
                "isOverBudget": spent > limit,
                "budgetPercent": float((spent * 100 / limit).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)) if limit else 0.0,
                "budgetRemaining": credits(max(limit - spent, Decimal(0))),
                "entity": None if entity is None else {"name": entity["name"], "slug": entity["slug"], "ownerId": entity["owner_id"]},
            }
        )
    return out


def _credit_pool(conn, tenant_id: str, org_id: str, now: datetime) -> dict:
    """The licence's included credits against this month's use (UTC calendar month)."""
    licence = license_of(conn, tenant_id, org_id)
    included_nanos = 0
    if licence is not None and not licence["revoked"]:
        included_nanos = licence["synced_credits_nanos"] if licence["synced_at"] else licence["issued_credits_nanos"]
        included_nanos = included_nanos or 0
    month = q.month_start(now)
    used_nanos = q.credits_used(conn, tenant_id, org_id, month, q.add_months(month, 1), now)
    return {
        "included": credits(included_nanos),
        "used": credits(used_nanos),
        "remaining": credits(max(included_nanos - used_nanos, 0)),
    }


def _sync(conn, tenant_id: str, org_id: str, now: datetime) -> dict:
    licence = license_of(conn, tenant_id, org_id)
    if licence is None or not licence["license_key"]:
        return {"syncedAt": None, "lastSyncFailedAt": None, "lastSyncFailureCode": None, "stalenessLevel": None}
    return {
        "syncedAt": timestamp(licence["synced_at"]),
        "lastSyncFailedAt": timestamp(licence["last_failed_at"]),
        "lastSyncFailureCode": licence["last_failure_code"],
        "stalenessLevel": staleness_level(licence["synced_at"], now),
    }


@blp.route("/monthly", methods=["GET"])
@answers(CreditHistoryOut)
@blp.arguments(MonthlyArgs(), location="query")
def monthly(args):
    """Credits and events per month and resource type over the trailing `months` months."""
    principal = _reader(BILLING_MANAGE)
    now = _naive(_now())
    first = q.add_months(q.month_start(now), -(args["months"] - 1))
    end = q.add_months(q.month_start(now), 1)
    reflect(*READ_MODELS)
    with services().reader.connect() as conn:
        rows = q.credit_totals(conn, principal.tenant_id, principal.org_id, first, end, now, ["day", "resource_type"])
        pool = _credit_pool(conn, principal.tenant_id, principal.org_id, now)
    months: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        entry = months[(row["day"].strftime("%Y-%m"), row["resource_type"])]
        entry[0] += row["credits_nanos"]
        entry[1] += row["events"]
    history = [
        {"month": month, "resourceType": rtype, "totalCredits": credits(c), "totalEvents": n}
        for (month, rtype), (c, n) in sorted(months.items())
    ]
    return {"history": history, "creditPool": pool}


@blp.route("/top-consumers", methods=["GET"])
@answers(TopConsumersOut)
@blp.arguments(TopArgs(), location="query")
def top_consumers(args):
    """Top apps and top users (or agents) by credits over the last `days` days (today included)."""
    principal = _reader(BILLING_MANAGE)
    now = _naive(_now())
    end_day: date = now.date()
    start_day = end_day - timedelta(days=args["days"] - 1)
    start, end = q.window_days(start_day, end_day)
    tenant_id = principal.tenant_id
    reflect(*READ_MODELS)
    with services().reader.connect() as conn:
        rows = q.credit_totals(conn, tenant_id, principal.org_id, start, end, now, ["app_id", "user_id", "agent_id"])
        apps: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        actors: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in rows:
            if row["app_id"]:
                _bump(apps[row["app_id"]], row)
            if row["user_id"]:
                _bump(actors[("user", row["user_id"])], row)
            elif row["agent_id"]:
                _bump(actors[("agent", row["agent_id"])], row)
        top_apps = _top(apps, args["limit"])
        top_actors = _top(actors, args["limit"])
        names = entities_by_key(conn, tenant_id, {("app", a) for a in top_apps} | set(top_actors))
    return {
        "windowDays": args["days"],
        "startDate": start_day.isoformat(),
        "endDate": end_day.isoformat(),
        "topApps": [
            {
                "entityId": app_id,
                "entityType": "app",
                "name": (names.get(("app", app_id)) or {}).get("name"),
                "slug": (names.get(("app", app_id)) or {}).get("slug"),
                "totalCredits": credits(c),
                "totalEvents": n,
            }
            for app_id, (c, n) in top_apps.items()
        ],
        "topUsers": [
            {
                "actor": actor,
                "actorType": kind,
                "displayName": _display_name(names.get((kind, actor))),
                "totalCredits": credits(c),
                "totalEvents": n,
            }
            for (kind, actor), (c, n) in top_actors.items()
        ],
    }


def _bump(entry: list[int], row: dict) -> None:
    entry[0] += row["credits_nanos"]
    entry[1] += row["events"]


def _top(totals: dict, limit: int) -> dict:
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:limit]
    return dict(ranked)


def _display_name(entity: dict | None) -> str | None:
    if entity is None:
        return None
    return entity["display_name"] or entity["name"]


@blp.route("/resource-types", methods=["GET"])
@answers(list[ResourceTypeOut])
def resource_types():
    """The canonical resource-type registry (read-only, defined in code)."""
    _reader(TENANT_SUPERUSER)
    return [
        {"slug": r.slug, "name": r.name, "category": r.category, "mode": r.mode, "unit": r.unit} for r in RESOURCE_TYPES
    ]
