"""CloudEvents on POST /api/v1/events: decode CloudEvents 1.0 (JSON format, structured,
batched or binary HTTP mode) into typed usage items (`UsageIn`).

The envelope is checked here; `data` carries our usage fields, decoded straight into the
typed item with the same declared types as our JSON and judged by the same rules (422
with the item's index). What the envelope sets:
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
from functools import lru_cache
from datetime import datetime
from typing import Any, Mapping

import msgspec

from ledger.errors import Invalid, Malformed, TooLarge
from ledger.usage.rules import MAX_BATCH_EVENTS, ItemError, UsageIn, type_error

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPEC_VERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
_SET_BY_ENVELOPE = ("event_id", "event_type")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_JSON_MEDIA = re.compile(r"^(application|text)/([a-z0-9.+-]*\+)?json(;.*)?$", re.IGNORECASE)


class Envelope(msgspec.Struct):
    """A CloudEvent's context attributes as sent (extensions are ignored), its data undecoded."""

    specversion: Any = None
    id: Any = None
    source: Any = None
    type: Any = None
    time: Any = None
    datacontenttype: Any = None
    data: msgspec.Raw = msgspec.Raw()
    data_base64: Any = msgspec.UNSET


class UsageData(UsageIn):
    """A usage item as `data` holds it: without the fields the envelope sets (decoded only
    to refuse them), which are filled in from the envelope once the data is decoded."""

    event_id: Any = msgspec.UNSET
    event_type: Any = msgspec.UNSET


class TypedEnvelope(Envelope):
    """An envelope with its data decoded in the same pass (the common case of a batch)."""

    data: UsageData | None = None  # type: ignore[assignment]


_typed_batch_decoder = msgspec.json.Decoder(list[TypedEnvelope])
_batch_decoder = msgspec.json.Decoder(list[Envelope])
_raw_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_envelope_decoder = msgspec.json.Decoder(Envelope)
_data_decoder = msgspec.json.Decoder(UsageData)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def is_cloudevent(mimetype: str, headers: Mapping[str, str]) -> bool:
    """Structured and batched mode by content type; binary mode by the ce-specversion header."""
    return mimetype in (STRUCTURED, BATCH) or "ce-specversion" in headers


def usage_items(mimetype: str, headers: Mapping[str, str], body: bytes) -> list[UsageIn | ItemError]:
    """The usage items of a request, in order; Malformed/Invalid when an envelope or its
    data is not usage (the usage fields themselves are judged by the ingest rules)."""
    if mimetype == BATCH:
        items = _valid_batch(body)
        if items is not None:
            return items
        envelopes = _batch(body)
        if not envelopes:
            raise Invalid("VALIDATION_FAILED", "A batch needs at least one event")
        if len(envelopes) > MAX_BATCH_EVENTS:
            raise TooLarge("BATCH_TOO_LARGE", f"A batch holds at most {MAX_BATCH_EVENTS} events, got {len(envelopes)}")
    elif mimetype == STRUCTURED:
        envelopes = [_envelope(msgspec.Raw(body))]
    else:
        envelopes = [_from_binary(mimetype, headers, body)]
    envelope_errors = [e for index, event in enumerate(envelopes) for e in _envelope_errors(index, event)]
    if envelope_errors:
        raise Malformed(
            "INVALID_CLOUDEVENT",
            f"{len(envelope_errors)} problem(s) in the CloudEvents envelope; nothing was recorded",
            items=envelope_errors,
        )
    datas = [_usage_data(index, event) for index, event in enumerate(envelopes)]
    data_errors = [
        e
        for index, (event, data) in enumerate(zip(envelopes, datas))
        for e in (_data_errors(index, event) or _set_by_envelope(index, event, data))
    ]
    if data_errors:
        raise Invalid("VALIDATION_FAILED", f"{len(data_errors)} problem(s) in the request; nothing was recorded", items=data_errors)
    return [
        data if isinstance(data, ItemError) else _usage_item(index, event, data)
        for index, (event, data) in enumerate(zip(envelopes, datas))
    ]


def _valid_batch(body: bytes) -> list[UsageIn | ItemError] | None:
    """A batch of valid CloudEvents with usage data, decoded in one pass; None when anything
    is off, and the event-by-event path below then names what."""
    try:
        events = _typed_batch_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if not events or len(events) > MAX_BATCH_EVENTS:
        return None
    items: list[UsageIn | ItemError] = []
    for index, event in enumerate(events):
        data = event.data
        if data is None or _envelope_errors(index, event) or _data_errors(index, event) or _set_by_envelope(index, event, data):
            return None
        items.append(_usage_item(index, event, data))
    return items


def event_id(source: str, id_: str) -> str:
    """Our event id for the CloudEvents key (source, id)."""
    digest = hashlib.blake2b(f"{source}\x1f{id_}".encode(), digest_size=16).hexdigest()
    return f"ce-{digest}"


@lru_cache(maxsize=1024)  # a sender uses a handful of types
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


