"""What the handlers that answer plain dicts answer, declared once as msgspec types.

Their JSON Schemas (msgspec.json.schema_components) are the OpenAPI document's components;
`answers(Type)` on a handler documents its success answer with that component. Handlers
with a marshmallow response schema (`@blp.response`) are documented by flask-smorest.
Money and quantities are JSON numbers; times are RFC 3339 strings with Z.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from flask_smorest import Blueprint

from ledger.usage.events import Usage
from ledger.usage.rules import MAX_BATCH_EVENTS, UsageIn
from projections.usage import FIELD_COLUMNS

ANSWER_TYPES: list[type] = []
# (component, list property) → the types its items may take: msgspec cannot express a
# union of two object types, so the document names them with anyOf
ITEMS_ONE_OF: dict[tuple[str, str], tuple[str, ...]] = {("UsageOut", "data"): ("UsageEventOut", "UsageAggregateOut")}
CSV_TEXT = {"type": "string", "description": "CSV with a header row"}

Text = str | None
Number = float | None
Count = int | None


def answers(answer: type, status: int = 200, csv: bool = False, description: str = "OK"):
    """Document a handler's success answer: JSON of `answer`, and also CSV when `csv`."""
    content: dict = {"application/json": {"schema": _reference(answer)}}
    if csv:
        content["text/csv"] = {"schema": CSV_TEXT}
    return Blueprint.doc(responses={str(status): {"description": description, "content": content}})


def _reference(answer) -> dict:
    """A $ref to the component of a Struct type, or an array of them for list[Type]."""
    if getattr(answer, "__origin__", None) is list:
        return {"type": "array", "items": _reference(answer.__args__[0])}
    if answer not in ANSWER_TYPES:
        ANSWER_TYPES.append(answer)
    return {"$ref": f"#/components/schemas/{answer.__name__}"}


def component(kind: type) -> dict:
    """A $ref to the component of a msgspec type (a request body, say), registered here."""
    return _reference(kind)


def answers_text(media: str, status: int = 200, description: str = "OK"):
    """Document a handler whose success answer is text of one media type (CSV, Prometheus)."""
    schema = CSV_TEXT if media == "text/csv" else {"type": "string"}
    return Blueprint.doc(responses={str(status): {"description": description, "content": {media: {"schema": schema}}}})


class Window(msgspec.Struct):
    """The exact window a usage answer covers: start inclusive, end exclusive, RFC 3339 UTC
    with 6 fractional digits."""

    start: str
    end: str


class Positioned(msgspec.Struct):
    position: int  # the ledger position of the write (pass as min_position to read it back)


# operations ---------------------------------------------------------------------------
class DeploymentConfigOut(msgspec.Struct):
    mode: Literal["saas", "invpc"]
    tenant_isolation: bool
    show_node_usage: bool
    show_platform_metrics: bool
    show_deployments: bool


class HealthOut(msgspec.Struct):
    status: str


class ProjectionStateOut(msgspec.Struct):
    position: int
    lag: int


class ParkedErrorOut(msgspec.Struct):
    projection: str
    position: int
    event_type: str
    error: str


class ReadinessOut(msgspec.Struct):
    """Ready or not; positions, lag and parked errors only for the admin key."""

    status: Literal["ready", "degraded"]
    ledger_position: int = 0
    projections: dict[str, ProjectionStateOut] = msgspec.field(default_factory=dict)
    parked_errors: list[ParkedErrorOut] = msgspec.field(default_factory=list)


class AdminHealthOut(msgspec.Struct):
    status: Literal["ok", "degraded"]
    ledger_position: int
    projections: dict[str, ProjectionStateOut]
    parked_errors: list[ParkedErrorOut]


