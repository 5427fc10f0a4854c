"""OTLP/HTTP traces at POST /v1/traces: spans that follow the OpenTelemetry GenAI semantic
conventions become usage events, so an instrumented agent needs only an endpoint and a
header (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS).

Bodies are `application/x-protobuf` or `application/json` (OTLP's JSON mapping: hex trace
and span ids), gzip or not, decoded with the opentelemetry-proto messages. Answers follow
the OTLP specification: 200 with `partial_success` when some spans were rejected, 400 for
a body that cannot be decoded, 413 over the size limit, 429/503 with Retry-After; error
bodies are a google.rpc.Status in the request's encoding (the JSON one also carries our
{"error": {"code", "message"}}).
"""
from __future__ import annotations

import base64
import json
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status as SpanStatus
from werkzeug.exceptions import RequestEntityTooLarge

from api.answers import OtlpStatusOut, component
from api.auth import Principal, authenticate
from api.consistency import appended
from api.errors import RETRY_AFTER_SECONDS, STATUS_BY_KIND
from api.services import services
from api.usage_codec import convert_item
from ledger.errors import Conflict, DomainError, Invalid, Malformed, TooLarge
from ledger.usage.rules import MAX_BATCH_EVENTS, MAX_BODY_BYTES, ItemError, UsageIn

blp = Blueprint("otlp", __name__, description="OpenTelemetry (OTLP/HTTP) trace ingest")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_DECODED_BYTES = 4 * MAX_BODY_BYTES  # what a gzip body may inflate to
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 422: 3, 409: 6, 429: 8, 503: 14}
_OPERATIONS = {
    "chat": "completion", "text_completion": "completion", "generate_content": "completion",
    "invoke_agent": "completion", "embeddings": "embedding",
}
_DIMENSIONS = ("team_id", "user_id", "workflow_id", "app_id")
_TOKENS = {  # our field: attribute names, preferred first (the legacy names last)
    "prompt_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "completion_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
}
_TOKEN_DETAILS = {
    "cached_prompt_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}
_FIRST_OF = (  # our field: the attributes that give it, preferred first
    *_TOKENS.items(),
    ("llm_model", ("gen_ai.response.model", "gen_ai.request.model")),
    ("llm_provider", ("gen_ai.provider.name", "gen_ai.system")),
)
_ATTRIBUTE_OF = (  # our field: the attribute that gives it (the dimensions also from the resource)
    ("agent_id", "gen_ai.agent.id"),
    *_TOKEN_DETAILS.items(),
    *((name, f"usage_ledger.{name}") for name in _DIMENSIONS),
)
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


@blp.route("/v1/traces", methods=["POST"])
@blp.doc(
    requestBody={
        "required": True,
        "description": "ExportTraceServiceRequest as OTLP/JSON, or as protobuf (application/x-protobuf); gzip allowed",
        "content": {JSON: {"schema": {"type": "object"}}},
    },
    responses={
        "200": {
            "description": "ExportTraceServiceResponse",
            "content": {PROTOBUF: {"schema": {"type": "string", "format": "binary"}}, JSON: {"schema": {"type": "object"}}},
        },
        "default": {
            "description": "google.rpc.Status in the request's encoding (the JSON one also carries our error object)",
            "content": {
                PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                JSON: {"schema": component(OtlpStatusOut)},
            },
        },
    },
)
def export_traces():
    """OTLP/HTTP trace export: GenAI spans with token usage become usage events (agent client Basic auth or an API key with write:logs)."""
    as_json = request.mimetype == JSON
    try:
        principal = authenticate("client", "key", scope="write:logs")
        spans = spans_of(decode_request(_body(), request.mimetype, request.headers.get("Content-Encoding", "")))
        usages = [fields for fields in (usage_fields(span, resource) for span, resource in spans) if fields is not None]
        position, rejected, messages = 0, 0, []
        for start in range(0, len(usages), MAX_BATCH_EVENTS):
            chunk = [convert_item(index, fields) for index, fields in enumerate(usages[start : start + MAX_BATCH_EVENTS])]
            chunk_position, chunk_rejected, chunk_messages = _record(principal, chunk)
            position = max(position, chunk_position)
            rejected += chunk_rejected
            messages.extend(chunk_messages)
        if position:
            appended(position)
    except RequestEntityTooLarge:
        return _error(413, "PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes", as_json)
    except DomainError as error:
        return _error(STATUS_BY_KIND.get(error.kind, 400), error.code, error.message, as_json)
    answer = ExportTraceServiceResponse()
    if rejected:
        answer.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message="; ".join(messages)[:2000])
        )
    return _encode(answer, as_json, 200)


