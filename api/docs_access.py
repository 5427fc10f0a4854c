"""Protected-documentation access, managed in a Cloudflare Access group.

Session only: neither API keys nor the admin key are accepted (401). The Access group is
deployment-wide, so managing it needs the `admin` permission. Cloudflare is the source of
truth; the ledger records every grant and revoke (and every failed attempt). An e-mail that
another tenant granted is that tenant's: it is not listed, and granting or revoking it
answers like a no-op without touching the group (the attempt is recorded as denied). Who
owns an e-mail is read from the ledger at the moment of the command
(ledger/docs_access/commands.py); an e-mail that was in the group before any tenant granted
it cannot be revoked by a tenant.
"""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import Principal, authenticate, require_permission
from api.consistency import appended, consult
from api.routing import elsewhere
from api.services import services
from ledger.docs_access.cloudflare import CloudflareAccess
from projections import docs_access_queries as q

blp = Blueprint("docs_access", __name__, url_prefix="/api/v1/docs/access", description="Docs access (Cloudflare Access)")


class GrantIn(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    reason = fields.String(validate=validate.Length(max=1000), metadata={"description": "optional, for the audit log"})


class RevokeIn(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))


class UsersOut(Schema):
    users = fields.List(fields.String())
    total = fields.Integer()


class ResultOut(Schema):
    success = fields.Boolean()
    message = fields.String()
    email = fields.String()


def _admin_session():
    principal = authenticate("user")
    require_permission(principal, "admin")
    return principal


def _other_tenants_readers(principal: Principal) -> set[str]:
    consult("docs_access")  # grants just made by any tenant, through any API process
    with services().reader.connect() as conn:
        found = q.docs_readers_of_other_tenants(conn, principal.tenant_id)
    for readers in elsewhere(lambda other: _readers(other, principal.tenant_id)):  # LEDGER_CLUSTERS: the group is shared
        found |= readers
    return found


def _readers(other, tenant_id: str) -> set[str]:
    with other.engine.connect() as conn:
        return q.docs_readers_of_other_tenants(conn, tenant_id)


def _earlier_owner(email: str) -> str | None:
    """Who granted an e-mail before grants had a stream per e-mail (the read model), or,
    with LEDGER_CLUSTERS, on another cluster (its ledger: the Access group is shared)."""
    consult("docs_access")
    with services().reader.connect() as conn:
        owner = q.docs_reader_owner(conn, email)
    if owner is None:
        owner = next(filter(None, elsewhere(lambda other: other.ledger.docs_access.ownership(email).owner)), None)
    return owner


@blp.route("", methods=["GET"])
@blp.response(200, UsersOut)
def list_access():
    """E-mails in the Access group."""
    principal = _admin_session()
    foreign = _other_tenants_readers(principal)
    users = [u for u in services().ledger.docs_access.users(CloudflareAccess.from_settings(services().settings)) if u not in foreign]
    return {"users": users, "total": len(users)}


@blp.route("/grant", methods=["POST"])
@blp.arguments(GrantIn())
@blp.response(200, ResultOut)
def grant(body):
    """Add an e-mail to the Access group (already present: a successful no-op)."""
    principal = _admin_session()
    cloudflare = CloudflareAccess.from_settings(services().settings)
    result = services().ledger.docs_access.grant(
        principal.as_actor(), cloudflare, body["email"], body.get("reason", ""), earlier_owner=_earlier_owner
    )
    appended(result.position)
    return _granted_message(result.email)


def _granted_message(email: str) -> dict:
    return {
        "success": True,
        "message": (
            f"Access granted to {email}. They will receive a one-time PIN via email "
            "when visiting the protected documentation."
        ),
        "email": email,
    }


@blp.route("/revoke", methods=["POST"])
@blp.arguments(RevokeIn())
@blp.response(200, ResultOut)
def revoke(body):
    """Remove an e-mail from the Access group (absent: a successful no-op)."""
    principal = _admin_session()
    cloudflare = CloudflareAccess.from_settings(services().settings)
    result = services().ledger.docs_access.revoke(principal.as_actor(), cloudflare, body["email"], earlier_owner=_earlier_owner)
    appended(result.position)
    return {"success": True, "message": f"Access revoked for {result.email}", "email": result.email}
