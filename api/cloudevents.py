"""CloudEvents on POST /api/v1/events: decode CloudEvents 1.0 (JSON format, structured,
batched or binary HTTP mode) into typed usage items (`UsageIn`).

The envelope is checked here; `data` carries our usage fields and is validated by the
same rules as our JSON (422 with the item's index). What the envelope sets:
- `event_id` is a hash of (`source`, `id`), the CloudEvents uniqueness key, so a
  redelivered event is a duplicate;
- `time` is `occurred_at`;
- `type` is our `event_type` when it is one (`llm_request`), otherwise the last segment of
  a reverse-DNS type, lower-cased with `-` as `_` (`com.example.usage.llm-request` →
  `llm_request`).
An envelope that is not a CloudEvent (no `specversion`, `id`, `source` or `type`, an
unsupported `specversion`) answers 400 INVALID_CLOUDEVENT, naming the index: the HTTP
binding treats it as a malformed request, not as an event whose content is invalid.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

import msgspec

from api.usage_codec import convert_item
from ledger.errors import Invalid, Malformed, TooLarge
from ledger.usage.rules import MAX_BATCH_EVENTS, ItemError, UsageIn

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPEC_VERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
_SET_BY_ENVELOPE = ("event_id", "event_type")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_JSON_MEDIA = re.compile(r"^(application|text)/([a-z0-9.+-]*\+)?json(;.*)?$", re.IGNORECASE)
_decode_object = msgspec.json.Decoder(dict[str, Any])
_decode_array = msgspec.json.Decoder(list[Any])


def is_cloudevent(mimetype: str, headers: Mapping[str, str]) -> bool:
    """Structured and batched mode by content type; binary mode by the ce-specversion header."""
    return mimetype in (STRUCTURED, BATCH) or "ce-specversion" in headers


def usage_items(mimetype: str, headers: Mapping[str, str], body: bytes) -> list[UsageIn | ItemError]:
    """The usage items of a request, in order; Malformed/Invalid when an envelope or its
    data is not usage (the usage fields themselves are judged by the ingest rules)."""
    if mimetype == BATCH:
        events = _decode(_decode_array, body, "a JSON array of CloudEvents")
        if not events:
            raise Invalid("VALIDATION_FAILED", "A batch needs at least one event")
        if len(events) > MAX_BATCH_EVENTS:
            raise TooLarge("BATCH_TOO_LARGE", f"A batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}")
    elif mimetype == STRUCTURED:
        events = [_decode(_decode_object, body, "a JSON CloudEvent")]
    else:
        events = [_from_binary(mimetype, headers, body)]
    envelope_errors = [e for index, event in enumerate(events) for e in _envelope_errors(index, event)]
    if envelope_errors:
        raise Malformed(
            "INVALID_CLOUDEVENT",
            f"{len(envelope_errors)} problem(s) in the CloudEvents envelope; nothing was recorded",
            items=envelope_errors,
        )
    data_errors = [e for index, event in enumerate(events) for e in _data_errors(index, event)]
    if data_errors:
        raise Invalid("VALIDATION_FAILED", f"{len(data_errors)} problem(s) in the request; nothing was recorded", items=data_errors)
    return [convert_item(index, _usage_fields(event)) for index, event in enumerate(events)]


def event_id(source: str, id_: str) -> str:
    """Our event id for the CloudEvents key (source, id)."""
    digest = hashlib.blake2b(f"{source}\x1f{id_}".encode(), digest_size=16).hexdigest()
    return f"ce-{digest}"


def event_type(ce_type: str) -> str:
    """Our event type for a CloudEvents `type`."""
    if _EVENT_TYPE.match(ce_type):
        return ce_type
    return ce_type.rsplit(".", 1)[-1].lower().replace("-", "_")


def _decode(decoder: msgspec.json.Decoder, body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as error:
        raise Malformed("MALFORMED_JSON", f"Request body is not {what}: {error}") from error


def _from_binary(mimetype: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Binary mode: attributes in ce-* headers, data in the body."""
    event: dict[str, Any] = {
        key[3:].lower(): value for key, value in headers.items() if key.lower().startswith("ce-")
    }
    if mimetype:
        event["datacontenttype"] = mimetype
    event["data"] = _decode(_decode_object, body, "a JSON object (the event's data)")
    return event


def _error(index: int, event: Any, field: str, message: str) -> dict[str, Any]:
    id_ = event.get("id") if isinstance(event, dict) else None
    return {"index": index, "event_id": id_ if isinstance(id_, str) else None, "field": field, "message": message}


def _envelope_errors(index: int, event: Any) -> list[dict[str, Any]]:
    if not isinstance(event, dict):
        return [_error(index, event, None, "must be a CloudEvent (a JSON object)")]
    errors = [
        _error(index, event, name, "is required by CloudEvents 1.0 and must be a non-empty string")
        for name in REQUIRED
        if not isinstance(event.get(name), str) or not event[name]
    ]
    if isinstance(event.get("specversion"), str) and event["specversion"] and event["specversion"] != SPEC_VERSION:
        errors.append(_error(index, event, "specversion", f"must be {SPEC_VERSION}"))
    return errors


def _data_errors(index: int, event: dict[str, Any]) -> list[dict[str, Any]]:
    media = event.get("datacontenttype")
    if media is not None and not (isinstance(media, str) and _JSON_MEDIA.match(media)):
        return [_error(index, event, "datacontenttype", "usage data must be JSON")]
    if "data_base64" in event:
        return [_error(index, event, "data_base64", "usage data must be JSON in `data`, not base64")]
    data = event.get("data")
    if not isinstance(data, dict):
        return [_error(index, event, "data", "must be a JSON object holding the usage fields")]
    errors = [
        _error(index, event, f"data.{name}", f"`{name}` is set from the CloudEvent envelope")
        for name in _SET_BY_ENVELOPE
        if name in data
    ]
    if "time" in event and "occurred_at" in data:
        errors.append(_error(index, event, "data.occurred_at", "`occurred_at` is set from the CloudEvent's `time`"))
    if not _EVENT_TYPE.match(event_type(event["type"])):
        errors.append(_error(index, event, "type", "must be an event type (llm_request) or a reverse-DNS name ending in one"))
    return errors


def _usage_fields(event: dict[str, Any]) -> dict[str, Any]:
    item = {"event_id": event_id(event["source"], event["id"]), "event_type": event_type(event["type"]), **event["data"]}
    if "time" in event:
        item["occurred_at"] = event["time"]
    return item
