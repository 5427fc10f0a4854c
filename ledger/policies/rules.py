"""Policy rules: what a policy definition may hold. Pure functions and plain state."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from ledger.errors import Invalid
from ledger.usage.rules import json_depth

POLICY_ACTIONS = ("block", "warn", "redact", "log")
SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_POLICY_ID_LENGTH = 64
MAX_JSON_BYTES = 32 * 1024
MAX_RULES_DEPTH = 32


@dataclass(frozen=True)
class Policy:
    tenant_id: str
    org_id: str
    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]
    deleted: bool
    version: int

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "action": self.action,
            "enabled": self.enabled,
            "rules": self.rules,
        }


def check_policy(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with defaults filled in; 400 naming the first field that is wrong."""
    name = definition.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise Invalid("VALIDATION_FAILED", "name must be 1-200 characters", field="name")
    description = definition.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise Invalid("VALIDATION_FAILED", "description must be at most 2,000 characters", field="description")
    category = definition.get("category") or "general"
    if not isinstance(category, str) or not SLUG.match(category):
        raise Invalid("VALIDATION_FAILED", "category must be a lowercase slug", field="category")
    action = definition.get("action") or "block"
    if action not in POLICY_ACTIONS:
        raise Invalid("VALIDATION_FAILED", f"action must be one of {', '.join(POLICY_ACTIONS)}", field="action")
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("VALIDATION_FAILED", "enabled must be true or false", field="enabled")
    rules = definition.get("rules") or {}
    if not isinstance(rules, dict) or len(msgspec.json.encode(rules)) > MAX_JSON_BYTES:
        raise Invalid("VALIDATION_FAILED", "rules must be a JSON object of at most 32 KiB", field="rules")
    if json_depth(rules) > MAX_RULES_DEPTH:
        raise Invalid("VALIDATION_FAILED", f"rules must be nested at most {MAX_RULES_DEPTH} levels deep", field="rules")
    return {"name": name, "description": description, "category": category, "action": action, "enabled": enabled, "rules": rules}
