"""Ingest in the ecosystem's formats against our own JSON batches, in the same run on the
same server: OTLP/HTTP protobuf (1,000 GenAI spans a request) and CloudEvents batches
(1,000 events a batch) carry the same synthetic usage as the JSON batches they are
compared with. Each round runs JSON, OTLP, CloudEvents and then in reverse, so drift in a
busy machine's speed falls on every format alike; a format's ratio is the median of its
rounds' ratios (one round is a few seconds at most: a single round swung the SQLite rows
between 0.6 and 1.3 of JSON from run to run)."""
from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime
from typing import Callable

from bench.common import basic, dumps, event_dicts, http, median, process, provision, temporary_database, utcnow, wait_http

ROUNDS = 5
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"


def otlp_body(events: list[dict]) -> bytes:
    """One ExportTraceServiceRequest holding a GenAI span per usage event."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    def attribute(key: str, value) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(attribute("service.name", "bench-agent"))
    spans = resource_spans.scope_spans.add().spans
    for n, event in enumerate(events):
        end = int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1e9)
        span = spans.add(
            trace_id=hashlib.blake2b(event["event_id"].encode(), digest_size=16).digest(),
            span_id=(n + 1).to_bytes(8, "big"),
            name=f"chat {event['llm_model']}",
            start_time_unix_nano=end - event["latency_ms"] * 1_000_000,
            end_time_unix_nano=end,
        )
        if event["http_status_code"] >= 400:
            span.status.code = Status.STATUS_CODE_ERROR
        span.attributes.extend(
            attribute(key, value)
            for key, value in (
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.provider.name", event["llm_provider"]),
                ("gen_ai.request.model", event["llm_model"]),
                ("gen_ai.usage.input_tokens", event["prompt_tokens"]),
                ("gen_ai.usage.output_tokens", event["completion_tokens"]),
                ("gen_ai.agent.id", event["agent_id"]),
                ("usage_ledger.team_id", event["team_id"]),
                ("usage_ledger.user_id", event["user_id"]),
            )
        )
    return request.SerializeToString()


def cloudevents_body(events: list[dict]) -> bytes:
    """A CloudEvents batch (JSON format) holding the usage events; data carries our fields."""
    envelope = ("event_id", "event_type", "occurred_at")
    return dumps([
        {
            "specversion": "1.0", "id": e["event_id"], "source": "urn:bench:agent", "type": e["event_type"],
            "time": e["occurred_at"], "datacontenttype": JSON, "data": {k: v for k, v in e.items() if k not in envelope},
        }
        for e in events
    ])


ENCODERS: dict[str, tuple[str, str, Callable[[list[dict]], bytes]]] = {  # format: path, content type, encoder
    "json": ("/api/v1/events", JSON, lambda events: dumps({"events": events})),
    "otlp": ("/v1/traces", PROTOBUF, otlp_body),
    "cloudevents": ("/api/v1/events", CLOUDEVENTS_BATCH, cloudevents_body),
}


def bench_ingest_formats(backend: str, batches_per_client: int, clients: int, record: Callable[..., None]) -> None:
    """Events/s of each format through one API server; OTLP and CloudEvents as ratios of JSON."""
    now = utcnow()
    one_round = ("json", "otlp", "cloudevents", "cloudevents", "otlp", "json")
    order = one_round * ROUNDS
    bodies = {  # phase → one list of bodies per client, each of 1,000 fresh events
        phase: [
            [
                ENCODERS[name][2](event_dicts(1000, f"{name}{phase}-{c}-{b}", now, days=1, seed=phase * 10_000 + c * 100 + b))
                for b in range(batches_per_client)
            ]
            for c in range(clients)
        ]
        for phase, name in enumerate(order)
    }
    seconds = [dict.fromkeys(ENCODERS, 0.0) for _ in range(ROUNDS)]
    failures: list[str] = []
    with temporary_database(backend) as url:
        client_id, secret = provision(url)
        port = 19000 + (hash(url) % 1000)
        with process(url, "api", "--port", str(port), "--workers", "2"):
            wait_http(f"http://127.0.0.1:{port}/healthz")
            for name, (path, content_type, encode) in ENCODERS.items():  # warm every worker's code paths, untimed
                for n in range(4):
                    body = encode(event_dicts(1000, f"warm-{name}-{n}", now, days=1, seed=n))
                    http("POST", f"http://127.0.0.1:{port}{path}", body,
                         {"Authorization": basic(client_id, secret), "Content-Type": content_type})
            for phase, name in enumerate(order):
                path, content_type, _ = ENCODERS[name]
                headers = {"Authorization": basic(client_id, secret), "Content-Type": content_type}

                def post(chunk: list[bytes]) -> None:
                    try:
                        for body in chunk:
                            status, _, answer = http("POST", f"http://127.0.0.1:{port}{path}", body, headers)
                            if status >= 300 or (name == "otlp" and answer):  # an OTLP partial success has a body
                                failures.append(f"{name} ingest answered {status}: {answer[:200]!r}")
                    except OSError as error:  # urllib raises HTTPError for 4xx/5xx
                        failures.append(f"{name} ingest failed: {error}")

                threads = [threading.Thread(target=post, args=(chunk,)) for chunk in bodies[phase]]
                t0 = time.perf_counter()
                [t.start() for t in threads]
                [t.join() for t in threads]
                seconds[phase // len(one_round)][name] += time.perf_counter() - t0
                if failures:
                    raise RuntimeError(failures[0])
    per_round = 2 * clients * batches_per_client * 1000  # events per format in a round
    rates = {name: [per_round / r[name] for r in seconds] for name in ENCODERS}
    baseline = f"our JSON batch ingest, {clients} clients × 1,000-event batches, same server and run"
    for name, label, unit, target in (("otlp", f"OTLP/HTTP protobuf ingest, {clients} clients × 1,000-span requests", "spans/s", "≥ 0.7"),
                                      ("cloudevents", f"CloudEvents batch ingest, {clients} clients × 1,000-event batches", "events/s", "≥ 0.8")):
        ratios = [a / b for a, b in zip(rates[name], rates["json"])]
        record(f"{label} ({backend})", median(rates[name]), unit, median(rates["json"]), baseline, target, ratio=median(ratios),
               note=f"ratio: median of {ROUNDS} rounds' ratios, {', '.join(f'{r:.2f}' for r in ratios)}")
