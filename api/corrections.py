"""Usage corrections: void or amend a recorded usage event.

Each is a new event in the usage event's own stream (the original stays in the ledger);
the read models subtract or replace. Admin key with X-Tenant-ID / X-Org-ID, or a portal
user with the `admin` permission (any organization of the user's tenant).
"""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import AmendOut, VoidOut, answers
from api.auth import authenticate, require_permission
from api.consistency import appended
from api.services import services

blp = Blueprint("corrections", __name__, url_prefix="/api/v1/events", description="Usage corrections")


class VoidIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class AmendIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    replaced = fields.Dict(
        keys=fields.String(), required=True, data_key="fields", metadata={"description": "usage fields to replace"}
    )


def _corrector():
    principal = authenticate("admin", "user")
    require_permission(principal, "admin")
    return principal


@blp.route("/<event_id>/void", methods=["POST"])
@answers(VoidOut)
@blp.arguments(VoidIn())
def void(body, event_id):
    """Void a usage event: it no longer counts anywhere (voiding twice → 409)."""
    principal = _corrector()
    position = services().ledger.corrections.void_usage(principal.as_actor(), event_id, body["reason"])
    return {"event_id": event_id, "voided": True, "position": appended(position)}


@blp.route("/<event_id>/amend", methods=["POST"])
@answers(AmendOut)
@blp.arguments(AmendIn())
def amend(body, event_id):
    """Replace some fields of a usage event (re-validated; totals and cost re-derived)."""
    principal = _corrector()
    usage, position = services().ledger.corrections.amend_usage(principal.as_actor(), event_id, body["replaced"], body["reason"])
    return {
        "event_id": event_id,
        "amended": sorted(body["replaced"]),
        "total_tokens": usage.total_tokens,
        "cost_usd": float(usage.cost_usd),
        "position": appended(position),
    }
