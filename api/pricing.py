"""Model prices: the table in force for clients, effective-dated
overrides for admins. Overrides are ModelPriceSet events; the history stays."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from flask_smorest import Blueprint
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from api.answers import answers
from api.answers_admin import PriceOverridesOut, PriceSetOut, PriceTableOut
from api.auth import authenticate, require_admin_key
from api.consistency import appended, reflect
from api.formats import Moment, timestamp
from api.routing import platform_wide
from api.services import services
from ledger.pricing.prices import DEFAULT_PRICES_SOURCE_DATE, ModelPrice, PriceBook
from projections import pricing_queries as q

blp = Blueprint("pricing", __name__, url_prefix="/api/v1", description="Model prices")
admin_blp = Blueprint("admin_pricing", __name__, url_prefix="/api/v1/admin", description="Model price overrides (X-Admin-API-Key)")


class PricingArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    at = Moment(metadata={"description": "RFC3339; default now: the prices in force at that moment"})
    min_position = fields.Integer(validate=validate.Range(min=0))


class PriceIn(Schema):
    class Meta:
        unknown = RAISE

    provider = fields.String(required=True, validate=validate.Length(min=1, max=128))
    model = fields.String(required=True, validate=validate.Length(min=1, max=256))
    input_per_1k = fields.Decimal(required=True, validate=validate.Range(min=0), metadata={"description": "USD per 1,000 input tokens"})
    output_per_1k = fields.Decimal(required=True, validate=validate.Range(min=0), metadata={"description": "USD per 1,000 output tokens"})
    effective_from = Moment(metadata={"description": "RFC3339; default now"})
    cached_input_per_1m = fields.Decimal(
        allow_none=True, validate=validate.Range(min=0), metadata={"description": "USD per 1,000,000 cache-read tokens; default the input price"}
    )
    cache_write_input_per_1m = fields.Decimal(
        allow_none=True, validate=validate.Range(min=0), metadata={"description": "USD per 1,000,000 cache-write tokens; default the input price"}
    )


def _rate(value: Decimal) -> float:
    """Prices per 1K tokens can be tiny: up to 9 decimals, not the 6 of money amounts."""
    return float(value.quantize(Decimal("1e-9")).normalize())


def price_json(price: ModelPrice) -> dict:
    return {
        "provider": price.provider,
        "model": price.model,
        "input_per_1k": _rate(price.input_per_1k),
        "output_per_1k": _rate(price.output_per_1k),
        "effective_from": timestamp(price.effective_from),
        "source": price.source,
        "cached_input_per_1m": None if price.cached_input_per_1m is None else _rate(price.cached_input_per_1m),
        "cache_write_input_per_1m": None if price.cache_write_input_per_1m is None else _rate(price.cache_write_input_per_1m),
    }


@blp.route("/pricing", methods=["GET"])
@answers(PriceTableOut)
@blp.arguments(PricingArgs(), location="query")
def get_pricing(args):
    """The price table in force (default list prices plus overrides), USD per 1K tokens."""
    authenticate("client", "admin")
    position = reflect("pricing")
    at = args.get("at") or services().settings.clock.now()
    with services().reader.connect() as conn:
        book = PriceBook(q.overrides(conn))
    return {
        "currency": "USD",
        "per_tokens": 1000,
        "as_of": timestamp(at),
        "default_source_date": DEFAULT_PRICES_SOURCE_DATE,
        "prices": [price_json(p) for p in book.in_force(at.astimezone(timezone.utc))],
        "position": position,
    }


@admin_blp.route("/pricing", methods=["PUT"])
@answers(PriceSetOut)
@admin_blp.arguments(PriceIn())
def set_price(body):
    """Set a model's price from effective_from on (a ModelPriceSet event; earlier prices stay)."""
    require_admin_key()
    effective_from: datetime = body.get("effective_from") or services().settings.clock.now()
    position = appended(
        services().ledger.cost_controls.set_model_price(
            body["provider"], body["model"], body["input_per_1k"], body["output_per_1k"], effective_from, "admin",
            body.get("cached_input_per_1m"), body.get("cache_write_input_per_1m"),
        )
    )
    platform_wide("model_price", {
        **{k: body.get(k) for k in ("provider", "model")},
        **{k: None if body.get(k) is None else str(body[k]) for k in (
            "input_per_1k", "output_per_1k", "cached_input_per_1m", "cache_write_input_per_1m")},
        "effective_from": effective_from.isoformat(), "actor": "admin",
    })
    price = ModelPrice(
        body["provider"].strip().lower(), body["model"].strip().lower(), body["input_per_1k"], body["output_per_1k"],
        effective_from.astimezone(timezone.utc), "override", body.get("cached_input_per_1m"), body.get("cache_write_input_per_1m"),
    )
    return {**price_json(price), "position": position}


@admin_blp.route("/pricing", methods=["GET"])
@answers(PriceOverridesOut)
@admin_blp.arguments(PricingArgs(), location="query")
def price_history(args):
    """Every override ever set, oldest first per model."""
    require_admin_key()
    position = reflect("pricing")
    with services().reader.connect() as conn:
        rows = q.history(conn)
    return {
        "overrides": [
            {**price_json(r["price"]), "set_at": timestamp(r["set_at"]), "set_by": r["actor"], "position": r["position"]}
            for r in rows
        ],
        "position": position,
    }
