"""A ledger written by the previous release loads, verifies and reports the same figures.

tests/fixtures/ledger-f6eb198.jsonl is an `export-ledger` file written by the release
before the ledger was organised by concept (commit f6eb198): two tenants of demo usage
with voids and amends, clients rotated and disabled, users, sessions, keys, licences,
heartbeats, policies, docs access, credit rates, a model price, budgets with raised and
delivered alerts, License Manager sync outcomes and failed attempts: every event type of
that release, sealed and signed by a checkpoint. Its public key is beside it. The stored
events are replayed byte for byte into a fresh database; the figures below were read from
that release's own API on the same ledger.
"""
from __future__ import annotations

from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.chain.export import read_export, verify_export
from ledger.chain.hashes import PublicKey
from ledger.codec import ALL_EVENTS, decode_event
from projections.framework import check
from projections.ledger_chain import write_checkpoint
from projections.ledger_snapshot import verify_database
from projections.registry import all_projections

FIXTURES = Path(__file__).parent / "fixtures"
EXPORT = FIXTURES / "ledger-f6eb198.jsonl"
PUBLIC_KEY = FIXTURES / "ledger-f6eb198.pub"
EVENTS = 157
# event types added after that release (they cannot be in its ledger)
ADDED_SINCE = {
    "BudgetWebhookSecretRotated",
    "UserDisabled", "UserEnabled", "UserPasswordChanged",
    "BudgetHoldPlaced", "BudgetHoldCommitted", "BudgetHoldReleased", "BudgetHoldExpired", "BudgetPeriodHolds",
    "TenantMoved",
}

# GET /api/v1/usage/summary?start_date=2026-01-01&end_date=2026-12-31, answered by the
# previous release for each org of this ledger
SUMMARY_BEFORE = {
    ("acme", "acme-prod"): {
        "average_latency_ms": 1345.0, "completion_tokens": 6675, "end_date": "2026-12-31",
        "estimated_cost_usd": 0.225147,
        "event_types": {"agent_run": 9, "api_call": 9, "llm_request": 27, "storage_level": 9},
        "policy_violations": 2, "position": 157, "prompt_tokens": 28622, "start_date": "2026-01-01",
        "success_rate": 100.0, "total_api_calls": 9, "total_events": 54, "total_llm_requests": 27,
        "total_tokens": 35297, "unpriced_events": 4,
    },
    ("acme", "acme-research"): {
        "average_latency_ms": 1605.56, "completion_tokens": 1326, "end_date": "2026-12-31",
        "estimated_cost_usd": 0.008501, "event_types": {"api_call": 3, "llm_request": 6},
        "policy_violations": 0, "position": 157, "prompt_tokens": 6268, "start_date": "2026-01-01",
        "success_rate": 88.89, "total_api_calls": 3, "total_events": 9, "total_llm_requests": 6,
        "total_tokens": 7594, "unpriced_events": 2,
    },
    ("globex", "globex-main"): {
        "average_latency_ms": 1410.89, "completion_tokens": 2365, "end_date": "2026-12-31",
        "estimated_cost_usd": 0.087141, "event_types": {"api_call": 6, "llm_request": 12},
        "policy_violations": 0, "position": 157, "prompt_tokens": 12635, "start_date": "2026-01-01",
        "success_rate": 94.44, "total_api_calls": 6, "total_events": 18, "total_llm_requests": 12,
        "total_tokens": 15000, "unpriced_events": 2,
    },
}

# The summary gained the token-detail sums since; that release's events state none, so 0.
NO_TOKEN_DETAILS = {"cached_prompt_tokens": 0, "cache_creation_tokens": 0, "reasoning_tokens": 0}




def old_ledger():
    """(events as stored: position, stream id, version, topic, state bytes; checkpoints)."""
    with EXPORT.open("rb") as handle:
        export = read_export(handle)
        events = [event for batch, _chain, _bound in export.batches for event in batch]
        assert export.complete()
    return events, export.checkpoints


def test_the_previous_release_export_verifies_offline():
    with EXPORT.open("rb") as handle:
        report = verify_export(handle, [PublicKey.from_file(PUBLIC_KEY)])
    assert report.intact, report.as_json()
    assert report.events_verified == EVENTS and report.checkpoints_verified == 1 and report.signatures_checked


def test_every_stored_topic_still_decodes_to_its_class():
    events, _ = old_ledger()
    topics = set()
    for _position, _stream, _version, topic, state in events:
        assert type(decode_event(state)).__name__ == topic
        topics.add(topic)
    # every event type of the release is in the fixture; newer types are listed in ADDED_SINCE
    assert topics == {cls.__name__ for cls in ALL_EVENTS} - ADDED_SINCE


def test_the_previous_release_ledger_replays_verifies_and_reports_the_same_figures(h):
    events, checkpoints = old_ledger()
    positions = h.store.recorder.insert_events(
        [StoredEvent(UUID(stream), version, topic, state) for _p, stream, version, topic, state in events]
    )
    assert list(positions) == [p for p, *_ in events]  # the same positions, so the same chain

    h.project()
    with h.engine.begin() as conn:  # the signed statement the previous release made about this ledger
        for checkpoint in checkpoints:
            write_checkpoint(conn, checkpoint)
    report = verify_database(h.engine, [PublicKey.from_file(PUBLIC_KEY)])
    assert report.intact, report.as_json()
    assert report.events_verified == EVENTS and report.checkpoints_verified == 1 and report.signatures_checked

    shadows = {p.name: p for p in all_projections(prefix="check_")}
    differing = {p.name: check(h.engine, h.store, p, shadows[p.name]) for p in all_projections()}
    assert not any(differing.values()), differing  # rebuild --check

    for (tenant_id, org_id), before in SUMMARY_BEFORE.items():
        answer = h.admin(
            "GET", "/api/v1/usage/summary?start_date=2026-01-01&end_date=2026-12-31",
            headers={"X-Tenant-ID": tenant_id, "X-Org-ID": org_id},
        )
        assert answer.status_code == 200, answer.json
        added = ("estimated_cost_nanos", "range")  # exact figures beside the rounded ones; the window used
        assert {k: v for k, v in answer.json.items() if k not in added} == {**before, **NO_TOKEN_DETAILS}, (tenant_id, org_id)
