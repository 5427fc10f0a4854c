"""Portal API keys: list, create (the key is shown once), get, revoke.

Keys belong to an organization; a key of another organization or tenant is not found
(404). Nullable timestamps (expires_at, last_used_at, revoked_at) are omitted when unset.
"""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import Principal, authenticate
from api.consistency import appended, reflect
from api.formats import timestamp
from api.services import services
from ledger.errors import NotFound
from ledger.keys.rules import ALL_PERMISSIONS, DEFAULT_SCOPES, MAX_KEY_EXPIRY_DAYS, SCOPES
from projections import keys_queries as q

blp = Blueprint("keys", __name__, url_prefix="/api/v1", description="Portal API keys")


class KeyIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scopes = fields.List(
        fields.String(validate=validate.Length(max=64)),
        validate=validate.Length(max=len(SCOPES)),
        metadata={"description": f"any of {', '.join(SCOPES)}; default {', '.join(DEFAULT_SCOPES)}"},
    )
    expires_in_days = fields.Integer(
        allow_none=True, metadata={"description": f"1-{MAX_KEY_EXPIRY_DAYS}; no expiry when absent"}
    )


class KeyOut(Schema):
    id = fields.String()
    name = fields.String()
    key_prefix = fields.String()
    scopes = fields.List(fields.String())
    created_at = fields.String()
    expires_at = fields.String()
    last_used_at = fields.String()
    revoked_at = fields.String()


class NewKeyOut(KeyOut):
    key = fields.String(metadata={"description": "the full key, shown only in this response"})
    position = fields.Integer()


class KeyListOut(Schema):
    keys = fields.List(fields.Nested(KeyOut))
    total = fields.Integer()


def _manager() -> Principal:
    """Keys are managed by portal users (session) or with the admin key for a tenant's org."""
    return authenticate("user", "admin")


def key_json(row: dict) -> dict:
    body = {
        "id": row["key_id"],
        "name": row["name"],
        "key_prefix": row["key_prefix"],
        "scopes": list(row["scopes"]),
        "created_at": timestamp(row["created_at"]),
    }
    for name in ("expires_at", "last_used_at", "revoked_at"):
        if row.get(name) is not None:
            body[name] = timestamp(row[name])
    return body


@blp.route("/keys", methods=["GET"])
@blp.response(200, KeyListOut)
def list_keys():
    """The organization's keys, newest first (revoked ones included, with revoked_at)."""
    principal = _manager()
    reflect("api_keys")
    with services().reader.connect() as conn:
        rows = q.org_keys(conn, principal.tenant_id, principal.org_id)
    return {"keys": [key_json(r) for r in rows], "total": len(rows)}


@blp.route("/keys", methods=["POST"])
@blp.arguments(KeyIn())
@blp.response(201, NewKeyOut)
def create_key(body):
    """Create a key; the full key is in this response only (SHA-256 is what is stored, sealed).
    `read:audit`, `read:ledger` and `usage:platform_wide` need the matching permission (or
    admin) of the creator, else 403 SCOPE_NOT_ALLOWED; the key loses them when its creator does."""
    principal = _manager()
    created = services().ledger.keys.create_key(
        principal.as_actor(), body["name"], body.get("scopes"), body.get("expires_in_days"),
        may_grant=ALL_PERMISSIONS if principal.kind == "admin" else principal.permissions,
    )
    k = created.key
    out = key_json({
        "key_id": k.key_id, "name": k.name, "key_prefix": k.key_prefix, "scopes": k.scopes,
        "created_at": k.created_at, "expires_at": k.expires_at,
    })
    return {**out, "key": created.secret, "position": appended(created.position)}


@blp.route("/keys/<key_id>", methods=["GET"])
@blp.response(200, KeyOut)
def get_key(key_id):
    """One key of the organization."""
    principal = _manager()
    reflect("api_keys")
    with services().reader.connect() as conn:
        row = q.org_key(conn, principal.tenant_id, principal.org_id, key_id)
    if row is None:
        raise NotFound("KEY_NOT_FOUND", f"API key {key_id} not found")
    return key_json(row)


@blp.route("/keys/<key_id>", methods=["DELETE"])
@blp.response(204)
def revoke_key(key_id):
    """Revoke a key: it answers 401 from now on. Revoking again answers 404; revoking a key
    someone else created needs the admin permission (403)."""
    principal = _manager()
    appended(services().ledger.keys.revoke_key(principal.as_actor(), key_id, may_revoke_others=principal.can("admin")))
