"""The body fingerprint (`body_sha256`) is stored with every usage event and compared on
retries: the same id with the same body is a duplicate, with another body a 409. Its bytes
may never change, so the fast implementation in ledger/usage/rules.py is checked here,
over generated items, against the implementation that recorded the events stored so far.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.usage.rules import UsageIn, _fingerprint, fingerprint, sent_fingerprint

_reference_encoder = msgspec.json.Encoder(order="sorted")


def reference_fingerprint(item: UsageIn, utc: bool) -> str:
    """The fingerprint as releases up to 2026-11 computed it (the bytes stored events hold)."""
    sent = msgspec.to_builtins(item)
    for key, value in list(sent.items()):
        if isinstance(value, str) and key in ("cost_usd", "credits", "quantity", "reported_cost_usd"):
            sent[key] = str(Decimal(value).normalize())
    if utc and isinstance(item.occurred_at, datetime) and item.occurred_at.tzinfo is not None:
        sent["occurred_at"] = msgspec.to_builtins(item.occurred_at.astimezone(timezone.utc))
    return hashlib.sha256(_reference_encoder.encode(sent)).hexdigest()


# generated items -------------------------------------------------------------------------
_decoder = msgspec.json.Decoder(UsageIn)
ID_FIELDS = ("instance_id", "user_id", "team_id", "agent_id", "workflow_id", "app_id", "knowledge_base_id", "hold_id")
TEXT_FIELDS = ("operation", "resource_type", "instance_type", "llm_provider", "llm_model", "http_path")
COUNT_FIELDS = (
    "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "policies_evaluated", "policy_violations",
    "cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens",
)
AMOUNTS = ("quantity", "cost_usd", "credits", "reported_cost_usd")

unicode_text = st.text(st.characters(codec="utf-8"), max_size=12)
ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
offsets = st.one_of(
    st.just(timezone.utc),
    st.sampled_from([timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8), timedelta(hours=14)]).map(timezone),
    st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))),
)
moments = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)),
    offsets,
)


@st.composite
def amount_text(draw) -> str:
    """A decimal as JSON text, written as clients write them: 1.50, 1.5e2, 0E-3, "-0.10"."""
    sign = draw(st.sampled_from(["", "", "-"]))
    digits = str(draw(st.integers(0, 10**20)))
    fraction = draw(st.sampled_from(["", ".0", ".50", ".000", ".1230000", ".000000001"]))
    exponent = draw(st.sampled_from(["", "", "e2", "E+3", "e-7", "E0", "e-30"]))
    number = f"{sign}{digits}{fraction}{exponent}"
    return json.dumps(number) if draw(st.booleans()) else number


def moment_text(moment: datetime, zulu: bool) -> str:
    written = moment.isoformat()
    return json.dumps(written[:-6] + "Z" if zulu and written.endswith("+00:00") else written)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | unicode_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def item_bodies(draw) -> bytes:
    """One item's JSON text: each optional field unsent, null or a value, in any order."""
    fragments: dict[str, str] = {
        "event_id": json.dumps(draw(st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True))),
        "event_type": json.dumps(draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))),
    }
    optional = {
        **{f: ids.map(json.dumps) for f in ID_FIELDS},
        **{f: unicode_text.map(lambda t: json.dumps(t, ensure_ascii=False)) for f in TEXT_FIELDS},
        **{f: st.integers(0, 10**12).map(str) for f in COUNT_FIELDS},
        **{f: amount_text() for f in AMOUNTS},
        "http_method": st.from_regex(r"[A-Za-z]{1,16}", fullmatch=True).map(json.dumps),
        "http_status_code": st.integers(100, 599).map(str),
        "success": st.booleans().map(json.dumps),
        "metadata": st.dictionaries(unicode_text, json_values, max_size=4).map(
            lambda m: msgspec.json.encode(m).decode()
        ),
    }
    for field in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        fragments[field] = "null" if draw(st.integers(0, 3)) == 0 else draw(optional[field])
    if draw(st.booleans()):
        fragments["occurred_at"] = moment_text(draw(moments), zulu=draw(st.booleans()))
    order = draw(st.permutations(sorted(fragments)))
    return ("{" + ",".join(f"{json.dumps(k)}:{fragments[k]}" for k in order) + "}").encode()


python_values = st.recursive(
    json_values | st.floats() | st.decimals() | moments | st.binary(max_size=4) | st.uuids(),
    lambda inner: st.lists(inner, max_size=3).map(tuple)
    | st.frozensets(st.integers() | unicode_text, max_size=3)
    | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=8,
)


def assert_same_fingerprints(item: UsageIn) -> None:
    assert fingerprint(item) == reference_fingerprint(item, utc=True)
    assert _fingerprint(item, utc=False) == reference_fingerprint(item, utc=False)


# the properties --------------------------------------------------------------------------
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item_bodies())
def test_a_decoded_item_has_the_fingerprint_stored_events_hold(body):
    assert_same_fingerprints(_decoder.decode(body))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item_bodies(), st.dictionaries(unicode_text, python_values, min_size=1, max_size=4))
def test_an_adapter_item_with_python_metadata_has_the_fingerprint_stored_events_hold(body, metadata):
    """The protocol adapters convert Python values (metadata is Any inside: tuples, sets,
    Decimals, datetimes…), which encode through msgspec.to_builtins as before."""
    fields = msgspec.json.decode(body)
    item = msgspec.convert({**fields, "metadata": metadata}, UsageIn)
    assert_same_fingerprints(item)


@pytest.mark.parametrize(
    "body, utc_hash, as_written_hash",
    [  # hashes computed by the release that stored them
        (
            rb'{"event_id":"e-1","event_type":"llm_request","occurred_at":"2026-11-20T11:00:00Z"}',
            "b9391e4c003780c0074b5516b43ed7b2b2a4d0467d7d2e2cc60f7939408e75cc",
            None,
        ),
        (
            rb'{"event_id":"e-2","event_type":"llm_request","occurred_at":"2026-11-20T16:30:00.250+05:30",'
            rb'"cost_usd":0.1230,"quantity":"1.5E+3","metadata":{"z":[1,2.5,null],"a":"\u00e9"},"user_id":null}',
            "088f6c87decee0435a51e0cb7b12d666793990230b520bd5dbf768848a08dfc1",
            "b167b2d739fdfa08daa7aacfb4607d84a11f092b2e6640e046b83a0c287d3a4b",
        ),
        (
            rb'{"event_id":"e-3","event_type":"api_call","occurred_at":"2026-11-20T11:00:00+00:00",'
            rb'"http_method":"get","credits":0E-9,"success":false,"team_id":"t\u00fc"}',
            "31efa4e8f0eb96af3a7a812cf2f7de01418590bfba25cb5e7b1c8a1548a7fa85",
            None,
        ),
    ],
)
def test_known_fingerprints_do_not_change(body, utc_hash, as_written_hash):
    item = _decoder.decode(body)
    assert fingerprint(item) == utc_hash
    assert sent_fingerprint(item) == as_written_hash
