"""Axon usage and audit log: /v1/axon/usage and /v1/axon/audit."""
from __future__ import annotations

from decimal import Decimal

from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from api.answers import AxonAuditOut, AxonUsageOut, answers
from api.auth import authenticate
from api.consistency import reflect
from api.formats import last_days, money, parse_moment, timestamp, window_range
from api.services import services
from ledger.errors import Invalid
from ledger.usage.rules import OPERATIONS
from projections import axon_queries as q
from projections.usage import UsageRollupsProjection, from_nanos

blp = Blueprint("axon", __name__, url_prefix="/v1/axon", description="Axon usage and audit log")


class AxonUsageArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=365), metadata={"description": "the last N days (today and the N - 1 UTC days before it), 1-365"})
    min_position = fields.Integer(validate=validate.Range(min=0))


class AxonAuditArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    operation = fields.String(data_key="filter[operation]", validate=validate.OneOf(OPERATIONS))
    model = fields.String(data_key="filter[model]", validate=validate.Length(min=1, max=256))
    knowledge_base_id = fields.String(data_key="filter[knowledge_base_id]", validate=validate.Length(min=1, max=128))
    created_after = fields.String(data_key="filter[created_after]", metadata={"description": "ISO 8601 lower bound (inclusive)"})
    created_before = fields.String(data_key="filter[created_before]", metadata={"description": "ISO 8601 upper bound (exclusive)"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    min_position = fields.Integer(validate=validate.Range(min=0))


def _reader(scope: str):
    return authenticate("client", "admin", "user", "key", scope=scope)


@blp.route("/usage", methods=["GET"])
@answers(AxonUsageOut)
@blp.arguments(AxonUsageArgs(), location="query")
def axon_usage(args):
    """Requests and tokens per model and operation over the last `days` days, with the
    estimated cost per model from the price table in force."""
    principal = _reader("read:usage")
    svc = services()
    now = svc.settings.clock.now()
    since, until = last_days(now, args["days"])
    reflect(UsageRollupsProjection.name)
    with svc.reader.connect() as conn:
        rows = q.usage_by_model_and_operation(conn, principal.tenant_id, principal.org_id, since, until)
    prices = svc.ledger.price_book()
    totals = dict.fromkeys(("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_nanos"), 0)
    by_model: dict[str, dict] = {}
    by_operation: dict[str, int] = {}
    for row in rows:
        model = row["model"] or "unknown"
        entry = by_model.setdefault(model, dict.fromkeys(totals, 0))
        for name in totals:
            entry[name] += row[name]
            totals[name] += row[name]
        by_operation[row["operation"]] = by_operation.get(row["operation"], 0) + row["requests"]
    cost_total = Decimal(0)
    for model, entry in by_model.items():
        entry["cost_usd"] = money(from_nanos(entry["cost_nanos"]))  # as recorded: the ledger's figure
        price = prices.price_for(None, model, now)
        if price is None:
            entry["estimated_cost"] = None
            continue
        cost = (
            Decimal(entry["prompt_tokens"]) / 1000 * price.input_per_1k
            + Decimal(entry["completion_tokens"]) / 1000 * price.output_per_1k
        )
        entry["estimated_cost"] = money(cost)  # re-priced at today's price table
        cost_total += cost
    totals["cost_usd"] = money(from_nanos(totals["cost_nanos"]))
    totals["estimated_cost"] = money(cost_total)
    return {
        "data": {
            "period_days": args["days"],
            "since": timestamp(since),
            "range": window_range(since, until),
            "totals": totals,
            "by_model": by_model,
            "by_operation": by_operation,
        }
    }


@blp.route("/audit", methods=["GET"])
@answers(AxonAuditOut)
@blp.arguments(AxonAuditArgs(), location="query")
def axon_audit(args):
    """AI requests, newest first, filtered and paginated (page × per_page ≤ 10,000)."""
    principal = _reader("read:audit")
    page, per_page = args["page"], args["per_page"]
    offset = (page - 1) * per_page
    if offset + per_page > q.MAX_AUDIT_OFFSET:
        raise Invalid(
            "PAGE_TOO_DEEP",
            f"page × per_page may not exceed {q.MAX_AUDIT_OFFSET}; narrow the window with filter[created_before]",
            field="page",
        )
    after = args.get("created_after")
    before = args.get("created_before")
    audit_filter = q.AuditFilter(
        tenant_id=principal.tenant_id,
        org_id=principal.org_id,
        operation=args.get("operation"),
        model=args.get("model"),
        knowledge_base_id=args.get("knowledge_base_id"),
        created_after=parse_moment(after, "filter[created_after]") if after else None,
        created_before=parse_moment(before, "filter[created_before]") if before else None,
    )
    reflect("axon_audit")
    with services().reader.connect() as conn:
        rows, total = q.audit_page(conn, audit_filter, offset, per_page)
    return {
        "data": [q.audit_record(r) for r in rows],
        "pagination": {"page": page, "per_page": per_page, "total": total, "has_more": offset + len(rows) < total},
    }

