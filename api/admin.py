"""Provisioning under /api/v1/admin (X-Admin-API-Key): tenants, organizations, agent clients."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import answers
from api.answers_admin import OrgOut, TenantOut
from api.auth import require_admin_key
from api.consistency import appended
from api.services import services
from ledger.errors import NotFound
from runtime.clusters import DEFAULT_CLUSTER

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Administration (X-Admin-API-Key)")

_id = dict(required=True, validate=validate.Length(min=1, max=64))


class TenantIn(Schema):
    tenant_id = fields.String(**_id)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    cluster = fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "the ledger cluster to place it in (LEDGER_CLUSTERS); default: the one with the fewest tenants"},
    )


class OrgIn(Schema):
    org_id = fields.String(**_id)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ClientIn(Schema):
    tenant_id = fields.String(**_id)
    org_id = fields.String(**_id)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ClientOut(Schema):
    client_id = fields.String()
    client_secret = fields.String(metadata={"description": "shown once"})
    tenant_id = fields.String()
    org_id = fields.String()
    name = fields.String()
    position = fields.Integer()


@blp.route("/tenants", methods=["POST"])
@answers(TenantOut, status=201)
@blp.arguments(TenantIn())
def create_tenant(body):
    """Create a tenant."""
    require_admin_key()
    cluster = g.get("cluster", DEFAULT_CLUSTER)  # api/routing.py placed it (LEDGER_CLUSTERS)
    if body.get("cluster") not in (None, cluster):
        raise NotFound("CLUSTER_NOT_FOUND", f"No cluster named {body['cluster']} holds or can take this tenant")
    position = appended(services().ledger.identity.create_tenant(body["tenant_id"], body["name"], "admin"))
    return {**body, "cluster": cluster, "position": position}, 201


@blp.route("/tenants/<tenant_id>/orgs", methods=["POST"])
@answers(OrgOut, status=201)
@blp.arguments(OrgIn())
def create_org(body, tenant_id):
    """Create an organization of a tenant."""
    require_admin_key()
    position = appended(services().ledger.identity.create_org(tenant_id, body["org_id"], body["name"], "admin"))
    return {"tenant_id": tenant_id, **body, "position": position}, 201


@blp.route("/clients", methods=["POST"])
@blp.arguments(ClientIn())
@blp.response(201, ClientOut)
def create_client(body):
    """Register an agent client; the secret is shown once."""
    require_admin_key()
    client = services().ledger.identity.register_client(body["tenant_id"], body["org_id"], body["name"], "admin")
    appended(client.position)
    return client.__dict__


@blp.route("/clients/<client_id>/rotate", methods=["POST"])
@blp.response(200, ClientOut)
def rotate_client(client_id):
    """Issue a new secret for a client; the old one stops working."""
    require_admin_key()
    client = services().ledger.identity.rotate_client_secret(client_id, "admin")
    appended(client.position)
    return client.__dict__


@blp.route("/clients/<client_id>", methods=["DELETE"])
@blp.response(204)
def disable_client(client_id):
    """Disable a client; its credentials are refused from now on."""
    require_admin_key()
    appended(services().ledger.identity.disable_client(client_id, "admin"))
