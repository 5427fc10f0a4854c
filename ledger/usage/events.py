"""Usage events (stored topic = class name; never rename one)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from ledger.events import LedgerEvent


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The facts of one metered usage event, as accepted at ingest."""

    event_id: str
    occurred_at: datetime
    event_type: str
    client_id: str = ""
    operation: str | None = None
    resource_type: str | None = None
    quantity: Decimal | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    app_id: str | None = None
    knowledge_base_id: str | None = None
    http_method: str | None = None
    http_path: str | None = None
    http_status_code: int | None = None
    llm_provider: str | None = None
    llm_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: int | None = None
    cost_usd: Decimal = Decimal(0)
    unpriced: bool = False
    credits: Decimal | None = None
    policies_evaluated: int = 0
    policy_violations: int = 0
    success: bool = True
    metadata: dict[str, Any] | None = None
    body_sha256: str = ""
    reported_cost_usd: Decimal | None = None  # the cost an upstream gateway reported (not used for budgets)
    cached_prompt_tokens: int = 0  # cache reads, part of prompt_tokens
    cache_creation_tokens: int = 0  # cache writes, part of prompt_tokens
    reasoning_tokens: int = 0  # part of completion_tokens
    hold_id: str | None = None  # the budget hold this usage commits


class UsageRecorded(LedgerEvent, frozen=True):
    usage: Usage


class UsageVoided(LedgerEvent, frozen=True):
    event_id: str
    reason: str
    voided: Usage


class UsageAmended(LedgerEvent, frozen=True):
    event_id: str
    reason: str
    fields: dict[str, Any]
    previous: Usage
    current: Usage

