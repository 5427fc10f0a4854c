"""Administration of credits under /api/v1/admin (X-Admin-API-Key): credit rates,
entities (names of apps, users and agents) and running the License Manager sync now."""
from __future__ import annotations

from datetime import timezone

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.answers import answers
from api.answers_admin import CreditRateSetOut, CreditRatesOut, EntityOut, SyncOut
from api.auth import require_admin_key
from api.consistency import appended, consult, reflect
from api.formats import Moment, timestamp
from api.routing import fan_out, platform_wide
from api.services import services
from ledger.identity.rules import ENTITY_TYPES
from ledger.usage.resources import RESOURCE_TYPE_SLUGS
from projections import credits_queries as q
from runtime.licensing import sync_known_licenses

blp = Blueprint("credit_admin", __name__, url_prefix="/api/v1/admin", description="Credits administration (X-Admin-API-Key)")


class CreditRateIn(Schema):
    resource_type = fields.String(required=True, validate=validate.OneOf(sorted(RESOURCE_TYPE_SLUGS)))
    credits_per_unit = fields.Decimal(required=True, validate=validate.Range(min=0), metadata={"description": "credits per unit (per unit-day for gauges)"})
    effective_from = Moment(metadata={"description": "RFC3339; default now"})


class EntityIn(Schema):
    tenant_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    entity_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    entity_type = fields.String(required=True, validate=validate.OneOf(ENTITY_TYPES))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    slug = fields.String(validate=validate.Length(min=1, max=200), allow_none=True)
    owner_id = fields.String(validate=validate.Length(min=1, max=128), allow_none=True)
    display_name = fields.String(validate=validate.Length(min=1, max=200), allow_none=True)


@blp.route("/credit-rates", methods=["PUT"])
@answers(CreditRateSetOut)
@blp.arguments(CreditRateIn())
def put_credit_rate(body):
    """Set the credits per unit of a resource type from effective_from on (history kept)."""
    require_admin_key()
    position, event = services().ledger.pricing.set_credit_rate(
        body["resource_type"], body["credits_per_unit"], "admin", body.get("effective_from")
    )
    appended(position)
    platform_wide("credit_rate", {
        "resource_type": event.resource_type, "credits_per_unit": str(event.credits_per_unit),
        "effective_from": event.effective_from.isoformat(), "actor": "admin",
    })
    return {
        "resource_type": event.resource_type,
        "credits_per_unit": float(event.credits_per_unit),
        "effective_from": timestamp(event.effective_from),
        "position": position,
    }


@blp.route("/credit-rates", methods=["GET"])
@answers(CreditRatesOut)
def get_credit_rates():
    """The credit rate of every resource type in force now (default or override)."""
    require_admin_key()
    reflect("credits")
    with services().reader.connect() as conn:
        book = q.rate_book(conn)
    now = services().settings.clock.now().astimezone(timezone.utc)
    return {
        "rates": [
            {
                "resource_type": r.resource_type,
                "credits_per_unit": float(r.credits_per_unit),
                "effective_from": timestamp(r.effective_from) if r.source == "override" else None,
                "source": r.source,
            }
            for r in book.in_force(now)
        ]
    }


@blp.route("/entities", methods=["POST"])
@answers(EntityOut, status=201)
@blp.arguments(EntityIn())
def post_entity(body):
    """Register an app, user or agent with its display names (EntityRegistered)."""
    require_admin_key()
    position = services().ledger.identity.register_entity(
        body["tenant_id"],
        body["entity_id"],
        body["entity_type"],
        body["name"],
        "admin",
        slug=body.get("slug"),
        owner_id=body.get("owner_id"),
        display_name=body.get("display_name"),
    )
    appended(position)
    return {**body, "position": position}, 201


@blp.route("/licenses/sync", methods=["POST"])
@answers(SyncOut)
def sync_licenses_now():
    """Run the License Manager sync now; one outcome per licence key (LEDGER_CLUSTERS: of
    every cluster, `partial` when one did not answer)."""
    require_admin_key()
    every = fan_out(_sync_here)
    if every is None:
        return {"synced": _sync_here()}
    return {"synced": [o for outcomes in every.by_cluster.values() for o in outcomes], **every.flags()}


def _sync_here() -> list[dict]:
    """The sync of this request's cluster."""
    consult("license_sync")  # licences issued just before, through any API process
    outcomes = sync_known_licenses(services())
    if outcomes:
        appended(max(o.position for o in outcomes))
    return [o.as_dict() for o in outcomes]
