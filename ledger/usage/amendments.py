"""Amendments of usage events: the replaced fields are judged by the ingest rules again.

An amendment recomputes what followed from the replaced inputs (totals, success, cost,
`unpriced`, credits) exactly as ingest would at the event's occurred_at.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ledger.pricing.prices import PriceBook
from ledger.usage.events import Usage
from ledger.usage.rules import ItemError, UsageIn, type_error, validate_items

if TYPE_CHECKING:  # pragma: no cover
    from ledger.pricing.credits import CreditRateBook

# what an event's cost follows from
PRICING_INPUTS = frozenset(
    {"llm_provider", "llm_model", "prompt_tokens", "completion_tokens", "total_tokens", "cached_prompt_tokens", "cache_creation_tokens"}
)
# what an event's computed credits follow from (the cost, for `ai` events)
CREDIT_INPUTS = PRICING_INPUTS | {"resource_type", "quantity", "cost_usd"}


def amended(
    usage: Usage,
    fields: dict[str, Any],
    *,
    backdating_days: int,
    prices: PriceBook,
    credit_rates: "CreditRateBook | None" = None,
) -> Usage:
    """The usage with some fields replaced, judged by the ingest rules again, exactly as
    ingest would judge it at the event's occurred_at: totals, success, cost, `unpriced`
    and credits that followed from replaced inputs are derived anew, and an unpriced
    event stays unpriced until its model has a price. The event keeps its occurred_at,
    so the backdating window is measured from it."""
    base = msgspec.to_builtins(usage)  # what was stated (fields at their default are left out)
    for derived in ("client_id", "unpriced", "body_sha256"):
        base.pop(derived, None)
    if {"prompt_tokens", "completion_tokens"} & set(fields) and "total_tokens" not in fields:
        base.pop("total_tokens", None)
    if (usage.unpriced or PRICING_INPUTS & set(fields)) and "cost_usd" not in fields:
        base.pop("cost_usd", None)  # priced again (an unpriced event's $0 was never stated)
    if (usage.unpriced or CREDIT_INPUTS & set(fields)) and "credits" not in fields:
        base.pop("credits", None)
    if "http_status_code" in fields and "success" not in fields:
        base.pop("success", None)
    base.update(fields)
    try:
        item: UsageIn | ItemError = msgspec.convert(
            {k: v for k, v in base.items() if v is not None}, UsageIn
        )
    except msgspec.ValidationError as error:
        item = type_error(0, usage.event_id, str(error))
    (current,) = validate_items(
        [item],
        client_id=usage.client_id,
        now=usage.occurred_at,
        backdating_days=backdating_days,
        prices=prices,
        credit_rates=credit_rates,
    )
    return msgspec.structs.replace(current, body_sha256=usage.body_sha256)
