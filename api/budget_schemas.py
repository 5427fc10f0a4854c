"""What budget requests look like: the marshmallow schemas of the CRUD routes and the
msgspec struct of the pre-flight check, decoded here so the handlers get typed values."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

import msgspec
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from ledger.budgets.holds import MAX_TTL_SECONDS, MIN_TTL_SECONDS, STATES
from ledger.budgets.rules import ON_EXCEED, PERIODS, SCOPES, UNITS
from ledger.errors import Invalid

_ID = validate.Length(min=1, max=128)
# the BudgetIn fields that are the budget's terms (the rest is the id)
TERM_FIELDS = (
    "name", "scope", "scope_id", "unit", "limit_usd", "limit_credits", "period", "on_exceed",
    "alert_thresholds", "enabled", "webhook_url", "downgrade_model",
)


class BudgetIn(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scope = fields.String(load_default="organization", validate=validate.OneOf(SCOPES))
    scope_id = fields.String(allow_none=True, validate=_ID)
    limit_usd = fields.Decimal(allow_none=True, metadata={"description": "required when unit is usd"})
    limit_credits = fields.Decimal(allow_none=True, metadata={"description": "required when unit is credits"})
    unit = fields.String(validate=validate.OneOf(UNITS), metadata={"description": "usd (default) or credits"})
    period = fields.String(required=True, validate=validate.OneOf(PERIODS))
    on_exceed = fields.String(load_default="warn", validate=validate.OneOf(ON_EXCEED))
    alert_thresholds = fields.List(fields.Decimal(), metadata={"description": "percentages; default [50, 80, 100]"})
    enabled = fields.Boolean(load_default=True)
    webhook_url = fields.String(allow_none=True, validate=validate.Length(max=2048))
    downgrade_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=256))


class BudgetChanges(BudgetIn):
    """PUT: the fields to change; the others keep their values."""

    class Meta:
        unknown = RAISE

    id = fields.String(validate=validate.Length(min=1, max=64))
    name = fields.String(validate=validate.Length(min=1, max=200))
    scope = fields.String(validate=validate.OneOf(SCOPES))
    period = fields.String(validate=validate.OneOf(PERIODS))
    on_exceed = fields.String(validate=validate.OneOf(ON_EXCEED))
    enabled = fields.Boolean()


class ListArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    scope = fields.String(validate=validate.OneOf(SCOPES))
    scope_id = fields.String(validate=_ID)
    enabled = fields.Boolean()
    tenant_id = fields.String(validate=_ID)
    org_id = fields.String(validate=_ID)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    min_position = fields.Integer(validate=validate.Range(min=0))


class PageArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    min_position = fields.Integer(validate=validate.Range(min=0))


_CheckId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class CheckIn(msgspec.Struct, frozen=True):
    """The pre-flight check's body. Decoded with msgspec: this is a hot path. The scope
    attributes are those of a usage, so `ledger.budgets.rules.usage_scopes` reads both."""

    org_id: _CheckId | None = None
    team_id: _CheckId | None = None
    agent_id: _CheckId | None = None
    workflow_id: _CheckId | None = None
    user_id: _CheckId | None = None
    app_id: _CheckId | None = None
    estimated_cost_usd: Decimal | None = None  # 0 ≤ x ≤ 1,000,000, checked in decode_check
    estimated_credits: Decimal | None = None  # for credit budgets; the same bounds
    reserve: bool = False  # place a hold when allowed (needs an estimate)
    ttl_seconds: Annotated[int, msgspec.Meta(ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)] | None = None  # default 300
    hold_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None  # idempotency


_check_decoder = msgspec.json.Decoder(CheckIn)
_CHECK_FIELD = re.compile(r"`\$\.([A-Za-z_]+)")


def decode_check(body: bytes) -> CheckIn:
    """The check's body, or Invalid (422) naming the field."""
    try:
        check = _check_decoder.decode(body or b"{}")
    except msgspec.ValidationError as error:
        match = _CHECK_FIELD.search(str(error))
        raise Invalid("VALIDATION_FAILED", str(error), field=match.group(1) if match else None) from None
    except msgspec.DecodeError as error:
        raise Invalid("MALFORMED_JSON", f"Request body is not a JSON object: {error}") from None
    for field in ("estimated_cost_usd", "estimated_credits"):
        estimate = getattr(check, field)
        if estimate is not None and not (estimate.is_finite() and 0 <= estimate <= 10**6):
            raise Invalid("VALIDATION_FAILED", f"{field} must be between 0 and 1,000,000", field=field)
    if check.reserve and check.estimated_cost_usd is None and check.estimated_credits is None:
        raise Invalid(
            "VALIDATION_FAILED", "reserve needs an estimate: estimated_cost_usd or estimated_credits",
            field="estimated_cost_usd",
        )
    if not check.reserve and (check.ttl_seconds is not None or check.hold_id is not None):
        field = "ttl_seconds" if check.ttl_seconds is not None else "hold_id"
        raise Invalid("VALIDATION_FAILED", f"{field} is only for a reserve (reserve: true)", field=field)
    return check


class CommitIn(Schema):
    """The actual cost of the call a hold was placed for."""

    class Meta:
        unknown = RAISE

    actual_cost_usd = fields.Decimal(validate=validate.Range(min=0, max=10**6))
    actual_credits = fields.Decimal(validate=validate.Range(min=0, max=10**6))
    event_id = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9._:-]{1,128}$"))


class HeldOut(Schema):
    budget_id = fields.String(required=True)
    held_usd = fields.Float(metadata={"description": "for a budget in usd"})
    held_credits = fields.Float(metadata={"description": "for a budget in credits"})
    actual = fields.Float(metadata={"description": "a committed hold's actual amount in the budget's unit"})


class ReservedOut(Schema):
    """A granted reserve: the check's answer plus the hold."""

    allowed = fields.Boolean(required=True)
    action = fields.String(metadata={"description": "warn or downgrade, when an exceeded budget says so"})
    hold_id = fields.String(required=True)
    expires_at = fields.String(required=True)
    holds = fields.List(fields.Nested(HeldOut), required=True)
    position = fields.Integer()


class HoldOut(Schema):
    hold_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    org_id = fields.String(required=True)
    placed_at = fields.String(required=True)
    expires_at = fields.String(required=True)
    settled_at = fields.String(allow_none=True)
    estimated_cost_usd = fields.Float(allow_none=True)
    estimated_credits = fields.Float(allow_none=True)
    actual_cost_usd = fields.Float(allow_none=True)
    actual_credits = fields.Float(allow_none=True)
    event_id = fields.String(allow_none=True)
    committed_via = fields.String(allow_none=True)
    holds = fields.List(fields.Nested(HeldOut), required=True)
    position = fields.Integer()
