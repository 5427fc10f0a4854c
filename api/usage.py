"""Usage read endpoints of the portal: usage, summary and CSV export."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from decimal import Decimal

from flask import request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from api.answers import SummaryOut, UsageOut, answers, answers_text
from api.auth import Principal, authenticate
from api.consistency import reflect
from api.formats import (
    DEFAULT_DAYS, Day, WindowNames, csv_response, day_start, event_time, last_days, money, parse_moment, timestamp,
    window_range,
)
from api.services import services
from api.usage_codec import RAW_JSON_FIELDS, usage_csv_row, usage_event_json
from ledger.errors import Forbidden, Invalid, Malformed
from ledger.usage.rules import MAX_FUTURE
from projections import usage_queries as q
from projections.credits_gauges import with_gauge_credits
from projections.usage import TOKEN_DETAILS, USAGE_PROJECTIONS, UsageEventsProjection, UsageRollupsProjection, to_nanos

blp = Blueprint("usage", __name__, url_prefix="/api/v1", description="Usage and exports")

EXPORT_ROW_CAP = 50_000
SEED_RAW_CSV_HEADER = (
    "event_id", "event_type", "instance_id", "instance_type", "http_method", "http_path", "http_status_code",
    "llm_provider", "llm_model", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
    "latency_ms", "policies_evaluated", "policy_violations", "created_at",
)
# the raw JSON as CSV: the seed's columns first, then the token details, then every other raw field
_LEADING = (*SEED_RAW_CSV_HEADER, *TOKEN_DETAILS)  # token details right after the seed's columns
RAW_CSV_HEADER = (*_LEADING, *(f for f in RAW_JSON_FIELDS if f not in _LEADING))
AGGREGATE_CSV_HEADER = (
    "event_type", "time_bucket", "event_count", "prompt_tokens", "completion_tokens", "total_tokens",
    "estimated_cost_usd", "average_latency_ms", "policies_evaluated", "policy_violations",
    "success_count", "error_count", *TOKEN_DETAILS,
    "estimated_cost_nanos",  # exact, beside the 6-decimal estimated_cost_usd
)
EXPORT_HEADER = (
    "timestamp", "client_id", "event_type", "llm_provider", "llm_model", "http_method", "http_path",
    "http_status_code", "latency_ms", "prompt_tokens", "completion_tokens", "total_tokens",
    "estimated_cost_cents", "policy_violations",
)


class ReadArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    min_position = fields.Integer(validate=validate.Range(min=0), metadata={"description": "wait until read models pass this ledger position"})


class WindowArgs(ReadArgs, WindowNames):
    window = ("start_date", "end_date")
    start_date = Day(metadata={"description": "YYYY-MM-DD, inclusive; default 29 days before end_date (the last 30 days)"})
    end_date = Day(metadata={"description": "YYYY-MM-DD, inclusive; default today (UTC)"})
    platform_wide = fields.Boolean(load_default=False)


class UsageArgs(WindowArgs):
    granularity = fields.String(load_default="daily", validate=validate.OneOf(["raw", "hourly", "daily"]))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))
    client_id = fields.String(validate=validate.Length(min=1, max=64))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(validate=validate.Length(max=200))


class ExportArgs(ReadArgs, WindowNames):
    start = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD"})
    end = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD (a date includes that day)"})
    days = fields.Integer(metadata={"description": "the last N days (today and the N - 1 UTC days before it), 1-365, only without start and end"})


def _scope(principal: Principal, platform_wide: bool, client_id: str | None = None) -> q.Scope:
    if not platform_wide:
        return q.Scope(principal.tenant_id, principal.org_id, client_id)
    if services().settings.deployment_mode != "invpc":
        raise Forbidden("PLATFORM_WIDE_UNAVAILABLE", "platform_wide queries are available in In-VPC deployments only")
    if not principal.can("usage:platform_wide"):
        raise Forbidden("PERMISSION_DENIED", "platform_wide needs the usage:platform_wide permission")
    return q.Scope(principal.tenant_id, None, client_id)


def _window(args: dict) -> tuple[datetime, datetime]:
    today = services().settings.clock.now().date()
    end_day = args.get("end_date") or today
    start_day = args.get("start_date") or (end_day - timedelta(days=DEFAULT_DAYS - 1))  # the last 30 days
    if start_day > end_day:
        raise Invalid("VALIDATION_FAILED", "start_date must not be after end_date", field="start_date")
    return day_start(start_day), day_start(end_day) + timedelta(days=1)


def _reader():
    return authenticate("client", "admin", "user", "key", scope="read:usage")


@blp.route("/usage", methods=["GET"])
@answers(UsageOut, csv=True)
@blp.arguments(UsageArgs(), location="query")
def get_usage(args):
    """Usage events (raw, paginated) or aggregates (hourly/daily), as JSON or CSV."""
    principal = _reader()
    scope = _scope(principal, args["platform_wide"], args.get("client_id"))
    start, end = _window(args)
    position = reflect(*USAGE_PROJECTIONS)
    granularity, fmt = args["granularity"], args["format"]
    engine = services().engine
    if granularity == "raw":
        paged = fmt == "json" or "limit" in request.args or "cursor" in request.args
        if not paged:  # the whole window as one download, newest first, capped like the export
            return csv_response("usage_events.csv", RAW_CSV_HEADER, _raw_csv_rows(engine, scope, start, end), EXPORT_ROW_CAP, (start, end))
        after = _decode_cursor(args.get("cursor"))
        with engine.connect() as conn:
            rows = q.raw_page(conn, scope, start, end, args["limit"] + 1, after)
            more = len(rows) > args["limit"]
            rows = list(with_gauge_credits(conn, rows[: args["limit"]], services().settings.clock.now()))
        if fmt == "csv":  # the same page as the JSON answer; the next page's cursor in X-Next-Cursor
            next_cursor = {"X-Next-Cursor": _encode_cursor(rows[-1])} if more else {}
            return csv_response(
                "usage_events.csv", RAW_CSV_HEADER, (usage_csv_row(r, RAW_CSV_HEADER) for r in rows),
                window=(start, end), headers=next_cursor,
            )
        return {
            "granularity": "raw",
            "start_date": start.date().isoformat(),
            "end_date": (end - timedelta(days=1)).date().isoformat(),
            "range": window_range(start, end),
            "data": [usage_event_json(r) for r in rows],
            "next_cursor": _encode_cursor(rows[-1]) if more else None,
            "position": position,
        }
    with engine.connect() as conn:
        rows = q.aggregates(conn, scope, start, end, granularity)
    if fmt == "csv":
        return csv_response(
            "usage_aggregates.csv",
            AGGREGATE_CSV_HEADER,
            (
                [r["event_type"], timestamp(r["time_bucket"]), r["event_count"], r["prompt_tokens"],
                 r["completion_tokens"], r["total_tokens"], money(r["estimated_cost_usd"]), r["average_latency_ms"],
                 r["policies_evaluated"], r["policy_violations"], r["success_count"], r["error_count"],
                 *(r[name] for name in TOKEN_DETAILS), to_nanos(r["estimated_cost_usd"])]
                for r in rows
            ),
            window=(start, end),
        )
    return {
        "granularity": granularity,
        "start_date": start.date().isoformat(),
        "end_date": (end - timedelta(days=1)).date().isoformat(),
        "range": window_range(start, end),
        "data": [
            dict(
                r,
                time_bucket=timestamp(r["time_bucket"]),
                estimated_cost_usd=money(r["estimated_cost_usd"]),
                estimated_cost_nanos=to_nanos(r["estimated_cost_usd"]),
            )
            for r in rows
        ],
        "position": position,
    }


@blp.route("/usage/summary", methods=["GET"])
@answers(SummaryOut)
@blp.arguments(WindowArgs(), location="query")
def get_summary(args):
    """Totals for the window: API calls, LLM requests, tokens, cost, latency, success rate, event types."""
    principal = _reader()
    scope = _scope(principal, args["platform_wide"])
    start, end = _window(args)
    position = reflect(UsageRollupsProjection.name)
    with services().reader.connect() as conn:
        totals = q.summary(conn, scope, start, end)
    cost = totals["estimated_cost_usd"]
    totals["estimated_cost_usd"] = money(cost)
    return {
        "start_date": start.date().isoformat(),
        "end_date": (end - timedelta(days=1)).date().isoformat(),
        "range": window_range(start, end),
        **totals,
        "estimated_cost_nanos": to_nanos(cost),  # exact, beside the 6-decimal figure
        "position": position,
    }


@blp.route("/export/usage", methods=["GET"])
@answers_text("text/csv")
@blp.arguments(ExportArgs(), location="query")
def export_usage(args):
    """CSV of usage events, newest first, at most 50,000 rows, streamed."""
    principal = _reader()
    scope = _scope(principal, False)
    now = services().settings.clock.now().replace(tzinfo=None)
    start_raw, end_raw, days = args.get("start"), args.get("end"), args.get("days")
    if days is not None and (start_raw or end_raw):
        raise Malformed("BAD_REQUEST", "days is accepted only when start and end are absent", field="days")
    if days is not None and not 1 <= days <= 365:
        raise Invalid("VALIDATION_FAILED", "days must be between 1 and 365", field="days")
    if end_raw:
        end = parse_moment(end_raw, "end", end_of_day=True)
        start = parse_moment(start_raw, "start") if start_raw else end - timedelta(days=DEFAULT_DAYS)
    else:
        # the last N days (default 30); the end stretches to the latest moment an accepted
        # event may have (now + MAX_FUTURE) in the minutes before midnight, so that the
        # default export holds every accepted event
        start, end = last_days(now, days or DEFAULT_DAYS)
        end = max(end, now + MAX_FUTURE)
        if start_raw:
            start = parse_moment(start_raw, "start")
    if start > end:
        raise Invalid("VALIDATION_FAILED", "start must not be after end", field="start")
    reflect(UsageEventsProjection.name)
    engine = services().engine

    def rows():
        with engine.connect() as conn:
            for r in q.stream_events(conn, scope, start, end, EXPORT_ROW_CAP):
                yield [
                    event_time(r["occurred_at"]), r["client_id"], r["event_type"], r["llm_provider"], r["llm_model"],
                    r["http_method"], r["http_path"], r["http_status_code"], r["latency_ms"], r["prompt_tokens"],
                    r["completion_tokens"], r["total_tokens"], _cents(r["cost_nanos"]), r["policy_violations"],
                ]

    return csv_response("usage_export.csv", EXPORT_HEADER, rows(), EXPORT_ROW_CAP, (start, end))


def _raw_csv_rows(engine, scope, start, end):
    now = services().settings.clock.now()
    with engine.connect() as conn, engine.connect() as lookups:  # gauge credits on a second connection
        rows = q.stream_events(conn, scope, start, end, EXPORT_ROW_CAP)  # newest first, capped like the export
        for r in with_gauge_credits(lookups, rows, now):
            yield usage_csv_row(r, RAW_CSV_HEADER)


def _cents(nanos: int) -> str:
    """The cost in cents, exact (a nano-dollar is 0.0000001 cent), no exponent, always with a
    decimal point ("8000.0", "112.5") so that every row of the column has one type."""
    text = format(Decimal(nanos).scaleb(-7).normalize(), "f") if nanos else "0"
    return text if "." in text else text + ".0"


def _encode_cursor(row: dict) -> str:
    raw = f"{row['occurred_at'].isoformat()}|{row['position']}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        moment, position = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(moment), int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("VALIDATION_FAILED", "cursor is not valid", field="cursor") from None
