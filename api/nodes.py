"""Heartbeats and node capacity: agents report in; the portal shows which
nodes are active (a heartbeat within NODE_ACTIVE_WINDOW_SECONDS) against the licence.

Customer-facing node views exist in In-VPC deployments only; in SaaS they answer 403.
"""
from __future__ import annotations

from datetime import timedelta, timezone

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import HeartbeatOut, answers
from api.auth import Principal, authenticate, require_admin_key
from api.consistency import appended, reflect
from api.formats import timestamp
from api.routing import fan_out, fan_out_one
from api.services import services
from ledger.errors import Forbidden, Invalid, NotFound
from ledger.licensing.rules import node_capacity_status, percentage
from ledger.licensing.rules import INSTANCE_TYPES
from projections import licenses_queries, nodes_queries

blp = Blueprint("nodes", __name__, url_prefix="/api/v1", description="Heartbeats and nodes")


class HeartbeatIn(Schema):
    instance_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9._:-]{1,128}$"))
    instance_type = fields.String(required=True, validate=validate.OneOf(INSTANCE_TYPES))
    hostname = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    port = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=65535))
    host_info = fields.Dict(keys=fields.String(), allow_none=True)


class ReadArgs(Schema):
    min_position = fields.Integer(validate=validate.Range(min=0))


class AdminStatusArgs(ReadArgs):
    org_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    tenant_id = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "needed when several tenants use this org id"})


class NodeOut(Schema):
    instance_id = fields.String()
    instance_type = fields.String()
    last_seen = fields.String()
    first_seen = fields.String()
    hostname = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    host_info = fields.Dict(allow_none=True)


class NodesOut(Schema):
    total_active = fields.Integer()
    nodes = fields.List(fields.Nested(NodeOut))
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer())


class NodeStatusOut(Schema):
    tenant_id = fields.String(metadata={"description": "admin view only"})
    org_id = fields.String(metadata={"description": "admin view only"})
    agents = fields.Integer()
    orchestrators = fields.Integer()
    total = fields.Integer()
    max_allowed = fields.Integer()
    percentage = fields.Raw()
    status = fields.String(metadata={"description": "OK, CAUTION, WARNING or VIOLATION"})
    partial = fields.Boolean(metadata={"description": "LEDGER_CLUSTERS, admin view without tenant_id: a cluster did not answer"})
    missing_clusters = fields.List(fields.String())


def _active_since():
    settings = services().settings
    moment = settings.clock.now() - timedelta(seconds=settings.node_active_window_seconds)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _invpc_reader(code: str, what: str) -> Principal:
    principal = authenticate("user", "key", "admin", scope="read:usage")
    if services().settings.deployment_mode != "invpc":
        raise Forbidden(code, f"{what} are available in In-VPC deployments only")
    return principal


def node_json(row: dict) -> dict:
    return {
        "instance_id": row["instance_id"],
        "instance_type": row["instance_type"],
        "last_seen": timestamp(row["last_seen"]),
        "first_seen": timestamp(row["first_seen"]),
        "hostname": row["hostname"],
        "port": row["port"],
        "host_info": row["host_info"],
    }


def capacity(conn, tenant_id: str, org_id: str) -> dict:
    counts = nodes_queries.active_node_counts(conn, tenant_id, org_id, _active_since())
    licence = licenses_queries.active_license(conn, tenant_id, org_id)
    max_allowed = licence["nodes_total"] if licence else 0
    total = counts["agent"] + counts["orchestrator"]
    return {
        "agents": counts["agent"],
        "orchestrators": counts["orchestrator"],
        "total": total,
        "max_allowed": max_allowed,
        "percentage": percentage(total, max_allowed),
        "status": node_capacity_status(total, max_allowed),
    }


@blp.route("/heartbeats", methods=["POST"])
@answers(HeartbeatOut, status=202)
@blp.arguments(HeartbeatIn())
def heartbeat(body):
    """An agent or orchestrator reports that it is alive (Basic client auth)."""
    principal = authenticate("client")
    position = services().ledger.licensing.record_heartbeat(
        principal.as_actor(), body["instance_id"], body["instance_type"],
        body.get("hostname"), body.get("port"), body.get("host_info"),
    )
    return {"accepted": True, "position": appended(position)}, 202


