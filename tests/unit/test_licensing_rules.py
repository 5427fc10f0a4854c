"""Licence status and node capacity: every boundary, with a fixed moment."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger.errors import Invalid
from ledger.licensing.rules import (
    LicenseTerms,
    check_heartbeat,
    check_terms,
    license_status,
    node_capacity_status,
    percentage,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("expires_in", "status"),
    [
        (400 * DAY, "ACTIVE"),
        (30 * DAY + TICK, "ACTIVE"),
        (30 * DAY, "EXPIRING_SOON"),  # within 30 days, inclusive
        (TICK, "EXPIRING_SOON"),
        (timedelta(0), "EXPIRED"),  # expired once expires_at is reached
        (-DAY, "EXPIRED"),
    ],
)
def test_licence_status_by_time_to_expiry(expires_in, status):
    assert license_status(NOW + expires_in, 10, 10, NOW) == status


def test_more_active_nodes_than_licensed_is_over_limit():
    assert license_status(NOW + 400 * DAY, 10, 11, NOW) == "OVER_LIMIT"
    assert license_status(NOW + 400 * DAY, 10, 10, NOW) == "ACTIVE"  # exactly at the limit is fine


def test_over_limit_outranks_expiring_soon_and_expired_outranks_both():
    assert license_status(NOW + 5 * DAY, 10, 11, NOW) == "OVER_LIMIT"
    assert license_status(NOW, 10, 11, NOW) == "EXPIRED"


@pytest.mark.parametrize(
    ("active", "allowed", "status"),
    [
        (0, 10, "OK"),
        (7, 10, "OK"),
        (79, 100, "OK"),
        (80, 100, "CAUTION"),  # ≥ 80 %
        (8, 10, "CAUTION"),
        (89, 100, "CAUTION"),
        (90, 100, "WARNING"),  # ≥ 90 %
        (100, 100, "WARNING"),  # at the maximum: still allowed
        (101, 100, "VIOLATION"),  # more than the maximum
        (0, 0, "OK"),
        (1, 0, "VIOLATION"),
    ],
)
def test_node_capacity_thresholds(active, allowed, status):
    assert node_capacity_status(active, allowed) == status


def test_a_percentage_has_two_decimals_and_is_whole_when_it_can_be():
    assert percentage(8, 10) == 80 and isinstance(percentage(8, 10), int)
    assert percentage(1, 3) == 33.33
    assert percentage(2, 3) == 66.67
    assert percentage(5, 0) == 0


def terms(**changes) -> LicenseTerms:
    base = {"tier": "Enterprise", "nodes_total": 10, "expires_at": NOW + 365 * DAY}
    return LicenseTerms(**{**base, **changes})


def test_valid_terms_pass():
    check_terms(terms())
    check_terms(terms(credits_included=Decimal(0), nodes_total=1_000_000, tier="Developer"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tier": "Gold"}, "tier"),
        ({"nodes_total": 0}, "nodes_total"),
        ({"nodes_total": 1_000_001}, "nodes_total"),
        ({"expires_at": datetime(2027, 1, 1)}, "expires_at"),
        ({"credits_included": Decimal(-1)}, "credits_included"),
        ({"credits_included": Decimal("NaN")}, "credits_included"),
    ],
)
def test_invalid_terms_name_their_field(changes, field):
    with pytest.raises(Invalid) as error:
        check_terms(terms(**changes))
    assert error.value.details["field"] == field


@pytest.mark.parametrize(
    ("instance_id", "instance_type", "host_info", "field"),
    [
        ("", "agent", None, "instance_id"),
        ("a" * 129, "agent", None, "instance_id"),
        ("node 1", "agent", None, "instance_id"),
        ("node-1", "robot", None, "instance_type"),
        ("node-1", "agent", {"blob": "x" * 9000}, "host_info"),
    ],
)
def test_heartbeat_rules(instance_id, instance_type, host_info, field):
    with pytest.raises(Invalid) as error:
        check_heartbeat(instance_id, instance_type, host_info)
    assert error.value.details["field"] == field


def test_a_heartbeat_may_carry_host_info():
    check_heartbeat("agent-01:8080", "orchestrator", {"os": "linux"})


# what a License Manager answers is held to the read model's bounds ------------------------
def _answer(**fields) -> bytes:
    import json

    good = {"license_key": "LIC-1", "tier": "Enterprise", "nodes_total": 10, "credits_included": 50000,
            "expires_at": "2027-06-30T00:00:00Z", "status": "active"}
    return json.dumps({**good, **fields}).encode()


def test_a_well_formed_answer_is_taken_as_sent():
    from ledger.licensing.manager import parse_terms

    terms = parse_terms(_answer(credits_included="12.5"), "LIC-1")
    assert (terms.tier, terms.nodes_total, terms.credits_included, terms.status) == ("Enterprise", 10, Decimal("12.5"), "active")
    assert terms.expires_at == datetime(2027, 6, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("fields", [
    {"tier": "T" * 65},  # past the read model's String(64): the projection would stop on it
    {"status": ["active"]},
    {"tier": True},
    {"nodes_total": 10**30},  # past Integer
    {"nodes_total": -1},
    {"nodes_total": 2.5},
    {"nodes_total": "10"},
    {"credits_included": 10**9},  # × 10^9 nano-credits would not fit 64 bits
    {"credits_included": "1e400"},
    {"credits_included": "NaN"},
    {"credits_included": -1},
    {"credits_included": "9" * 100},
    {"expires_at": "2027-06-30T00:00:00" + "0" * 100},
    {"expires_at": "2027-06-30T00:00:00"},  # no time zone
])
def test_values_past_the_bounds_are_an_unusable_licence_not_a_stuck_projection(fields):
    from ledger.licensing.manager import SyncFailure, parse_terms

    with pytest.raises(SyncFailure) as caught:
        parse_terms(_answer(**fields), "LIC-1")
    assert caught.value.code == "lm_error" and len(caught.value.message) < 200
