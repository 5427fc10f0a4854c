"""Policies: org-scoped definitions managed by admins, exported by the portal."""
from __future__ import annotations

import json

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import answers
from api.answers_admin import PoliciesOut, PolicyWrittenOut
from api.auth import authenticate, require_admin_key
from api.consistency import appended, reflect
from api.formats import csv_response, timestamp
from api.services import services
from ledger.policies.rules import POLICY_ACTIONS
from projections import policies_queries as q

blp = Blueprint("policies", __name__, url_prefix="/api/v1", description="Policies")

_id = dict(required=True, validate=validate.Length(min=1, max=64))
CSV_HEADER = (
    "policy_id", "name", "description", "category", "action", "enabled", "revision", "rules", "created_at", "updated_at",
)


class PolicyFields(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=2000))
    category = fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,63}$"), metadata={"description": "default general"})
    action = fields.String(validate=validate.OneOf(POLICY_ACTIONS), metadata={"description": "default block"})
    enabled = fields.Boolean(metadata={"description": "default true"})
    rules = fields.Dict(keys=fields.String(), metadata={"description": "the policy's rules (JSON object, ≤ 32 KiB)"})


class PolicyIn(PolicyFields):
    tenant_id = fields.String(**_id)
    org_id = fields.String(**_id)
    policy_id = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9._:-]{1,64}$"), metadata={"description": "generated when absent"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class PolicyUpdateIn(PolicyFields):
    tenant_id = fields.String(**_id)


class TenantArgs(Schema):
    tenant_id = fields.String(**_id)


class ExportArgs(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))
    min_position = fields.Integer(validate=validate.Range(min=0))


def policy_json(row: dict) -> dict:
    return {
        "policy_id": row["policy_id"],
        "name": row["name"],
        "description": row["description"],
        "category": row["category"],
        "action": row["action"],
        "enabled": bool(row["enabled"]),
        "revision": row["revision"],
        "rules": row["rules"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
    }


@blp.route("/admin/policies", methods=["POST"])
@answers(PolicyWrittenOut, status=201)
@blp.arguments(PolicyIn())
def create_policy(body):
    """Create a policy of an organization (duplicate policy_id → 409)."""
    require_admin_key()
    definition = {k: body[k] for k in ("name", "description", "category", "action", "enabled", "rules") if k in body}
    policy_id, position = services().ledger.policies.create_policy(body["tenant_id"], body["org_id"], definition, "admin", body.get("policy_id", ""))
    return {"policy_id": policy_id, "tenant_id": body["tenant_id"], "org_id": body["org_id"], "position": appended(position)}, 201


@blp.route("/admin/policies/<policy_id>", methods=["PUT"])
@answers(PolicyWrittenOut)
@blp.arguments(PolicyUpdateIn())
def update_policy(body, policy_id):
    """Change some of a policy's fields (the others keep their values)."""
    require_admin_key()
    changes = {k: v for k, v in body.items() if k != "tenant_id"}
    position = services().ledger.policies.update_policy(body["tenant_id"], policy_id, changes, "admin")
    return {"policy_id": policy_id, "tenant_id": body["tenant_id"], "position": appended(position)}


@blp.route("/admin/policies/<policy_id>", methods=["DELETE"])
@blp.arguments(TenantArgs(), location="query")
@blp.response(204)
def delete_policy(args, policy_id):
    """Delete a policy (?tenant_id=...)."""
    require_admin_key()
    appended(services().ledger.policies.delete_policy(args["tenant_id"], policy_id, "admin"))


@blp.route("/policies/export", methods=["GET"])
@answers(PoliciesOut, csv=True)
@blp.arguments(ExportArgs(), location="query")
def export_policies(args):
    """The organization's policies as JSON, or CSV with format=csv (API keys need read:policies)."""
    principal = authenticate("user", "key", "admin", scope="read:policies")
    position = reflect("policies")
    with services().reader.connect() as conn:
        rows = q.org_policies(conn, principal.tenant_id, principal.org_id)
    if args["format"] == "csv":
        return csv_response(
            "policies.csv",
            CSV_HEADER,
            (
                [r["policy_id"], r["name"], r["description"], r["category"], r["action"], bool(r["enabled"]),
                 r["revision"], json.dumps(r["rules"], sort_keys=True), timestamp(r["created_at"]), timestamp(r["updated_at"])]
                for r in rows
            ),
        )
    return {
        "org_id": principal.org_id,
        "exported_at": timestamp(services().settings.clock.now()),
        "total": len(rows),
        "policies": [policy_json(r) for r in rows],
        "position": position,
    }