def decode_request(body: bytes, mimetype: str, encoding: str) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest from an OTLP/HTTP body; Malformed when it cannot be decoded."""
    if encoding.strip().lower() == "gzip":
        body = _gunzip(body)
    elif encoding.strip().lower() not in ("", "identity"):
        raise Malformed("UNSUPPORTED_ENCODING", f"Content-Encoding {encoding} is not supported (use gzip or none)")
    message = ExportTraceServiceRequest()
    if mimetype == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError) as error:
            raise Malformed("MALFORMED_PROTOBUF", f"Request body is not an OTLP ExportTraceServiceRequest: {error}") from None
    elif mimetype == JSON:
        try:
            json_format.ParseDict(_ids_as_base64(json.loads(body)), message, ignore_unknown_fields=True)
        except (ValueError, TypeError, json_format.ParseError, RecursionError) as error:
            raise Malformed("MALFORMED_JSON", f"Request body is not an OTLP/JSON ExportTraceServiceRequest: {error}") from None
    else:
        raise Malformed("UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {PROTOBUF} or {JSON}")
    return message


def spans_of(message: ExportTraceServiceRequest) -> list[tuple[Span, dict[str, Any]]]:
    """Every span with its resource's attributes."""
    spans = []
    for resource_spans in message.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        spans.extend((span, resource) for scope_spans in resource_spans.scope_spans for span in scope_spans.spans)
    return spans


def usage_fields(span: Span, resource: dict[str, Any]) -> dict[str, Any] | None:
    """The usage fields of a GenAI span with token usage; None for any other span (skipped)."""
    attrs = attributes(span.attributes)
    operation = attrs.get("gen_ai.operation.name")
    if operation is None:
        return None
    item: dict[str, Any] = {}
    for field, names in _FIRST_OF:
        value = _first(attrs, names)
        if value is not None:
            item[field] = value
    if "prompt_tokens" not in item and "completion_tokens" not in item:
        return None
    item["event_id"] = f"otel-{span.trace_id.hex()}-{span.span_id.hex()}"
    item["event_type"] = "llm_request"
    end, start = span.end_time_unix_nano, span.start_time_unix_nano
    item["occurred_at"] = _EPOCH + timedelta(microseconds=end // 1000)
    item["success"] = span.status.code != SpanStatus.STATUS_CODE_ERROR
    if end >= start > 0:
        item["latency_ms"] = (end - start) // 1_000_000
    if operation in _OPERATIONS:
        item["operation"] = _OPERATIONS[operation]
    for field, name in _ATTRIBUTE_OF:
        value = attrs.get(name)
        if value is None:
            value = resource.get(name) if field in _DIMENSIONS else None
        if value is not None:
            item[field] = value
    if "gen_ai.conversation.id" in attrs:
        item["metadata"] = {"gen_ai.conversation.id": attrs["gen_ai.conversation.id"]}
    return item


def attributes(key_values: "list[KeyValue]") -> dict[str, Any]:
    """OTLP attributes as plain values (whole doubles as ints: some SDKs send counts as doubles)."""
    plain: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            plain[kv.key] = value.string_value
        elif kind == "int_value":
            plain[kv.key] = value.int_value
        elif kind == "bool_value":
            plain[kv.key] = value.bool_value
        elif kind == "double_value":
            number = value.double_value
            plain[kv.key] = int(number) if number.is_integer() else number
    return plain


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


def _record(principal: Principal, items: list[UsageIn | ItemError]) -> tuple[int, int, list[str]]:
    """Append the valid items; invalid or conflicting spans are rejected (OTLP partial success)."""
    rejected: list[str] = []
    while items:
        try:
            return services().ledger.usage.record(principal.as_actor(), items).position, len(rejected), rejected
        except Invalid as error:
            bad = {e["index"] for e in error.details.get("items", ())}
            if not bad:
                raise
            rejected.extend(f"{e['event_id']}: {e['field'] or 'span'} {e['message']}" for e in error.details["items"])
            items = [item for index, item in enumerate(items) if index not in bad]
        except Conflict as error:
            ids = set(error.details.get("event_ids", ()))
            rejected.extend(f"{i}: already recorded with different content" for i in sorted(ids))
            items = [item for item in items if item.event_id not in ids]
    return 0, len(rejected), rejected


def _body() -> bytes:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"Request body exceeds {MAX_BODY_BYTES} bytes")
    return request.get_data(cache=False)


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, MAX_DECODED_BYTES)
    except zlib.error as error:
        raise Malformed("MALFORMED_GZIP", f"Request body is not valid gzip: {error}") from None
    if inflater.unconsumed_tail:
        raise TooLarge("PAYLOAD_TOO_LARGE", f"The decompressed body exceeds {MAX_DECODED_BYTES} bytes")
    return plain


def _ids_as_base64(document: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(document, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode() if key in _ID_FIELDS and isinstance(value, str) else _ids_as_base64(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_ids_as_base64(value) for value in document]
    return document


def _encode(message, as_json: bool, status: int) -> Response:
    if as_json:
        return Response(json_format.MessageToJson(message, indent=None), status=status, mimetype=JSON)
    return Response(message.SerializeToString(), status=status, mimetype=PROTOBUF)


def _error(status: int, code: str, message: str, as_json: bool) -> Response:
    rpc = Status(code=_GRPC_CODE.get(status, 2), message=message)
    if as_json:
        body = {**json_format.MessageToDict(rpc), "error": {"code": code, "message": message}}
        response = Response(json.dumps(body), status=status, mimetype=JSON)
    else:
        response = Response(rpc.SerializeToString(), status=status, mimetype=PROTOBUF)
    if status in (429, 503):
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response
