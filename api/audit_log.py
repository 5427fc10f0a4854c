"""GET /api/v1/admin/audit-log: who did what, to what, with which outcome.

The admin key sees every tenant (filter with tenant_id); a portal user with the `admin`
permission sees their own tenant only, and another tenant's entry is not found (404).
"""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import Principal, authenticate, require_admin_key, require_permission
from api.consistency import reflect
from api.formats import parse_moment, timestamp
from api.routing import fan_out
from api.services import services
from ledger.errors import Invalid, NotFound
from projections import admin_audit_queries as q

blp = Blueprint("audit_log", __name__, url_prefix="/api/v1/admin", description="Admin audit log")


class AuditArgs(Schema):
    action = fields.String(validate=validate.Length(max=64))
    actor = fields.String(validate=validate.Length(max=300))
    outcome = fields.String(validate=validate.OneOf(["success", "failure", "denied"]))
    since = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD, inclusive"})
    until = fields.String(metadata={"description": "RFC3339 or YYYY-MM-DD (a date includes that day)"})
    tenant_id = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "admin key only"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.Integer(validate=validate.Range(min=1), metadata={"description": "next_cursor of the previous page"})
    min_position = fields.Integer(validate=validate.Range(min=0))


class ReadArgs(Schema):
    min_position = fields.Integer(validate=validate.Range(min=0))


class EntryOut(Schema):
    id = fields.Integer(metadata={"description": "the ledger position of the event"})
    recorded_at = fields.String()
    tenant_id = fields.String()
    org_id = fields.String()
    actor = fields.String()
    action = fields.String()
    target = fields.String()
    outcome = fields.String()
    reason = fields.String()
    details = fields.Dict()
    cluster = fields.String(metadata={"description": "LEDGER_CLUSTERS, every tenant's view: the cluster of the entry (id is its position there)"})


class PageOut(Schema):
    entries = fields.List(fields.Nested(EntryOut))
    next_cursor = fields.Integer(allow_none=True)
    position = fields.Integer()
    positions = fields.Dict(metadata={"description": "LEDGER_CLUSTERS, every tenant's view: the position read, by cluster"})
    partial = fields.Boolean(metadata={"description": "LEDGER_CLUSTERS: true when a cluster did not answer"})
    missing_clusters = fields.List(fields.String())


def _reader() -> tuple[Principal, str | None]:
    """(principal, tenant the caller is confined to; None = every tenant)."""
    if "X-Admin-API-Key" in request.headers:
        return require_admin_key(), None
    principal = authenticate("user")
    require_permission(principal, "admin")
    return principal, principal.tenant_id


def entry_json(row: dict) -> dict:
    return {
        "id": row["position"],
        "recorded_at": timestamp(row["recorded_at"]),
        "tenant_id": row["tenant_id"],
        "org_id": row["org_id"],
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "details": row["details"],
    }


@blp.route("/audit-log", methods=["GET"])
@blp.arguments(AuditArgs(), location="query")
@blp.response(200, PageOut)
def audit_log(args):
    """Entries newest first; filter by action, actor, outcome, since, until; page with cursor."""
    _, confined = _reader()
    tenant_id = confined if confined is not None else args.get("tenant_id")
    since = parse_moment(args["since"], "since") if args.get("since") else None
    until = parse_moment(args["until"], "until", end_of_day=True) if args.get("until") else None
    if since and until and since > until:
        raise Invalid("VALIDATION_FAILED", "since must not be after until", field="since")
    where = q.AuditFilter(tenant_id, args.get("action"), args.get("actor"), args.get("outcome"), since, until)

    def page() -> tuple[int, list]:
        position = reflect("admin_audit")
        with services().reader.connect() as conn:
            return position, q.entries(conn, where, args["limit"] + 1, args.get("cursor"))

    if tenant_id is None and not args.get("cursor"):
        every = fan_out(page)  # several clusters: the newest entries of them all (page with tenant_id)
        if every is not None:
            merged = sorted(
                ({**entry_json(r), "cluster": name} for name, (_, rows) in every.by_cluster.items() for r in rows),
                key=lambda e: (e["recorded_at"], e["id"]), reverse=True,
            )
            return {
                "entries": merged[: args["limit"]], "next_cursor": None,
                "position": min((p for p, _ in every.by_cluster.values()), default=0),
                "positions": {name: p for name, (p, _) in every.by_cluster.items()}, **every.flags(),
            }
    position, rows = page()
    more = len(rows) > args["limit"]
    rows = rows[: args["limit"]]
    return {
        "entries": [entry_json(r) for r in rows],
        "next_cursor": rows[-1]["position"] if more else None,
        "position": position,
    }


@blp.route("/audit-log/<int:entry_id>", methods=["GET"])
@blp.arguments(ReadArgs(), location="query")
@blp.response(200, EntryOut)
def audit_entry(args, entry_id):
    """One entry (another tenant's entry is not found)."""
    _, confined = _reader()
    reflect("admin_audit")
    with services().reader.connect() as conn:
        row = q.entry(conn, entry_id, confined)
    if row is None:
        raise NotFound("AUDIT_ENTRY_NOT_FOUND", f"Audit entry {entry_id} not found")
    return entry_json(row)
