"""Ingest rules for usage events: validate and normalize typed input items.

The edge decodes a request into `UsageIn` items (msgspec checks each field's type and
bounds as it decodes, which keeps the hot path cheap); the rules below decide the rest and
turn an item into the `Usage` fact that is stored. Every item is judged before anything
is appended; errors are collected per item with its index, event_id and field.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Sequence

import msgspec

from ledger.errors import Invalid
from ledger.pricing.prices import PriceBook
from ledger.usage.events import Usage
from ledger.usage.resources import RESOURCE_TYPE_SLUGS

if TYPE_CHECKING:  # pragma: no cover
    from ledger.pricing.credits import CreditRateBook

MAX_BATCH_EVENTS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_METADATA_BYTES = 8 * 1024
MAX_METADATA_DEPTH = 8
MAX_FUTURE = timedelta(minutes=5)
MAX_MONEY = Decimal(1_000_000)
MAX_QUANTITY = Decimal(10) ** 15
MAX_COMPUTED_CREDITS = Decimal(10) ** 9  # credits computed at ingest (× 10^9 nanos fits 64 bits)
MONEY_EXPONENT = -9  # money is kept to the nano-dollar
QUANTITY_EXPONENT = -3
OPERATIONS = ("completion", "embedding", "rag_query")

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class UsageIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One usage event as a client sends it. UNSET means 'not sent'."""

    event_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
    event_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    occurred_at: datetime | msgspec.UnsetType = msgspec.UNSET
    operation: str | None | msgspec.UnsetType = msgspec.UNSET
    resource_type: str | None | msgspec.UnsetType = msgspec.UNSET
    quantity: Decimal | None | msgspec.UnsetType = msgspec.UNSET
    instance_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    instance_type: Text | None | msgspec.UnsetType = msgspec.UNSET
    user_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    team_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    agent_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    workflow_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    app_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    knowledge_base_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    http_method: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,16}$")] | None | msgspec.UnsetType = msgspec.UNSET
    http_path: Annotated[str, msgspec.Meta(max_length=2048)] | None | msgspec.UnsetType = msgspec.UNSET
    http_status_code: Annotated[int, msgspec.Meta(ge=100, le=599)] | None | msgspec.UnsetType = msgspec.UNSET
    llm_provider: Text | None | msgspec.UnsetType = msgspec.UNSET
    llm_model: Text | None | msgspec.UnsetType = msgspec.UNSET
    prompt_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    completion_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    total_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    latency_ms: Count | None | msgspec.UnsetType = msgspec.UNSET
    cost_usd: Decimal | None | msgspec.UnsetType = msgspec.UNSET
    credits: Decimal | None | msgspec.UnsetType = msgspec.UNSET
    policies_evaluated: Count | None | msgspec.UnsetType = msgspec.UNSET
    policy_violations: Count | None | msgspec.UnsetType = msgspec.UNSET
    success: bool | None | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | None | msgspec.UnsetType = msgspec.UNSET
    reported_cost_usd: Decimal | None | msgspec.UnsetType = msgspec.UNSET
    cached_prompt_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    cache_creation_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    reasoning_tokens: Count | None | msgspec.UnsetType = msgspec.UNSET
    hold_id: Id | None | msgspec.UnsetType = msgspec.UNSET


SERVER_SET_FIELDS = ("client_id", "tenant_id", "org_id")
AMOUNT_FIELDS = ("cost_usd", "credits", "quantity", "reported_cost_usd")
_canonical = msgspec.json.Encoder(order="sorted")
_FIELD_IN_MESSAGE = re.compile(r"`\$\.([A-Za-z_]+)")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_REQUIRED_FIELD = re.compile(r"required field `([^`]+)`")


@dataclass(frozen=True)
class ItemError:
    """What is wrong with one item of a request; an item the edge could not decode arrives
    at the rules as its ItemError, so that one answer names every bad item."""

    index: int
    event_id: str | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "field": self.field, "message": self.message}


def type_error(index: int, event_id: str | None, message: str) -> ItemError:
    """An item whose fields do not have the declared types or bounds (a msgspec
    ValidationError message), with the field it names."""
    field = None
    for pattern in (_FIELD_IN_MESSAGE, _UNKNOWN_FIELD, _REQUIRED_FIELD):
        match = pattern.search(message)
        if match:
            field = match.group(1)
            break
    if field in SERVER_SET_FIELDS:
        message = f"`{field}` is set from the credentials and may not be sent in the body"
    return ItemError(index, event_id, field, message)