@blp.route("/nodes", methods=["GET"])
@blp.arguments(ReadArgs(), location="query")
@blp.response(200, NodesOut)
def nodes(args):
    """Active nodes of the organization (In-VPC only)."""
    principal = _invpc_reader("NODE_METRICS_UNAVAILABLE", "Node metrics")
    reflect("node_status")
    with services().reader.connect() as conn:
        rows = nodes_queries.active_nodes(conn, principal.tenant_id, principal.org_id, _active_since())
    by_type = {kind: sum(1 for r in rows if r["instance_type"] == kind) for kind in INSTANCE_TYPES}
    return {"total_active": len(rows), "nodes": [node_json(r) for r in rows], "by_type": by_type}


@blp.route("/nodes/status", methods=["GET"])
@blp.arguments(ReadArgs(), location="query")
@blp.response(200, NodeStatusOut)
def nodes_status(args):
    """Active nodes against the licensed maximum: OK, CAUTION ≥80 %, WARNING ≥90 %,
    VIOLATION above the maximum (In-VPC only)."""
    principal = _invpc_reader("NODE_STATUS_UNAVAILABLE", "Node status")
    reflect("node_status", "licenses")
    with services().reader.connect() as conn:
        return capacity(conn, principal.tenant_id, principal.org_id)


@blp.route("/nodes/<instance_id>", methods=["GET"])
@blp.arguments(ReadArgs(), location="query")
@blp.response(200, NodeOut)
def node(args, instance_id):
    """One node of the organization, active or not (In-VPC only)."""
    principal = _invpc_reader("NODE_METRICS_UNAVAILABLE", "Node metrics")
    reflect("node_status")
    with services().reader.connect() as conn:
        row = nodes_queries.node(conn, principal.tenant_id, principal.org_id, instance_id)
    if row is None:
        raise NotFound("NODE_NOT_FOUND", f"Node {instance_id} not found")
    return node_json(row)


@blp.route("/admin/nodes/status", methods=["GET"])
@blp.arguments(AdminStatusArgs(), location="query")
@blp.response(200, NodeStatusOut)
def admin_nodes_status(args):
    """Node capacity of any organization, in any deployment mode (X-Admin-API-Key)."""
    require_admin_key()
    if args.get("tenant_id") is None:
        # several clusters: find the org's tenant in each, then read its own cluster
        every = fan_out(lambda: _tenants_with_org(args["org_id"]))
        if every is not None:
            found = [(name, t) for name, tenants in every.by_cluster.items() for t in tenants]
            if len(found) > 1:
                raise Invalid("AMBIGUOUS_ORG", "Several tenants use this org_id; add tenant_id", field="tenant_id")
            if found:
                name, tenant = found[0]
                answer = fan_out_one(name, lambda: _status(tenant, args["org_id"]))
                return {**answer, **every.flags()}
            return {**_status("", args["org_id"]), **every.flags()}
    return _status(args.get("tenant_id"), args["org_id"])


def _tenants_with_org(org_id: str) -> list[str]:
    reflect("node_status", "licenses")
    with services().reader.connect() as conn:
        return nodes_queries.tenants_with_org(conn, org_id)


def _status(tenant_id: str | None, org_id: str) -> dict:
    args = {"tenant_id": tenant_id, "org_id": org_id}
    reflect("node_status", "licenses")
    with services().reader.connect() as conn:
        tenant_id = args.get("tenant_id")
        if tenant_id is None:
            tenants = nodes_queries.tenants_with_org(conn, args["org_id"])
            if len(tenants) > 1:
                raise Invalid("AMBIGUOUS_ORG", "Several tenants use this org_id; add tenant_id", field="tenant_id")
            tenant_id = tenants[0] if tenants else ""
        return {"tenant_id": tenant_id, "org_id": args["org_id"], **capacity(conn, tenant_id, args["org_id"])}
