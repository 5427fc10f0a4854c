"""Deeper usage analytics of the cost controls surface: breakdowns by a
dimension and filtered usage records. Totals come from the rollups, records from
usage_events; nothing scans raw events for totals."""
from __future__ import annotations

from datetime import timedelta

from flask_smorest import Blueprint
from marshmallow import EXCLUDE, fields, validate

from api.answers import BreakdownOut, RecordsOut, answers
from api.auth import authenticate
from api.consistency import reflect
from projections.usage import UsageEventsProjection, UsageRollupsProjection
from api.formats import DEFAULT_DAYS, WindowNames, last_days, money, parse_moment, timestamp, window_range
from api.services import services
from api.usage_codec import usage_event_json
from ledger.errors import Invalid
from projections import usage_analytics_queries as q
from projections.credits_gauges import with_gauge_credits
from projections.usage import TOKEN_DETAILS, from_nanos, naive_utc
from projections.usage_queries import Scope

blp = Blueprint("usage_analytics", __name__, url_prefix="/api/v1", description="Usage breakdowns and records")

_ID = validate.Length(min=1, max=256)


class WindowArgs(WindowNames):
    class Meta:
        unknown = EXCLUDE

    start = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD; default 30 days before end (the last 30 days)"})
    end = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD (a date includes that day); default end of today"})
    min_position = fields.Integer(validate=validate.Range(min=0))


class BreakdownArgs(WindowArgs):
    group_by = fields.String(load_default="model", validate=validate.OneOf(list(q.GROUPS)))


class RecordArgs(WindowArgs):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    event_type = fields.String(validate=_ID)
    provider = fields.String(validate=_ID)
    model = fields.String(validate=_ID)
    operation = fields.String(validate=_ID)
    client_id = fields.String(validate=_ID)
    agent_id = fields.String(validate=_ID)
    team_id = fields.String(validate=_ID)
    user_id = fields.String(validate=_ID)
    workflow_id = fields.String(validate=_ID)
    app_id = fields.String(validate=_ID)
    success = fields.Boolean()


def _window(args: dict):
    start, end = last_days(services().settings.clock.now())  # the last 30 days, today included
    if args.get("end"):
        end = parse_moment(args["end"], "end", end_of_day=True)
        start = end - timedelta(days=DEFAULT_DAYS)
    if args.get("start"):
        start = parse_moment(args["start"], "start")
    if start > end:
        raise Invalid("VALIDATION_FAILED", "start must not be after end", field="start")
    return start, end


def _scope() -> Scope:
    """Agent clients, the admin key for a tenant's org, and portal sessions (as /api/v1/usage)."""
    principal = authenticate("client", "admin", "user")
    return Scope(principal.tenant_id, principal.org_id)


def _measures(row: dict) -> dict:
    return {
        "events": row["events"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "cost_usd": money(from_nanos(row["cost_nanos"])),
        "credits": money(from_nanos(row["credits_nanos"])),
        "unpriced_events": row["unpriced_events"],
        "cost_nanos": int(row["cost_nanos"]),  # exact, beside the rounded figures
        "credits_nanos": int(row["credits_nanos"]),
        "reported_cost_usd": money(from_nanos(row["reported_cost_nanos"])),  # as a gateway (LiteLLM) reported it
        **{name: row[name] for name in TOKEN_DETAILS},
    }


@blp.route("/usage/breakdown", methods=["GET"])
@answers(BreakdownOut)
@blp.arguments(BreakdownArgs(), location="query")
def usage_breakdown(args):
    """Usage and cost per provider, model, agent, team, user, workflow, app or day."""
    scope = _scope()
    start, end = _window(args)
    position = reflect(UsageRollupsProjection.name, "credits")
    group_by = args["group_by"]
    now = naive_utc(services().settings.clock.now())
    with services().reader.connect() as conn:
        rows = q.breakdown(conn, scope, start, end, group_by, now)
    total_cost = sum(r["cost_nanos"] for r in rows)
    items = []
    for row in rows:
        if group_by == "day":
            item = {"key": row["bucket"].date().isoformat()}
        elif group_by == "model":
            item = {"key": row["model"] or None, "provider": row["provider"] or None}
        else:
            item = {"key": row[q.GROUPS[group_by][0]] or None}
        item.update(_measures(row))
        item["cost_share"] = round(row["cost_nanos"] * 100 / total_cost, 2) if total_cost else 0.0
        items.append(item)
    totals = {m: sum(r[m] for r in rows) for m in q.BREAKDOWN_MEASURES}
    return {
        "group_by": group_by,
        "start": timestamp(start),
        "end": timestamp(end),
        "range": window_range(start, end),
        "breakdown": items,
        "totals": _measures(totals),
        "position": position,
    }


@blp.route("/usage/records", methods=["GET"])
@answers(RecordsOut)
@blp.arguments(RecordArgs(), location="query")
def usage_records(args):
    """Usage records, newest first, filtered; limit ≤ 1,000 with offset."""
    scope = _scope()
    start, end = _window(args)
    position = reflect(UsageEventsProjection.name)
    filters = {k: args[k] for k in q.RECORD_FILTERS if k in args}
    with services().reader.connect() as conn:
        rows = q.records(conn, scope, start, end, filters, args["limit"] + 1, args["offset"])
        more = len(rows) > args["limit"]
        rows = list(with_gauge_credits(conn, rows[: args["limit"]], services().settings.clock.now()))
    return {
        "records": [usage_event_json(r) for r in rows],
        "limit": args["limit"],
        "offset": args["offset"],
        "has_more": more,
        "start": timestamp(start),
        "end": timestamp(end),
        "range": window_range(start, end),
        "position": position,
    }
