"""OTLP/HTTP traces at POST /v1/traces, exported by the OpenTelemetry SDK configured only
through OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS."""
from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
import requests
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from ledger.usage.rules import MAX_BODY_BYTES
from tests.conftest import NOW
from tests.live_server import serving

END = NOW - timedelta(hours=1)


def _ns(moment) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _chat(tracer, model: str, prompt: int, completion: int, *, end=END, **extra) -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": prompt,
        "gen_ai.usage.output_tokens": completion,
        **extra,
    }
    span = tracer.start_span(f"chat {model}", attributes=attributes, start_time=_ns(end) - 1_500_000_000)
    span.end(end_time=_ns(end))


def _spans(record) -> list:
    """Finished SDK spans: two GenAI calls and one plain span (which is not usage)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent", "usage_ledger.team_id": "research"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    record(tracer)
    provider.shutdown()
    return list(memory.get_finished_spans())


def _two_calls(tracer) -> None:
    _chat(tracer, "gpt-4o", 1000, 200, **{
        "gen_ai.agent.id": "planner", "gen_ai.conversation.id": "conv-9",
        "gen_ai.usage.cache_read.input_tokens": 600, "gen_ai.usage.reasoning.output_tokens": 150,
    })
    _chat(tracer, "gpt-4o-mini", 3000, 0, **{"gen_ai.response.model": "gpt-4o-mini", "usage_ledger.team_id": "ops"})
    tracer.start_span("db query", start_time=_ns(END) - 10).end(end_time=_ns(END))


@pytest.fixture
def exporter_env(monkeypatch):
    def configure(base: str, headers: dict) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", ",".join(f"{k}={quote(v)}" for k, v in headers.items()))

    return configure


def test_sdk_exported_genai_spans_land_priced_and_a_reexport_adds_nothing(h, agent, exporter_env):
    spans = _spans(_two_calls)
    with serving(h.app) as base:
        exporter_env(base, agent)
        assert OTLPSpanExporter().export(spans) is SpanExportResult.SUCCESS
        count = h.ledger_count()
        assert OTLPSpanExporter().export(spans) is SpanExportResult.SUCCESS
        assert h.ledger_count() == count
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert (summary["total_llm_requests"], summary["prompt_tokens"], summary["completion_tokens"]) == (2, 4000, 200)
    assert (summary["cached_prompt_tokens"], summary["cache_creation_tokens"], summary["reasoning_tokens"]) == (600, 0, 150)
    # gpt-4o: $2.50 per 1M uncached input, $1.25 per 1M cache reads, $10 per 1M output (reasoning
    # is part of it); gpt-4o-mini: $0.15 per 1M input
    by_hand = (400 * Decimal("2.50") + 600 * Decimal("1.25") + 200 * Decimal("10") + 3000 * Decimal("0.15")) / 1_000_000
    assert Decimal(str(summary["estimated_cost_usd"])) == by_hand
    records = {r["llm_model"]: r for r in h.http.get("/api/v1/usage/records", headers=agent).json["records"]}
    planner = records["gpt-4o"]
    span = next(s for s in spans if s.attributes.get("gen_ai.request.model") == "gpt-4o")
    assert planner["event_id"] == f"otel-{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert (planner["agent_id"], planner["team_id"], planner["latency_ms"]) == ("planner", "research", 1500)
    assert planner["occurred_at"].startswith("2026-11-20T11:00:00")
    assert records["gpt-4o-mini"]["team_id"] == "ops"  # a span attribute wins over the resource's


def test_the_json_encoding_gzipped_with_a_rejected_span_answers_partial_success(h, agent):
    def calls(tracer):
        _chat(tracer, "gpt-4o", 10, 5)
        _chat(tracer, "gpt-4o", -4, 5)  # negative tokens: rejected, the other span is kept
        bad = tracer.start_span("chat", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 7})
        bad.set_status(Status(StatusCode.ERROR))
        bad.end(end_time=_ns(END))

    document = json_format.MessageToDict(encode_spans(_spans(calls)))
    for resource_spans in document["resourceSpans"]:  # OTLP/JSON writes ids as hex
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    body = gzip.compress(json.dumps(document).encode())
    with serving(h.app) as base:
        response = requests.post(
            base + "/v1/traces", data=body, headers={**agent, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
    assert response.status_code == 200, response.text
    answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 1
    assert "prompt_tokens" in answer.partial_success.error_message
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert (summary["total_events"], summary["prompt_tokens"], summary["completion_tokens"]) == (2, 17, 5)
    assert h.http.get("/api/v1/usage/breakdown?group_by=day", headers=agent).json["totals"]["events"] == 2


def test_a_malformed_protobuf_answers_400_and_records_nothing(h, agent):
    before = h.ledger_count()
    response = h.http.post("/v1/traces", data=b"\x0a\xff\xff\xff\x0fnot protobuf", headers={**agent, "Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    assert response.content_type == "application/x-protobuf"
    assert h.ledger_count() == before


def test_a_body_over_the_limit_answers_413_and_records_nothing(h, agent):
    before = h.ledger_count()
    body = b"\x00" * (MAX_BODY_BYTES + 1)
    response = h.http.post("/v1/traces", data=body, headers={**agent, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.json["code"] == 8  # google.rpc.Code RESOURCE_EXHAUSTED
    bomb = gzip.compress(b" " * (4 * MAX_BODY_BYTES + 1))
    response = h.http.post("/v1/traces", data=bomb, headers={**agent, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert h.ledger_count() == before


def test_without_credentials_the_exporter_is_refused(h, agent):
    response = h.http.post("/v1/traces", data=b"", headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 401