def validate_items(
    items: Sequence[UsageIn | ItemError],
    *,
    client_id: str,
    now: datetime,
    backdating_days: int,
    prices: PriceBook,
    credit_rates: "CreditRateBook | None" = None,
) -> list[Usage]:
    """Every item valid → the normalized Usage facts; otherwise Invalid with all item errors."""
    accepted: list[Usage] = []
    errors: list[ItemError] = []
    oldest = now - timedelta(days=backdating_days)
    for index, item in enumerate(items):
        if isinstance(item, ItemError):
            errors.append(item)
            continue
        usage, item_errors = normalize(index, item, client_id, now, oldest, prices, credit_rates)
        errors.extend(item_errors)
        if usage is not None:
            accepted.append(usage)
    if errors:
        raise Invalid(
            "VALIDATION_FAILED",
            f"{len(errors)} problem(s) in the request; nothing was recorded",
            items=[e.as_dict() for e in errors],
        )
    return accepted


# one rule per field: each returns the problem as a message, or None --------------------
def occurred_at_problem(moment: datetime, now: datetime, oldest: datetime) -> str | None:
    if moment > now + MAX_FUTURE:
        return "is more than 5 minutes in the future"
    if moment < oldest:
        return f"is older than the backdating window ({(now - oldest).days} days)"
    return None


def operation_problem(operation: str | None) -> str | None:
    if operation is not None and operation not in OPERATIONS:
        return f"must be one of {', '.join(OPERATIONS)}"
    return None


def default_resource_type(resource_type: str | None, has_llm_fields: bool) -> str | None:
    """An event that speaks of a model or tokens and names no resource type is `ai`."""
    return "ai" if resource_type is None and has_llm_fields else resource_type


def resource_type_problem(resource_type: str | None) -> str | None:
    if resource_type is not None and resource_type not in RESOURCE_TYPE_SLUGS:
        return f"must be one of {', '.join(sorted(RESOURCE_TYPE_SLUGS))}"
    return None


def quantity_problem(quantity: Decimal | None) -> str | None:
    if quantity is not None and not is_amount(quantity, MAX_QUANTITY, QUANTITY_EXPONENT):
        return "must be a number ≥ 0, below 10^15, with at most 3 decimals"
    return None


def money_problem(value: Decimal | None) -> str | None:
    """cost_usd, credits and reported_cost_usd."""
    if value is not None and not is_amount(value, MAX_MONEY, MONEY_EXPONENT):
        return "must be a number ≥ 0, below 1,000,000, with at most 9 decimals"
    return None


def total_tokens_problem(prompt: int, completion: int, total: int | None) -> str | None:
    if total is not None and total != prompt + completion:
        return f"must equal prompt_tokens + completion_tokens ({prompt + completion})"
    return None


def token_details_problems(prompt: int, completion: int, cached: int, cache_creation: int, reasoning: int) -> dict[str, str]:
    """Cache reads and writes are disjoint parts of prompt_tokens; reasoning is part of
    completion_tokens. A part larger than its total is refused (field → problem)."""
    problems = {}
    if cached > prompt:
        problems["cached_prompt_tokens"] = f"may not exceed prompt_tokens ({prompt})"
    elif cached + cache_creation > prompt:
        problems["cache_creation_tokens"] = f"cached_prompt_tokens + cache_creation_tokens may not exceed prompt_tokens ({prompt})"
    if reasoning > completion:
        problems["reasoning_tokens"] = f"may not exceed completion_tokens ({completion})"
    return problems


