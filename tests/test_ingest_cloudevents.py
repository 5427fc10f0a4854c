"""CloudEvents on POST /api/v1/events, built and encoded by the cloudevents SDK."""
from __future__ import annotations

import json
from decimal import Decimal

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from api.cloudevents import BATCH, event_id
from tests.conftest import NOW


def _event(id_: str, data: dict, type_: str = "com.example.usage.llm-request", **attributes) -> CloudEvent:
    return CloudEvent(
        attributes={"type": type_, "source": "//agents/alpha", "id": id_, "time": NOW.replace(hour=11), **attributes},
        data=data,
    )


def _batch(events: list[CloudEvent]) -> bytes:
    """The JSON batch format: an array of events in the SDK's own JSON format."""
    return b"[" + b",".join(JSONFormat().write(e) for e in events) + b"]"


def _tokens(prompt: int, completion: int) -> dict:
    return {"llm_provider": "openai", "llm_model": "gpt-4o", "prompt_tokens": prompt, "completion_tokens": completion}


def test_a_batch_built_by_the_sdk_lands_priced_and_a_redelivery_adds_nothing(h, agent):
    body = _batch([_event("a-1", _tokens(1000, 500)), _event("a-2", _tokens(2000, 0), type_="llm_request")])
    response = h.http.post("/api/v1/events", data=body, headers={**agent, "Content-Type": BATCH})
    assert response.status_code == 202, response.json
    assert response.json["accepted"] == 2
    again = h.http.post("/api/v1/events", data=body, headers={**agent, "Content-Type": BATCH})
    assert (again.status_code, again.json["accepted"], again.json["duplicates"]) == (202, 0, 2)
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert summary["total_llm_requests"] == 2
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (3000, 500)
    # gpt-4o: $0.0025 in and $0.01 out per 1K tokens
    assert Decimal(str(summary["estimated_cost_usd"])) == Decimal("0.0025") * 3 + Decimal("0.01") / 2
    records = h.http.get("/api/v1/usage/records", headers=agent).json["records"]
    assert {r["event_id"] for r in records} == {event_id("//agents/alpha", "a-1"), event_id("//agents/alpha", "a-2")}
    assert {r["occurred_at"][:19] for r in records} == {"2026-11-20T11:00:00"}


def test_structured_and_binary_modes_from_the_sdk_helpers(h, agent):
    for number, message in enumerate((to_structured_event(_event("s-1", _tokens(10, 5))), to_binary_event(_event("b-1", _tokens(7, 3))))):
        response = h.http.post("/api/v1/events", data=message.body, headers={**agent, **message.headers})
        assert response.status_code == 202, (number, response.json)
        assert response.json["accepted"] == 1
    h.project()
    summary = h.http.get("/api/v1/usage/summary", headers=agent).json
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (17, 8)


def test_an_event_without_specversion_answers_400_with_its_index_and_records_nothing(h, agent):
    good = json.loads(JSONFormat().write(_event("g-1", _tokens(1, 1))))
    bad = {k: v for k, v in json.loads(JSONFormat().write(_event("g-2", _tokens(1, 1)))).items() if k != "specversion"}
    before = h.ledger_count()
    response = h.http.post("/api/v1/events", data=json.dumps([good, bad]), headers={**agent, "Content-Type": BATCH})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "INVALID_CLOUDEVENT"
    assert response.json["error"]["items"] == [
        {"index": 1, "event_id": "g-2", "field": "specversion", "message": "is required by CloudEvents 1.0 and must be a non-empty string"}
    ]
    assert h.ledger_count() == before


def test_invalid_usage_data_answers_422_with_its_index_and_records_nothing(h, agent):
    events = [_event("d-1", _tokens(1, 1)), _event("d-2", _tokens(-5, 1)), _event("d-3", {**_tokens(1, 1), "event_id": "x"})]
    before = h.ledger_count()
    response = h.http.post("/api/v1/events", data=_batch(events), headers={**agent, "Content-Type": BATCH})
    assert response.status_code == 422
    assert [(i["index"], i["field"]) for i in response.json["error"]["items"]] == [(2, "data.event_id")]
    response = h.http.post("/api/v1/events", data=_batch(events[:2]), headers={**agent, "Content-Type": BATCH})
    assert response.status_code == 422
    assert [(i["index"], i["event_id"], i["field"]) for i in response.json["error"]["items"]] == [
        (1, event_id("//agents/alpha", "d-2"), "prompt_tokens")
    ]
    assert h.ledger_count() == before


def test_a_batch_over_1000_events_answers_413(h, agent):
    events = [_event(f"n-{i}", _tokens(1, 1)) for i in range(1001)]
    before = h.ledger_count()
    response = h.http.post("/api/v1/events", data=_batch(events), headers={**agent, "Content-Type": BATCH})
    assert (response.status_code, response.json["error"]["code"]) == (413, "BATCH_TOO_LARGE")
    assert h.ledger_count() == before
