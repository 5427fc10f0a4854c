"""Licences: status for the portal, issue / replace / revoke for admins."""
from __future__ import annotations

from datetime import timedelta, timezone

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import answers
from api.answers_admin import LicenseWrittenOut
from api.auth import Principal, authenticate, require_admin_key
from api.consistency import appended, reflect
from api.formats import Moment, timestamp
from api.services import services
from ledger.errors import Forbidden, NotFound
from ledger.licensing.rules import TIERS, LicenseTerms, license_status, percentage
from projections import licenses_queries, nodes_queries

blp = Blueprint("licenses", __name__, url_prefix="/api/v1", description="Licences")

_id = dict(required=True, validate=validate.Length(min=1, max=64))


class TermsIn(Schema):
    tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    nodes_total = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1_000_000))
    expires_at = Moment(required=True, metadata={"description": "RFC3339 with offset"})
    credits_included = fields.Decimal(allow_none=True, validate=validate.Range(min=0), metadata={"description": "credits in the pool"})
    license_key = fields.String(allow_none=True, validate=validate.Length(min=1, max=256))


class LicenseIn(TermsIn):
    tenant_id = fields.String(**_id)
    org_id = fields.String(**_id)


class ReplaceIn(TermsIn):
    tenant_id = fields.String(**_id)


class TenantArgs(Schema):
    tenant_id = fields.String(**_id)


class StatusArgs(Schema):
    org_id = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "default: the caller's org"})
    min_position = fields.Integer(validate=validate.Range(min=0))


class StatusOut(Schema):
    org_id = fields.String()
    tier = fields.String()
    nodes_total = fields.Integer()
    nodes_used = fields.Integer()
    usage_percentage = fields.Raw()
    status = fields.String(metadata={"description": "ACTIVE, EXPIRING_SOON, EXPIRED or OVER_LIMIT"})
    expires_at = fields.String()


def _terms(body: dict) -> LicenseTerms:
    return LicenseTerms(
        tier=body["tier"],
        nodes_total=body["nodes_total"],
        expires_at=body["expires_at"].astimezone(timezone.utc),
        credits_included=body.get("credits_included"),
        license_key=body.get("license_key"),
    )


def _org_of(principal: Principal, org_id: str | None) -> str:
    """Another org of the same tenant needs the admin or tenant-superuser permission."""
    if not org_id or org_id == principal.org_id:
        return principal.org_id
    if not (principal.can("admin") or principal.can("permission.tenant.superuser")):
        raise Forbidden("PERMISSION_DENIED", "Other organizations need the admin or permission.tenant.superuser permission")
    return org_id


def license_report(conn, tenant_id: str, org_id: str) -> dict:
    settings = services().settings
    licence = licenses_queries.active_license(conn, tenant_id, org_id)
    if licence is None:
        raise NotFound("LICENSE_NOT_FOUND", f"Organization {org_id} has no licence")
    now = settings.clock.now()
    since = (now - timedelta(seconds=settings.node_active_window_seconds)).astimezone(timezone.utc).replace(tzinfo=None)
    nodes_used = sum(nodes_queries.active_node_counts(conn, tenant_id, org_id, since).values())
    expires_at = licence["expires_at"].replace(tzinfo=timezone.utc)
    return {
        "org_id": org_id,
        "tier": licence["tier"],
        "nodes_total": licence["nodes_total"],
        "nodes_used": nodes_used,
        "usage_percentage": percentage(nodes_used, licence["nodes_total"]),
        "status": license_status(expires_at, licence["nodes_total"], nodes_used, now),
        "expires_at": timestamp(expires_at),
    }


@blp.route("/license/status", methods=["GET"])
@blp.arguments(StatusArgs(), location="query")
@blp.response(200, StatusOut)
def license_status_view(args):
    """The organization's licence: tier, nodes licensed and active now, status, expiry."""
    principal = authenticate("user", "key", "client", "admin")
    org_id = _org_of(principal, args.get("org_id"))
    reflect("licenses", "node_status")
    with services().reader.connect() as conn:
        return license_report(conn, principal.tenant_id, org_id)


@blp.route("/admin/licenses", methods=["POST"])
@answers(LicenseWrittenOut, status=201)
@blp.arguments(LicenseIn())
def issue_license(body):
    """Issue an organization's licence (409 when it already has one: replace it with PUT)."""
    require_admin_key()
    position = services().ledger.licensing.issue_license(body["tenant_id"], body["org_id"], _terms(body), "admin")
    return {"tenant_id": body["tenant_id"], "org_id": body["org_id"], "position": appended(position)}, 201


@blp.route("/admin/licenses/<org_id>", methods=["PUT"])
@answers(LicenseWrittenOut)
@blp.arguments(ReplaceIn())
def replace_license(body, org_id):
    """Replace the organization's licence terms."""
    require_admin_key()
    position = services().ledger.licensing.replace_license(body["tenant_id"], org_id, _terms(body), "admin")
    return {"tenant_id": body["tenant_id"], "org_id": org_id, "position": appended(position)}


@blp.route("/admin/licenses/<org_id>", methods=["DELETE"])
@blp.arguments(TenantArgs(), location="query")
@blp.response(204)
def revoke_license(args, org_id):
    """Revoke the organization's licence (?tenant_id=...)."""
    require_admin_key()
    appended(services().ledger.licensing.revoke_license(args["tenant_id"], org_id, "admin"))
