"""LiteLLM at POST /api/v1/integrations/litellm: its StandardLoggingPayload (what the
`generic_api` callback or a CustomLogger sends) becomes usage events.

The body is a JSON array of payloads, one payload, or NDJSON (one payload a line). The
mapping: `id` → event_id, `endTime` → occurred_at, `model` → llm_model,
`custom_llm_provider` → llm_provider, `prompt_tokens`/`completion_tokens`, `status` →
success, `end_user` (else `metadata.user_api_key_user_id`) → user_id,
`metadata.user_api_key_team_id` → team_id; cached, cache-write and reasoning tokens from
the usage object (`metadata.usage_object`) when present. LiteLLM's `response_cost` is kept as
`reported_cost_usd` (to the nano-dollar) beside the cost we price ourselves, which is the
one budgets use. The same validation and all-or-nothing rules as our JSON apply: each payload becomes a
typed usage item (`UsageIn`) judged by the ingest rules.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import msgspec
from flask import request
from flask_smorest import Blueprint

from api.answers import IngestOut, component
from api.auth import authenticate
from api.consistency import appended
from api.services import services
from api.usage_codec import convert_item
from ledger.errors import Invalid, Malformed, TooLarge
from ledger.usage.rules import MAX_BATCH_EVENTS, MAX_BODY_BYTES

blp = Blueprint("litellm", __name__, url_prefix="/api/v1/integrations", description="LiteLLM logging ingest")

_NANO = Decimal("0.000000001")
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_OPERATIONS = {
    "completion": "completion", "acompletion": "completion", "text_completion": "completion",
    "atext_completion": "completion", "responses": "completion", "aresponses": "completion",
    "embedding": "embedding", "aembedding": "embedding",
}
_decode_any = msgspec.json.Decoder()


@blp.route("/litellm", methods=["POST"])
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "maxItems": MAX_BATCH_EVENTS, "items": {"type": "object"}}},
        },
        "description": "A JSON array of StandardLoggingPayload objects (also accepted: one object, or NDJSON)",
    },
    responses={"202": {"description": "Accepted", "content": {"application/json": {"schema": component(IngestOut)}}}},
)
def post_litellm():
    """Append LiteLLM StandardLoggingPayloads as usage events, all or nothing (client or API key with write:logs)."""
    principal = authenticate("client", "key", scope="write:logs")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes")
    payloads = decode_payloads(request.get_data(cache=False))
    items = [convert_item(index, usage_fields(p)) for index, p in enumerate(payloads)]
    result = services().ledger.usage.record(principal.as_actor(), items)
    appended(result.position)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "position": result.position}, 202


def decode_payloads(body: bytes) -> list[Any]:
    """A JSON array, one JSON object, or NDJSON; Malformed when it is none of these."""
    try:
        document = _decode_any.decode(body)
        payloads = document if isinstance(document, list) else [document]
    except msgspec.DecodeError:
        try:
            payloads = [_decode_any.decode(line) for line in body.splitlines() if line.strip()]
        except msgspec.DecodeError as error:
            raise Malformed("MALFORMED_JSON", f"Request body is neither JSON nor NDJSON: {error}") from None
    except RecursionError:
        raise Malformed("MALFORMED_JSON", "The JSON body is nested too deeply") from None
    if not payloads:
        raise Invalid("VALIDATION_FAILED", "A batch needs at least one payload")
    if len(payloads) > MAX_BATCH_EVENTS:
        raise TooLarge("BATCH_TOO_LARGE", f"A batch holds at most {MAX_BATCH_EVENTS} payloads, got {len(payloads)}")
    return payloads


def usage_fields(payload: Any) -> dict[str, Any]:
    """Our usage fields for one StandardLoggingPayload (unknown shapes are left to validation)."""
    if not isinstance(payload, dict):
        return {"event_id": "", "event_type": "llm_request"}  # answers 422 at this index
    metadata = payload.get("metadata") or {}
    item: dict[str, Any] = {
        "event_id": event_id(payload.get("id")),
        "event_type": "llm_request",
        "prompt_tokens": payload.get("prompt_tokens"),
        "completion_tokens": payload.get("completion_tokens"),
        "success": payload.get("status", "success") == "success",
        "llm_provider": payload.get("custom_llm_provider"),
        "llm_model": _model(payload.get("model"), payload.get("custom_llm_provider")),
        "operation": _OPERATIONS.get(payload.get("call_type")),
        "user_id": payload.get("end_user") or metadata.get("user_api_key_user_id"),
        "team_id": metadata.get("user_api_key_team_id"),
        "reported_cost_usd": _money(payload.get("response_cost")),
        **token_details(metadata.get("usage_object") or payload.get("usage_object")),
    }
    end, start = payload.get("endTime"), payload.get("startTime")
    if isinstance(end, (int, float)):
        item["occurred_at"] = datetime.fromtimestamp(end, timezone.utc)
        if isinstance(start, (int, float)) and end >= start:
            item["latency_ms"] = int((end - start) * 1000)
    elif end is not None:
        item["occurred_at"] = end  # validation answers for what it is
    return {k: v for k, v in item.items() if v is not None and v != ""}


def token_details(usage: Any) -> dict[str, Any]:
    """The token details of an OpenAI-style usage object (Anthropic's cache fields too)."""
    if not isinstance(usage, dict):
        return {}
    prompt_details, completion_details = (
        details if isinstance(details, dict) else {}
        for details in (usage.get("prompt_tokens_details"), usage.get("completion_tokens_details"))
    )
    return {
        "cached_prompt_tokens": usage.get("cache_read_input_tokens") or prompt_details.get("cached_tokens"),
        "cache_creation_tokens": usage.get("cache_creation_input_tokens") or prompt_details.get("cache_creation_tokens"),
        "reasoning_tokens": completion_details.get("reasoning_tokens"),
    }


def event_id(id_: Any) -> str:
    """LiteLLM's id when it is a valid event id, else a digest of it."""
    if not isinstance(id_, str) or not id_:
        return ""
    if _EVENT_ID.match(id_):
        return id_
    return "litellm-" + hashlib.blake2b(id_.encode(), digest_size=16).hexdigest()


def _model(model: Any, provider: Any) -> Any:
    if isinstance(model, str) and isinstance(provider, str) and model.startswith(f"{provider}/"):
        return model[len(provider) + 1 :]
    return model


def _money(value: Any) -> Any:
    """LiteLLM reports cost as a float: keep it to the nano-dollar as a Decimal."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        return Decimal(str(value)).quantize(_NANO, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        return value
