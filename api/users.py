"""Portal users under /api/v1/admin (X-Admin-API-Key): create, change permissions,
disable and enable, reset a password."""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import require_admin_key
from api.consistency import appended, reflect
from api.services import services
from projections import users_queries as q
from ledger.actor import Actor
from ledger.identity.rules import PERMISSIONS

blp = Blueprint("admin_users", __name__, url_prefix="/api/v1/admin", description="Portal users (X-Admin-API-Key)")

_id = dict(required=True, validate=validate.Length(min=1, max=64))
_ADMIN = Actor("", "", "admin")


class UserIn(Schema):
    tenant_id = fields.String(**_id)
    org_id = fields.String(**_id)
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=1024))
    permissions = fields.List(fields.String(), load_default=list, metadata={"description": ", ".join(PERMISSIONS)})


class PermissionsIn(Schema):
    permissions = fields.List(fields.String(), required=True, metadata={"description": ", ".join(PERMISSIONS)})


class PasswordIn(Schema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=1024))


class TenantArgs(Schema):
    tenant_id = fields.String(**_id)
    min_position = fields.Integer(validate=validate.Range(min=0))


class UserRowOut(Schema):
    email = fields.String()
    org_id = fields.String()
    permissions = fields.List(fields.String())
    created_at = fields.String()
    last_login_at = fields.String(allow_none=True)


class UserListOut(Schema):
    users = fields.List(fields.Nested(UserRowOut))
    total = fields.Integer()


class UserOut(Schema):
    email = fields.String()
    tenant_id = fields.String()
    org_id = fields.String()
    permissions = fields.List(fields.String())
    position = fields.Integer()


class UserStateOut(UserOut):
    disabled = fields.Boolean()


def _state(user, position: int) -> dict:
    return {**user.public(), "disabled": user.disabled, "position": appended(position)}


@blp.route("/users", methods=["POST"])
@blp.arguments(UserIn())
@blp.response(201, UserOut)
def create_user(body):
    """Create a portal user (e-mails are unique; a duplicate answers 409)."""
    require_admin_key()
    user, position = services().ledger.identity.create_user(
        body["tenant_id"], body["org_id"], body["email"], body["password"], body["permissions"], "admin"
    )
    return {**user.public(), "position": appended(position)}


@blp.route("/users/<email>/permissions", methods=["PUT"])
@blp.arguments(PermissionsIn())
@blp.response(200, UserOut)
def change_permissions(body, email):
    """Replace a user's permissions; effective on the user's next request."""
    require_admin_key()
    user, position = services().ledger.identity.change_permissions(email, body["permissions"], Actor("", "", "admin"))
    return {**user.public(), "position": appended(position)}


@blp.route("/users/<email>/disable", methods=["POST"])
@blp.response(200, UserStateOut)
@blp.alt_response(409, schema="ErrorOut", description="USER_ALREADY_DISABLED")
def disable_user(email):
    """Disable a user: every session ends at once and every key the user created answers
    401 KEY_CREATOR_DISABLED until the user is enabled again."""
    require_admin_key()
    return _state(*services().ledger.identity.disable_user(email, _ADMIN))


@blp.route("/users/<email>/enable", methods=["POST"])
@blp.response(200, UserStateOut)
@blp.alt_response(409, schema="ErrorOut", description="USER_NOT_DISABLED")
def enable_user(email):
    """Enable a disabled user again (old sessions stay ended; the user logs in again)."""
    require_admin_key()
    return _state(*services().ledger.identity.enable_user(email, _ADMIN))


@blp.route("/users/<email>/password", methods=["PUT"])
@blp.arguments(PasswordIn())
@blp.response(200, UserStateOut)
def reset_password(body, email):
    """Set a new password for a user (an admin's reset); every session of the user ends."""
    require_admin_key()
    return _state(*services().ledger.identity.set_password(email, body["password"], _ADMIN))


@blp.route("/users", methods=["GET"])
@blp.arguments(TenantArgs(), location="query")
@blp.response(200, UserListOut)
def list_users(args):
    """The tenant's portal users (no password material)."""
    from api.formats import timestamp

    require_admin_key()
    reflect("users")
    with services().reader.connect() as conn:
        rows = q.tenant_users(conn, args["tenant_id"])
    users = [
        {"email": r["email"], "org_id": r["org_id"], "permissions": r["permissions"],
         "created_at": timestamp(r["created_at"]), "last_login_at": timestamp(r["last_login_at"])}
        for r in rows
    ]
    return {"users": users, "total": len(users)}
