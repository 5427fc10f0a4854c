"""LiteLLM's StandardLoggingPayload at POST /api/v1/integrations/litellm, delivered by
LiteLLM itself: a mocked completion (no network) logged through its generic API logger."""
from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

import litellm  # noqa: E402
from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger  # noqa: E402

from ledger.clock import FixedClock  # noqa: E402
from tests.live_server import serving  # noqa: E402

PATH = "/api/v1/integrations/litellm"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's notes on LiteLLM's own types


@pytest.fixture
def clock() -> FixedClock:
    """LiteLLM stamps payloads with the wall clock: the ledger's clock stands just after it."""
    return FixedClock(datetime.now(timezone.utc) + timedelta(minutes=1))


async def _complete_and_log(endpoint: str, headers: dict, **completion) -> list[dict]:
    """One mocked completion whose payload the generic API logger posts to `endpoint`."""
    logger = GenericAPILogger(endpoint=endpoint, headers=headers, log_format="json_array")
    sent: list[dict] = []
    litellm.callbacks = [logger]
    try:
        await litellm.acompletion(messages=[{"role": "user", "content": "hello there"}], **completion)
        for _ in range(500):  # the success callback runs as a task after the call returns
            if logger.log_queue:
                break
            await asyncio.sleep(0.01)
        sent.extend(json.loads(json.dumps(p, default=str)) for p in logger.log_queue)
        await logger.async_send_batch()
    finally:
        litellm.callbacks = []
    return sent


def test_a_mocked_completion_lands_with_litellms_cost_beside_ours(h, agent):
    with serving(h.app) as base:
        sent = asyncio.run(
            _complete_and_log(
                base + PATH, agent, model="gpt-4o", mock_response="hi back", metadata={"user_api_key_team_id": "research"}
            )
        )
    assert len(sent) == 1
    payload = sent[0]
    h.project()
    records = h.http.get("/api/v1/usage/records", headers=agent).json["records"]
    assert [r["event_id"] for r in records] == [payload["id"]]
    record = records[0]
    assert (record["llm_model"], record["llm_provider"]) == ("gpt-4o", "openai")
    assert (record["prompt_tokens"], record["completion_tokens"]) == (payload["prompt_tokens"], payload["completion_tokens"])
    ours = (payload["prompt_tokens"] * Decimal("0.0025") + payload["completion_tokens"] * Decimal("0.01")) / 1000
    assert Decimal(str(record["cost_usd"])) == ours
    assert Decimal(str(record["reported_cost_usd"])) == Decimal(str(payload["response_cost"])).quantize(Decimal("1e-6"))
    assert record["team_id"] == "research"
    breakdown = h.http.get("/api/v1/usage/breakdown?group_by=team", headers=agent).json
    assert [(b["key"], b["cost_usd"], b["reported_cost_usd"]) for b in breakdown["breakdown"]] == [
        ("research", record["cost_usd"], record["reported_cost_usd"])
    ]


def test_ndjson_is_accepted_and_a_replay_counts_once(h, agent):
    lines = [_payload("call-1", 100, 10), _payload("call-2", 200, 20)]
    body = "\n".join(json.dumps(p) for p in lines)
    first = h.http.post(PATH, data=body, headers={**agent, "Content-Type": "application/x-ndjson"})
    assert (first.status_code, first.json["accepted"]) == (202, 2), first.json
    again = h.http.post(PATH, json=lines, headers=agent)
    assert (again.status_code, again.json["accepted"], again.json["duplicates"]) == (202, 0, 2)


def test_negative_tokens_answer_422_with_the_index_and_record_nothing(h, agent):
    before = h.ledger_count()
    response = h.http.post(PATH, json=[_payload("ok-1", 1, 1), _payload("bad-1", -3, 1)], headers=agent)
    assert response.status_code == 422
    assert [(i["index"], i["event_id"], i["field"]) for i in response.json["error"]["items"]] == [(1, "bad-1", "prompt_tokens")]
    assert h.ledger_count() == before


def test_a_body_that_is_neither_json_nor_ndjson_answers_400(h, agent):
    response = h.http.post(PATH, data=b"{not json", headers={**agent, "Content-Type": "application/json"})
    assert (response.status_code, response.json["error"]["code"]) == (400, "MALFORMED_JSON")


def _payload(id_: str, prompt: int, completion: int) -> dict:
    end = datetime.now(timezone.utc).timestamp()
    return {
        "id": id_, "call_type": "acompletion", "status": "success", "model": "gpt-4o", "custom_llm_provider": "openai",
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "startTime": end - 0.5, "endTime": end, "response_cost": 0.001, "metadata": {"user_api_key_team_id": "t"},
    }