def _batch(body: bytes) -> list[Envelope | None]:
    """The envelopes of a batch in one pass; one at a time when some item is not an object."""
    try:
        return _batch_decoder.decode(body)
    except msgspec.ValidationError:
        return [_envelope(raw) for raw in _decode(_raw_batch_decoder, body, "a JSON array of CloudEvents")]
    except (msgspec.DecodeError, RecursionError) as error:
        raise Malformed("MALFORMED_JSON", f"Request body is not a JSON array of CloudEvents: {error}") from error


def _envelope(raw: msgspec.Raw) -> Envelope | None:
    """The envelope of one event; None when it is not a JSON object."""
    try:
        return _envelope_decoder.decode(raw)
    except msgspec.ValidationError:
        return None
    except (msgspec.DecodeError, RecursionError) as error:
        raise Malformed("MALFORMED_JSON", f"Request body is not a JSON CloudEvent: {error}") from error


def _from_binary(mimetype: str, headers: Mapping[str, str], body: bytes) -> Envelope:
    """Binary mode: attributes in ce-* headers, data in the body."""
    attributes = {key[3:].lower(): value for key, value in headers.items() if key.lower().startswith("ce-")}
    _decode(_object_decoder, body, "a JSON object (the event's data)")
    return Envelope(
        **{name: attributes.get(name) for name in ("specversion", "id", "source", "type", "time")},
        datacontenttype=mimetype or None,
        data=msgspec.Raw(body),
    )


def _error(index: int, event: Envelope | None, field: str | None, message: str) -> dict[str, Any]:
    id_ = None if event is None else event.id
    return {"index": index, "event_id": id_ if isinstance(id_, str) else None, "field": field, "message": message}


def _envelope_errors(index: int, event: Envelope | None) -> list[dict[str, Any]]:
    if event is None:
        return [_error(index, event, None, "must be a CloudEvent (a JSON object)")]
    if event.specversion == SPEC_VERSION and all(isinstance(v, str) and v for v in (event.id, event.source, event.type)):
        return []
    errors = [
        _error(index, event, name, "is required by CloudEvents 1.0 and must be a non-empty string")
        for name in REQUIRED
        if not isinstance(getattr(event, name), str) or not getattr(event, name)
    ]
    if isinstance(event.specversion, str) and event.specversion and event.specversion != SPEC_VERSION:
        errors.append(_error(index, event, "specversion", f"must be {SPEC_VERSION}"))
    return errors


def _data_errors(index: int, event: Envelope) -> list[dict[str, Any]]:
    media = event.datacontenttype
    if media is not None and not (isinstance(media, str) and _is_json_media(media)):
        return [_error(index, event, "datacontenttype", "usage data must be JSON")]
    if event.data_base64 is not msgspec.UNSET:
        return [_error(index, event, "data_base64", "usage data must be JSON in `data`, not base64")]
    if isinstance(event.data, msgspec.Raw) and memoryview(event.data)[:1] != b"{":
        return [_error(index, event, "data", "must be a JSON object holding the usage fields")]
    if not _EVENT_TYPE.match(event_type(event.type)):
        return [_error(index, event, "type", "must be an event type (llm_request) or a reverse-DNS name ending in one")]
    return []


@lru_cache(maxsize=64)
def _is_json_media(media: str) -> bool:
    return _JSON_MEDIA.match(media) is not None


def _set_by_envelope(index: int, event: Envelope, data: UsageData | ItemError) -> list[dict[str, Any]]:
    """Fields of the data that the envelope sets."""
    if isinstance(data, ItemError):
        return []
    errors = [
        _error(index, event, f"data.{name}", f"`{name}` is set from the CloudEvent envelope")
        for name in _SET_BY_ENVELOPE
        if getattr(data, name) is not msgspec.UNSET
    ]
    if event.time is not None and data.occurred_at is not msgspec.UNSET:
        errors.append(_error(index, event, "data.occurred_at", "`occurred_at` is set from the CloudEvent's `time`"))
    return errors


def _usage_data(index: int, event: Envelope) -> UsageData | ItemError:
    """The event's data as typed usage fields, or its ItemError (named by our event id)."""
    try:
        return _data_decoder.decode(event.data)
    except msgspec.ValidationError as error:
        return type_error(index, event_id(event.source, event.id), str(error))
    except (msgspec.DecodeError, RecursionError) as error:
        return ItemError(index, event_id(event.source, event.id), "data", f"Malformed or too deeply nested JSON: {error}")


def _usage_item(index: int, event: Envelope, data: UsageData) -> UsageIn | ItemError:
    """The decoded data completed from the envelope: a whole usage item."""
    data.event_id, data.event_type = event_id(event.source, event.id), event_type(event.type)
    if event.time is not None:
        try:
            data.occurred_at = msgspec.convert(event.time, datetime)
        except msgspec.ValidationError as error:
            return type_error(index, data.event_id, f"{error} - at `$.occurred_at`")
    return data