def metadata_problem(metadata: dict[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    if len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        return f"must be at most {MAX_METADATA_BYTES} bytes of JSON"
    if json_depth(metadata) > MAX_METADATA_DEPTH:
        return f"must be nested at most {MAX_METADATA_DEPTH} levels deep"
    return None


def success_of(success: bool | None, http_status_code: int | None) -> bool:
    """Not sent: a status code below 400 (or no status code) is a success."""
    if success is not None:
        return success
    return http_status_code < 400 if http_status_code is not None else True


def price_of(
    provider: str | None, model: str | None, prompt: int, completion: int, total: int, at: datetime, prices: PriceBook,
    cached: int = 0, cache_creation: int = 0,
) -> tuple[Decimal, bool]:
    """(cost, unpriced) of an event that states no cost, at the price in force at `at`."""
    if not (provider or model or total):
        return Decimal(0), False
    price = prices.price_for(provider, model, at)
    if price is None:
        return Decimal(0), True
    return price.cost(prompt, completion, cached, cache_creation), False


def normalize(
    index: int,
    item: UsageIn,
    client_id: str,
    now: datetime,
    oldest: datetime,
    prices: PriceBook,
    credit_rates: "CreditRateBook | None" = None,
) -> tuple[Usage | None, list[ItemError]]:
    """The Usage fact an item stands for, or the item's problems."""
    sent = sent_fields(item)
    occurred_at = sent.occurred_at or now
    offset_missing = occurred_at.tzinfo is None
    if offset_missing:
        occurred_at = occurred_at.replace(tzinfo=timezone.utc)
    occurred_at = occurred_at.astimezone(timezone.utc)
    has_llm_fields = not (
        sent.llm_provider is None and sent.llm_model is None
        and sent.prompt_tokens is None and sent.completion_tokens is None and sent.total_tokens is None
    )
    resource_type = default_resource_type(sent.resource_type, has_llm_fields)
    prompt = sent.prompt_tokens or 0
    completion = sent.completion_tokens or 0
    cached = sent.cached_prompt_tokens or 0
    cache_creation = sent.cache_creation_tokens or 0
    reasoning = sent.reasoning_tokens or 0
    problems = item_problems(sent, occurred_at, offset_missing, resource_type, now, oldest)
    errors = [ItemError(index, item.event_id, field, problem) for field, problem in problems]
    if errors:
        return None, errors

    total = prompt + completion if sent.total_tokens is None else sent.total_tokens
    quantity = sent.quantity
    cost = sent.cost_usd
    unpriced = False
    if cost is None:
        cost, unpriced = price_of(
            sent.llm_provider, sent.llm_model, prompt, completion, total, occurred_at, prices, cached, cache_creation
        )
        if cost >= MAX_MONEY:  # a stated cost is below 1,000,000: so is a computed one (what the read models hold)
            field = "completion_tokens" if completion else "prompt_tokens"
            message = f"gives a cost of {cost} USD at the price in force; one event costs below 1,000,000"
            return None, [ItemError(index, item.event_id, field, message)]
    credits = sent.credits
    if credits is None and credit_rates is not None:
        credits = credit_rates.credits_for(resource_type, quantity, cost, unpriced, occurred_at)
        if credits is not None and credits >= MAX_COMPUTED_CREDITS:  # what the read models hold exactly
            field = "quantity" if quantity is not None else "cost_usd"
            message = f"gives {credits} credits; one event carries below 10^9"
            return None, [ItemError(index, item.event_id, field, message)]

    usage = Usage(
        event_id=item.event_id,
        occurred_at=occurred_at,
        event_type=item.event_type,
        client_id=client_id,
        operation=sent.operation,
        resource_type=resource_type,
        quantity=quantity,
        instance_id=sent.instance_id,
        instance_type=sent.instance_type,
        user_id=sent.user_id,
        team_id=sent.team_id,
        agent_id=sent.agent_id,
        workflow_id=sent.workflow_id,
        app_id=sent.app_id,
        knowledge_base_id=sent.knowledge_base_id,
        http_method=sent.http_method.upper() if sent.http_method else None,
        http_path=sent.http_path,
        http_status_code=sent.http_status_code,
        llm_provider=sent.llm_provider,
        llm_model=sent.llm_model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        latency_ms=sent.latency_ms,
        cost_usd=cost,
        unpriced=unpriced,
        credits=credits,
        policies_evaluated=sent.policies_evaluated or 0,
        policy_violations=sent.policy_violations or 0,
        success=success_of(sent.success, sent.http_status_code),
        metadata=sent.metadata,
        body_sha256=fingerprint(item),
        reported_cost_usd=sent.reported_cost_usd,
        cached_prompt_tokens=cached,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=reasoning,
        hold_id=sent.hold_id,
    )
    return usage, []


def item_problems(
    sent: Any, occurred_at: datetime, offset_missing: bool, resource_type: str | None, now: datetime, oldest: datetime
) -> Iterator[tuple[str, str]]:
    """(field, problem) of each rule the item breaks, in the order they are reported. A
    field not sent breaks no rule, so its rule is not asked: most fields of most items."""
    if offset_missing:
        yield "occurred_at", "must be an RFC3339 timestamp with a time zone offset"
    if problem := occurred_at_problem(occurred_at, now, oldest):
        yield "occurred_at", problem
    if sent.operation is not None and (problem := operation_problem(sent.operation)):
        yield "operation", problem
    if resource_type is not None and (problem := resource_type_problem(resource_type)):
        yield "resource_type", problem
    if sent.quantity is not None and (problem := quantity_problem(sent.quantity)):
        yield "quantity", problem
    prompt, completion = sent.prompt_tokens or 0, sent.completion_tokens or 0
    if sent.total_tokens is not None and (problem := total_tokens_problem(prompt, completion, sent.total_tokens)):
        yield "total_tokens", problem
    if sent.cached_prompt_tokens or sent.cache_creation_tokens or sent.reasoning_tokens:
        yield from token_details_problems(
            prompt, completion, sent.cached_prompt_tokens or 0, sent.cache_creation_tokens or 0, sent.reasoning_tokens or 0
        ).items()
    for field, amount in (("cost_usd", sent.cost_usd), ("credits", sent.credits), ("reported_cost_usd", sent.reported_cost_usd)):
        if amount is not None and (problem := money_problem(amount)):
            yield field, problem
    if sent.metadata is not None and (problem := metadata_problem(sent.metadata)):
        yield "metadata", problem


# a UsageIn's fields by name, each None when it was not sent (a Struct: its fields read fast)
_SentFields = msgspec.defstruct("SentFields", [(name, Any) for name in UsageIn.__struct_fields__])


def sent_fields(item: UsageIn) -> Any:
    """The item's fields by name, None for a field not sent (UNSET): the rules do not tell
    unsent from null (the fingerprint does). One pass over the struct instead of an UNSET
    check per field read, which mattered at 1,000 items per request."""
    return _SentFields(*[None if value is msgspec.UNSET else value for value in msgspec.structs.astuple(item)])


def fingerprint(item: UsageIn) -> str:
    """Hash of what the client sent, so a retry of the same body is a duplicate, not a
    conflict. occurred_at counts as the instant it names (in UTC), so the same instant
    written with another offset is the same body."""
    return _fingerprint(item, utc=True)


def sent_fingerprint(item: UsageIn) -> str | None:
    """The hash older releases stored for an item whose occurred_at has a non-UTC offset
    (occurred_at as written), or None when it is the same as `fingerprint`: a retry of
    such an item recorded by an older release is still a duplicate."""
    moment = item.occurred_at
    if not isinstance(moment, datetime) or moment.utcoffset() in (None, timedelta(0)):
        return None
    return _fingerprint(item, utc=False)


def _fingerprint(item: UsageIn, utc: bool) -> str:
    """sha256 of the item's canonical JSON: the fields sent (null kept, unsent left out) in
    sorted order, each amount normalized (1.50 and 1.5 are the same amount), occurred_at in
    UTC when `utc`. The struct is encoded as it is, with only the fields that change
    replaced: the same bytes as encoding its `msgspec.to_builtins` dict (what releases up to
    2026-11 did, tests/unit/test_fingerprint.py), without building that dict per event."""
    changes: dict[str, Any] = {}
    for name in AMOUNT_FIELDS:
        value = getattr(item, name)
        if isinstance(value, Decimal):
            changes[name] = str(value.normalize())
    if item.metadata is not None and item.metadata is not msgspec.UNSET:
        changes["metadata"] = msgspec.to_builtins(item.metadata)  # what it encodes as (a set, a Struct…)
    moment = item.occurred_at
    if utc and isinstance(moment, datetime) and moment.tzinfo is not None and moment.tzinfo is not timezone.utc:
        changes["occurred_at"] = moment.astimezone(timezone.utc)
    sent = msgspec.structs.replace(item, **changes) if changes else item
    return hashlib.sha256(_canonical.encode(sent)).hexdigest()


def is_amount(value: Decimal, below: Decimal, exponent: int) -> bool:
    """≥ 0, below `below`, with no more decimals than 10**exponent allows."""
    if not value.is_finite() or value < 0 or value >= below:
        return False
    return value == value.quantize(Decimal(10) ** exponent) if value.as_tuple().exponent < exponent else True


def json_depth(value: Any, level: int = 0) -> int:
    """Nesting depth of JSON containers: {} is 1, {"a": {}} is 2."""
    if isinstance(value, dict):
        return max((json_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((json_depth(v, level + 1) for v in value), default=level + 1)
    return level
