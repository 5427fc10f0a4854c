"""Portal users under /api/v1/admin (X-Admin-API-Key): create, change permissions."""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import portal, require_admin_key
from api.consistency import appended
from ledger.application import Actor
from ledger.portal import PERMISSIONS

blp = Blueprint("admin_users", __name__, url_prefix="/api/v1/admin", description="Portal users (X-Admin-API-Key)")

_id = dict(required=True, validate=validate.Length(min=1, max=64))


class UserIn(Schema):
    tenant_id = fields.String(**_id)
    org_id = fields.String(**_id)
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=1024))
    permissions = fields.List(fields.String(), load_default=list, metadata={"description": ", ".join(PERMISSIONS)})


class PermissionsIn(Schema):
    permissions = fields.List(fields.String(), required=True, metadata={"description": ", ".join(PERMISSIONS)})


class UserOut(Schema):
    email = fields.String()
    tenant_id = fields.String()
    org_id = fields.String()
    permissions = fields.List(fields.String())
    position = fields.Integer()


@blp.route("/users", methods=["POST"])
@blp.arguments(UserIn)
@blp.response(201, UserOut)
def create_user(body):
    """Create a portal user (e-mails are unique; a duplicate answers 409)."""
    require_admin_key()
    user, position = portal().create_user(
        body["tenant_id"], body["org_id"], body["email"], body["password"], body["permissions"], "admin"
    )
    return {**user.public(), "position": appended(position)}


@blp.route("/users/<email>/permissions", methods=["PUT"])
@blp.arguments(PermissionsIn)
@blp.response(200, UserOut)
def change_permissions(body, email):
    """Replace a user's permissions; effective on the user's next request."""
    require_admin_key()
    user, position = portal().change_permissions(email, body["permissions"], Actor("", "", "admin"))
    return {**user.public(), "position": appended(position)}
