"""Pure rules of keys, identity and policies: what is accepted and what each refusal names."""
from __future__ import annotations

import pytest

from ledger.errors import Forbidden, Invalid
from ledger.identity.rules import check_entity, check_id, check_permissions, normalize_email
from ledger.keys.rules import SCOPES, check_expiry_days, check_scopes, key_id_for, new_key_material, parse_key
from ledger.policies.rules import check_policy


def test_key_material_parses_back_to_its_prefix_and_id():
    prefix, secret = new_key_material()
    assert parse_key(secret) == prefix and key_id_for(prefix).startswith("key_")
    assert parse_key("ulk_short") is None and parse_key("xyz_abcdefgh_secret") is None
    assert parse_key("ulk_ABCDEFGH_secret") is None  # upper case is not in the prefix alphabet


def test_scopes_come_back_in_canonical_order_and_unknown_ones_are_refused():
    assert check_scopes(["write:logs", "read:usage", "read:usage"], frozenset()) == ["read:usage", "write:logs"]
    with pytest.raises(Invalid) as error:
        check_scopes(["read:everything"], frozenset())
    assert error.value.code == "INVALID_SCOPES"


def test_a_privileged_scope_needs_its_permission_or_admin():
    for scope in ("usage:platform_wide", "read:audit", "read:ledger"):
        with pytest.raises(Forbidden):
            check_scopes([scope], frozenset())
        assert check_scopes([scope], frozenset({scope})) == [scope]
    assert check_scopes(list(SCOPES), frozenset({"admin"})) == list(SCOPES)
    assert check_scopes(["read:policies", "write:logs"], frozenset()) == ["read:policies", "write:logs"]


@pytest.mark.parametrize("days", [0, 3651])
def test_key_expiry_is_1_to_3650_days(days):
    with pytest.raises(Invalid):
        check_expiry_days(days)
    check_expiry_days(None)
    check_expiry_days(1)
    check_expiry_days(3650)


def test_emails_are_normalised_and_checked():
    assert normalize_email("  Ada@Acme.Test ") == "ada@acme.test"
    for bad in ("", "ada", "ada@acme", "a b@acme.test", "x" * 65 + "@acme.test"):
        with pytest.raises(Invalid):
            normalize_email(bad)


def test_permissions_are_deduplicated_and_unknown_ones_refused():
    assert check_permissions(["admin", "admin", "permission.billing.manage"]) == ["admin", "permission.billing.manage"]
    with pytest.raises(Invalid) as error:
        check_permissions(["root"])
    assert error.value.code == "INVALID_PERMISSIONS"


def test_ids_and_entities():
    assert check_id("org_id", "acme-prod.eu_1") == "acme-prod.eu_1"
    for bad in ("", "-acme", "a" * 65, "a/b"):
        with pytest.raises(Invalid):
            check_id("org_id", bad)
    check_entity("app", "sales-dashboard")
    with pytest.raises(Invalid):
        check_entity("robot", "r2")


def test_a_policy_gets_defaults_and_refusals_name_the_field():
    assert check_policy({"name": "No PII"}) == {
        "name": "No PII", "description": "", "category": "general", "action": "block", "enabled": True, "rules": {},
    }
    for definition, field in (
        ({"name": ""}, "name"),
        ({"name": "x", "category": "Not A Slug"}, "category"),
        ({"name": "x", "action": "explode"}, "action"),
        ({"name": "x", "enabled": "yes"}, "enabled"),
        ({"name": "x", "rules": ["a"]}, "rules"),
        ({"name": "x", "rules": {"a": "b" * 40000}}, "rules"),
    ):
        with pytest.raises(Invalid) as error:
            check_policy(definition)
        assert error.value.details["field"] == field