# ingest and corrections ---------------------------------------------------------------
class UsageBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """A batch: all of its events are appended, or none."""

    events: Annotated[list[UsageIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]


def events_body() -> dict:
    """The body of POST /api/v1/events: one usage event, or a batch (an object whose one key
    is `events`, so exactly one branch matches). CloudEvents are described in words: client
    generators (openapi-python-client 0.29) emit code that does not run for a body with
    several media types."""
    return {
        "required": True,
        "description": "One usage event, or {\"events\": [...]} with up to 1,000, as application/json. The same "
        "events are accepted as CloudEvents 1.0: application/cloudevents+json (one event), "
        "application/cloudevents-batch+json (a JSON array) or binary mode (ce-* headers). A CloudEvent's "
        "`data` holds the usage fields but event_id and event_type: the id derives from (source, id), the "
        "type from `type`, and `time` is occurred_at.",
        "content": {"application/json": {"schema": {"oneOf": [component(UsageIn), component(UsageBatchIn)]}}},
    }


class IngestOut(Positioned):
    accepted: int  # events appended by this request
    duplicates: int  # events already in the ledger with the same body


class HeartbeatOut(Positioned):
    accepted: bool


class VoidOut(Positioned):
    event_id: str
    voided: bool


class AmendOut(Positioned):
    event_id: str
    amended: list[str]
    total_tokens: Count
    cost_usd: Number


# usage reads ----------------------------------------------------------------------------
def _json_type(kind):
    """The JSON type of a Usage field's type as usage rows answer it."""
    kinds = [k for k in getattr(kind, "__args__", (kind,)) if k is not type(None)]
    shown = {Decimal: float, datetime: str}
    return shown.get(kinds[0], kinds[0]) if len(kinds) == 1 else Any


_ALWAYS_SET = ("event_id", "event_type", "occurred_at")
UsageEventOut = msgspec.defstruct(
    "UsageEventOut",
    [(name, str) for name in _ALWAYS_SET] + [("created_at", str), ("position", int)] + [
        (f.name, _json_type(f.type) | None)
        for f in msgspec.structs.fields(Usage)
        if f.name in FIELD_COLUMNS and f.name not in (*_ALWAYS_SET, "metadata")
    ] + [("cost_nanos", int | None), ("credits_nanos", int | None)],  # exact, beside the rounded figures
    module=__name__,
)
"""A usage event as the usage reads answer it: every kept Usage field but metadata (money
and quantities as numbers, times as RFC 3339), when it was recorded and its position."""


class UsageAggregateOut(msgspec.Struct):
    event_type: str
    time_bucket: str
    event_count: int
    prompt_tokens: Count = None
    completion_tokens: Count = None
    total_tokens: Count = None
    estimated_cost_usd: Number = None
    unpriced_events: Count = None
    average_latency_ms: Number = None
    policies_evaluated: Count = None
    policy_violations: Count = None
    success_count: Count = None
    error_count: Count = None
    estimated_cost_nanos: Count = None  # exact, beside the rounded estimated_cost_usd
    cached_prompt_tokens: Count = None
    cache_creation_tokens: Count = None
    reasoning_tokens: Count = None
    reported_cost_usd: Number = None


ANSWER_TYPES += [UsageEventOut, UsageAggregateOut]  # the items of UsageOut.data


class UsageOut(Positioned):
    """granularity raw: `data` holds events and `next_cursor` pages on; hourly or daily:
    `data` holds one aggregate per event type and time bucket."""

    granularity: Literal["raw", "hourly", "daily"]
    start_date: str
    end_date: str
    range: Window
    data: list[dict[str, Any]]  # documented as UsageEventOut or UsageAggregateOut (ITEMS_ONE_OF)
    next_cursor: Text = None


class SummaryOut(Positioned):
    start_date: str
    end_date: str
    range: Window
    total_api_calls: int
    total_llm_requests: int
    total_events: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost_usd: float
    unpriced_events: int
    average_latency_ms: Number
    success_rate: Number
    policy_violations: int
    event_types: dict[str, int]
    estimated_cost_nanos: int = 0  # the exact cost in nano-dollars beside the rounded one
    cached_prompt_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


class Measures(msgspec.Struct):
    events: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    credits: float
    unpriced_events: int
    cost_nanos: int  # exact, beside the rounded cost_usd
    credits_nanos: int  # exact, beside the rounded credits


class BreakdownItemOut(Measures):
    key: Text
    cost_share: float
    provider: Text = None


class BreakdownOut(Positioned):
    group_by: str
    start: str
    end: str
    range: Window
    breakdown: list[BreakdownItemOut]
    totals: Measures


class RecordsOut(Positioned):
    records: list[UsageEventOut]
    limit: int
    offset: int
    has_more: bool
    start: str
    end: str
    range: Window


class AxonUsageData(msgspec.Struct):
    period_days: int
    since: str
    range: Window
    totals: dict[str, float]
    by_model: dict[str, dict[str, Any]]
    by_operation: dict[str, dict[str, Any]]


class AxonUsageOut(msgspec.Struct):
    data: AxonUsageData


class AxonPagination(msgspec.Struct):
    page: int
    per_page: int
    total: int
    has_more: bool


class AxonAuditOut(msgspec.Struct):
    data: list[dict[str, Any]]
    pagination: AxonPagination


class OtlpStatusOut(msgspec.Struct):
    """An OTLP/HTTP error as JSON: a google.rpc.Status, with our error object beside it."""

    message: str
    error: dict[str, Any]
    code: int = 0
    details: list[dict[str, Any]] = []
