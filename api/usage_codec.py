"""The usage wire format: ingest bodies decoded into typed `UsageIn` items, and usage
rows encoded as JSON and CSV values. The protocol adapters (OTLP, CloudEvents, LiteLLM)
map their messages to usage fields and turn them into `UsageIn` items here too.

A body is one event object or {"events": [...]}. This is the hot path, so it decodes with
msgspec rather than marshmallow (about 40× cheaper per event): each item is decoded into
`UsageIn`, whose declared types and bounds msgspec checks as it goes. An item that does
not decode becomes its `ItemError`, so the rules can name every bad item in one answer.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import msgspec

from api.formats import event_time, exact_decimal, money
from ledger.errors import Invalid, TooLarge
from ledger.usage.rules import MAX_BATCH_EVENTS, MAX_BODY_BYTES, ItemError, UsageIn, type_error
from projections.usage import FIELD_COLUMNS, MILLI, from_nanos


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


_item_decoder = msgspec.json.Decoder(UsageIn)
_batch_decoder = msgspec.json.Decoder(_Batch)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def decode_usage_body(body: bytes) -> list[UsageIn | ItemError]:
    """The items of an ingest body, in order; 413 or 422 for a body that is not one."""
    return [decode_item(index, raw) for index, raw in enumerate(split_batch(truncate_sub_microseconds(body)))]


# an occurred_at with more than 6 fractional digits: the digits past the microsecond
_SUB_MICROSECONDS = re.compile(rb'("occurred_at"\s*:\s*"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})\d+')


def truncate_sub_microseconds(body: bytes) -> bytes:
    """Times are kept to the microsecond and truncated, never rounded: rounding would carry
    `23:59:59.9999999` of a month's last day into the next month (and its budget)."""
    if len(body) <= MAX_BODY_BYTES and _SUB_MICROSECONDS.search(body):
        return _SUB_MICROSECONDS.sub(rb"\1", body)
    return body


def split_batch(body: bytes) -> list[msgspec.Raw]:
    """A body is one event object or {"events": [...]}; returns the raw items."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        top = _object_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as error:
        raise Invalid("MALFORMED_JSON", f"Request body is not a JSON object: {error}") from error
    if "events" not in top:
        return [msgspec.Raw(body)]
    try:
        items = _batch_decoder.decode(body).events
    except (msgspec.ValidationError, RecursionError) as error:
        raise Invalid("VALIDATION_FAILED", f"Invalid batch: {error}") from error
    if not items:
        raise Invalid("VALIDATION_FAILED", "A batch needs at least one event")
    if len(items) > MAX_BATCH_EVENTS:
        raise TooLarge("BATCH_TOO_LARGE", f"A batch holds at most {MAX_BATCH_EVENTS} events, got {len(items)}")
    return items


def decode_item(index: int, raw: msgspec.Raw | bytes) -> UsageIn | ItemError:
    try:
        return _item_decoder.decode(raw)
    except msgspec.ValidationError as error:
        return type_error(index, _event_id_of(raw), str(error))
    except (msgspec.DecodeError, RecursionError) as error:
        return ItemError(index, None, None, f"Malformed or too deeply nested JSON: {error}")


def convert_item(index: int, fields: dict[str, Any]) -> UsageIn | ItemError:
    """The usage fields an adapter mapped from its protocol as a `UsageIn` item, checked
    against the same declared types and bounds as a decoded JSON item."""
    try:
        return msgspec.convert(fields, UsageIn)
    except msgspec.ValidationError as error:
        event_id = fields.get("event_id")
        return type_error(index, event_id if isinstance(event_id, str) else None, str(error))


def _event_id_of(raw: msgspec.Raw | bytes) -> str | None:
    """The item's event_id when it has a readable one, to name the item in errors."""
    try:
        candidate = _object_decoder.decode(raw).get("event_id")
        event_id = None if candidate is None else msgspec.json.decode(candidate)
    except (msgspec.DecodeError, RecursionError):
        return None
    return event_id if isinstance(event_id, str) else None


# reading --------------------------------------------------------------------------------
def _quantity(milli: int) -> float:
    return float(milli / MILLI)


def _money(nanos: int) -> float:
    return money(from_nanos(nanos))


_JSON_VALUES: dict[str, Callable[[Any], Any]] = {  # stored form → JSON, for fields not shown as stored
    "occurred_at": event_time,
    "quantity": _quantity,
    "cost_usd": _money,
    "credits": _money,
    "reported_cost_usd": _money,
    "unpriced": bool,
    "success": bool,
}
_LEADING = ("event_id", "event_type", "occurred_at")  # the order clients know, then Usage's order
_JSON_FIELDS = (*_LEADING, *(f for f in FIELD_COLUMNS if f not in _LEADING and f != "metadata"))
_JSON_SHAPE = tuple((f, FIELD_COLUMNS[f], _JSON_VALUES.get(f)) for f in _JSON_FIELDS)


def usage_event_json(row: dict) -> dict:
    """A usage_events row as JSON: every kept Usage field but metadata, when it was
    recorded (created_at) and its ledger position."""
    out: dict[str, Any] = {}
    for field, column, to_json in _JSON_SHAPE:
        value = row[column]
        out[field] = value if to_json is None or value is None else to_json(value)
        if field == "occurred_at":
            out["created_at"] = event_time(row["recorded_at"])
    out["position"] = row["position"]
    out["cost_nanos"] = row["cost_nanos"]  # exact, beside the 6-decimal cost_usd
    out["credits_nanos"] = row["credits_nanos"]
    return out


# the raw JSON fields, in order (what the raw CSV holds after the seed's columns)
RAW_JSON_FIELDS = (*_JSON_FIELDS[:3], "created_at", *_JSON_FIELDS[3:], "position", "cost_nanos", "credits_nanos")
_EXACT_CSV = {"cost_usd": "cost_nanos", "credits": "credits_nanos"}


def usage_csv_row(row: dict, header: tuple[str, ...]) -> list:
    """A usage_events row as the CSV values of `header` (names as in usage_event_json);
    money and credits as exact decimal text (full precision, no exponent)."""
    shown = usage_event_json(row)
    return [exact_decimal(shown[_EXACT_CSV[name]]) if name in _EXACT_CSV else shown[name] for name in header]
