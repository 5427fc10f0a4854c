"""The auditors' surface: the ledger in position order with entry hashes, the signed
checkpoints and the public key that verifies them."""
from __future__ import annotations

import json

from flask import request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from api.auth import Principal, authenticate, require_admin_key
from api.consistency import reflect
from api.services import services
from ledger.chain.export import plain_decimals
from ledger.chain.hashes import stream_hex
from ledger.chain.redaction import redact_payload
from ledger.errors import NotFound, Unauthenticated
from projections.ledger_chain import list_checkpoints, sealed_through, served_public_key
from projections.ledger_snapshot import ledger_page

blp = Blueprint("auditors", __name__, url_prefix="/api/v1/ledger", description="Ledger for auditors (hash chain, checkpoints)")

MAX_LIMIT = 1000
TENANT_SCAN = 5000  # positions a tenant-scoped page looks through at most (next_after moves on)


def require_auditor() -> Principal:
    """Who may read the ledger: the admin key (every event), or a portal API key with the
    `read:ledger` scope (its tenant's events only, with their positions and entry hashes)."""
    if "X-Admin-API-Key" in request.headers:
        return require_admin_key()
    if request.headers.get("Authorization", "")[:7].lower() == "bearer ":
        return authenticate("key", scope="read:ledger")
    raise Unauthenticated("UNAUTHENTICATED", "An admin key (or an API key with scope read:ledger) is required")


class PageArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    after = fields.Integer(load_default=0, validate=validate.Range(min=0), metadata={"description": "position to start after"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT))
    min_position = fields.Integer(validate=validate.Range(min=0), metadata={"description": "wait until sealing passes this position"})


class LedgerEventOut(Schema):
    position = fields.Integer()
    type = fields.String()
    tenant_id = fields.String()
    org_id = fields.String()
    stream_id = fields.String()
    version = fields.Integer()
    payload = fields.Dict(metadata={"description": "the stored event, parsed"})
    entry_hash = fields.String(allow_none=True, metadata={"description": "hex SHA-256; null until sealed"})
    redacted = fields.List(fields.String(), metadata={
        "description": "credential fields of an event written by an earlier release, shown as [redacted]"
    })


class LedgerPageOut(Schema):
    events = fields.List(fields.Nested(LedgerEventOut))
    after = fields.Integer()
    next_after = fields.Integer(metadata={"description": "pass as `after` for the next page"})
    has_more = fields.Boolean()
    sealed_through = fields.Integer()


class CheckpointOut(Schema):
    position = fields.Integer()
    entry_hash = fields.String()
    signed_at = fields.String()
    signature = fields.String(metadata={"description": "hex Ed25519 signature"})
    key_id = fields.String()


class CheckpointsOut(Schema):
    checkpoints = fields.List(fields.Nested(CheckpointOut))
    next_after = fields.Integer()
    has_more = fields.Boolean()


class CheckpointArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    after = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT))


class PublicKeyOut(Schema):
    algorithm = fields.String()
    key_id = fields.String()
    public_key_pem = fields.String()


@blp.route("", methods=["GET"])
@blp.arguments(PageArgs(), location="query")
@blp.response(200, LedgerPageOut)
def read_ledger(args):
    """Events after `after` in position order, each with its entry hash. The admin key reads
    every event; a `read:ledger` API key reads its tenant's events (a page then looks
    through at most a few thousand positions: follow `next_after` while `has_more`)."""
    principal = require_auditor()
    reflect("ledger_chain")
    tenant = principal.tenant_id if principal.kind == "key" else None
    after, limit = args["after"], args["limit"]
    scan = TENANT_SCAN if tenant else limit
    with services().reader.connect() as conn:
        rows = ledger_page(conn, after, scan + 1)
        sealed = sealed_through(conn)
    has_more = len(rows) > scan
    rows = rows[:scan]
    events = []
    next_after = after
    for row in rows:
        event = _event_json(row)
        if tenant is None or event["tenant_id"] == tenant:
            if len(events) == limit:
                has_more = True
                break
            events.append(event)
        next_after = row.position
    return {"events": events, "after": after, "next_after": next_after, "has_more": has_more, "sealed_through": sealed}


def _event_json(row) -> dict:
    state = row.state if isinstance(row.state, (bytes, str)) else bytes(row.state)
    try:
        payload = json.loads(state)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    digest = row.entry_hash
    redacted = redact_payload(row.topic, payload)
    return {
        "position": row.position,
        "type": row.topic,
        "tenant_id": payload.get("tenant_id", ""),
        "org_id": payload.get("org_id", ""),
        "stream_id": stream_hex(row.originator_id),
        "version": row.originator_version,
        "payload": plain_decimals(payload),  # decimals without exponents; the entry hash covers the stored form
        "entry_hash": bytes(digest).hex() if digest is not None else None,
        **({"redacted": redacted} if redacted else {}),
    }


@blp.route("/checkpoints", methods=["GET"])
@blp.arguments(CheckpointArgs(), location="query")
@blp.response(200, CheckpointsOut)
def read_checkpoints(args):
    """Signed checkpoints (position, entry hash, signed_at, Ed25519 signature, key id)."""
    require_auditor()
    with services().reader.connect() as conn:
        found = list_checkpoints(conn, args["after"], args["limit"] + 1)
    has_more = len(found) > args["limit"]
    found = found[: args["limit"]]
    return {
        "checkpoints": [c.as_json() for c in found],
        "next_after": found[-1].position if found else args["after"],
        "has_more": has_more,
    }


@blp.route("/public-key", methods=["GET"])
@blp.response(200, PublicKeyOut)
def public_key():
    """The Ed25519 public key that verifies the checkpoints (no credentials needed).
    Auditors should compare it with the key they obtained out of band."""
    key = served_public_key(services().settings)
    if key is None:
        raise NotFound("SIGNING_NOT_CONFIGURED", "No signing key is configured: checkpoints are not signed")
    return {"algorithm": "Ed25519", "key_id": key.key_id, "public_key_pem": key.pem()}
