"""A realistic demo data set: two tenants, several orgs, clients, models and months of usage."""
from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable

import msgspec

from ledger.application import Actor, Ledger
from ledger.errors import Conflict
from ledger.settings import Settings
from ledger.store import LedgerStore

DEMO_CLIENT_ID = "demo-agent"
DEMO_CLIENT_SECRET = "demo-secret-change-me"
MODELS = (
    ("openai", "gpt-4o", 900, 300),
    ("openai", "gpt-4o-mini", 1200, 400),
    ("anthropic", "claude-sonnet-4", 1500, 500),
    ("google", "gemini-2.5-flash", 800, 250),
    ("axon", "axon-sovereign-1", 1100, 350),
    ("axon", "axon-embed-1", 400, 0),
    ("acme", "in-house-llm", 500, 200),  # not in the price table: shows up as unpriced
)
TEAMS = ("engineering", "support", "sales")
AGENTS = ("support-bot", "code-reviewer", "sales-assistant", "research-agent")
USERS = ("jdoe", "asmith", "mlopez", "kchen")
APPS = ("sales-dashboard", "support-console", "data-pipeline")


def load_demo(
    settings: Settings, days: int = 90, events_per_day: int = 150, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Append the demo data set; returns the demo credentials. Safe to run twice."""
    store = LedgerStore(settings.database_url)
    ledger = Ledger(store, replace(settings, backdating_days=days + 2))
    try:
        for tenant_id, name, orgs in (
            ("acme", "Acme Corp", (("acme-prod", "Production"), ("acme-research", "Research"))),
            ("globex", "Globex", (("globex-main", "Main"),)),
        ):
            _ignore_existing(lambda: ledger.create_tenant(tenant_id, name, "system:demo"))
            for org_id, org_name in orgs:
                _ignore_existing(lambda: ledger.create_org(tenant_id, org_id, org_name, "system:demo"))
        if ledger.find_client(DEMO_CLIENT_ID) is None:
            ledger.register_client("acme", "acme-prod", "Demo agent", "system:demo",
                                   client_id=DEMO_CLIENT_ID, secret=DEMO_CLIENT_SECRET)
        if ledger.find_client("globex-agent") is None:
            ledger.register_client(
                "globex", "globex-main", "Globex agent", "system:demo", client_id="globex-agent", secret="globex-secret"
            )
        rng = random.Random(42)
        now = settings.clock.now().replace(minute=0, second=0, microsecond=0)
        streams = (
            ("acme", "acme-prod", DEMO_CLIENT_ID, 1.0),
            ("acme", "acme-research", DEMO_CLIENT_ID, 0.3),
            ("globex", "globex-main", "globex-agent", 0.5),
        )
        total = sum(int(events_per_day * scale) for *_, scale in streams) * (days + 1)
        done = 0
        for tenant_id, org_id, client_id, scale in streams:
            actor = Actor(tenant_id, org_id, f"client:{client_id}", client_id)
            batch: list[dict] = []
            for day in range(days, -1, -1):
                for i in range(int(events_per_day * scale)):
                    moment = now - timedelta(days=day, minutes=rng.randrange(0, 24 * 60))
                    if moment > settings.clock.now():
                        continue
                    batch.append(_demo_event(rng, f"demo-{org_id}-{day}-{i}", moment))
                    if len(batch) == 1000:
                        ledger.record_usage(actor, msgspec.json.encode({"events": batch}))
                        done += len(batch)
                        batch = []
                        if progress:
                            progress(min(done, total), total)
            if batch:
                ledger.record_usage(actor, msgspec.json.encode({"events": batch}))
                done += len(batch)
        _demo_credits(ledger, settings, days)
        return {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "position": store.max_position()}
    finally:
        store.close()


def _demo_event(rng: random.Random, event_id: str, moment: datetime) -> dict:
    kind = rng.random()
    base = {
        "event_id": event_id,
        "occurred_at": moment.astimezone(timezone.utc).isoformat(),
        "instance_id": f"agent-{rng.randrange(1, 7):02d}",
        "instance_type": "agent",
        "team_id": rng.choice(TEAMS),
        "agent_id": rng.choice(AGENTS),
        "user_id": rng.choice(USERS),
        "app_id": rng.choice(APPS),
        "policies_evaluated": rng.randrange(0, 5),
        "policy_violations": 1 if rng.random() < 0.03 else 0,
    }
    status = 200 if rng.random() > 0.04 else rng.choice((429, 500, 503))
    if kind < 0.35:
        return {**base, "event_type": "api_call", "http_method": "POST", "http_path": "/mcp/tools/call",
                "http_status_code": status, "latency_ms": rng.randrange(20, 400)}
    provider, model, prompt, completion = rng.choice(MODELS)
    operation = "embedding" if completion == 0 else rng.choice(("completion", "completion", "rag_query"))
    return {
        **base,
        "event_type": "llm_request",
        "operation": operation,
        "llm_provider": provider,
        "llm_model": model,
        "prompt_tokens": rng.randrange(prompt // 4, prompt * 2),
        "completion_tokens": rng.randrange(completion // 4, completion * 2) if completion else 0,
        "latency_ms": rng.randrange(300, 4000),
        "http_status_code": status,
        "knowledge_base_id": "kb-handbook" if operation == "rag_query" else None,
    }


def _ignore_existing(create: Callable[[], int]) -> None:
    try:
        create()
    except Conflict:
        pass


ENTITY_NAMES = {
    ("app", "sales-dashboard"): ("Sales Dashboard", "jdoe", None),
    ("app", "support-console"): ("Support Console", "asmith", None),
    ("app", "data-pipeline"): ("Data Pipeline", "mlopez", None),
    ("user", "jdoe"): ("jdoe", None, "Jane Doe"),
    ("user", "asmith"): ("asmith", None, "Alex Smith"),
    ("user", "mlopez"): ("mlopez", None, "Maria Lopez"),
    ("user", "kchen"): ("kchen", None, "Kai Chen"),
}


def _demo_credits(ledger: Ledger, settings: Settings, days: int) -> None:
    """Names for the demo apps and users, daily storage levels and agent runs (seed 003)."""
    from ledger.credits import register_entity

    for (kind, entity_id), (name, owner, display) in ENTITY_NAMES.items():
        _ignore_existing(lambda: register_entity(
            ledger, "acme", entity_id, kind, name, "system:demo",
            slug=entity_id if kind == "app" else None, owner_id=owner, display_name=display,
        ))
    rng = random.Random(7)
    now = settings.clock.now().replace(minute=0, second=0, microsecond=0)
    actor = Actor("acme", "acme-prod", f"client:{DEMO_CLIENT_ID}", DEMO_CLIENT_ID)
    events = []
    for day in range(days, -1, -1):
        moment = (now - timedelta(days=day)).replace(hour=0)
        for index, app in enumerate(APPS):
            events.append({
                "event_id": f"demo-storage-{app}-{day}", "event_type": "storage_level", "resource_type": "app_storage",
                "occurred_at": moment.isoformat(), "app_id": app,
                "quantity": (index + 1) * 2 * 10**9 + rng.randrange(0, 10**9),
            })
        for i in range(rng.randrange(2, 6)):
            events.append({
                "event_id": f"demo-run-{day}-{i}", "event_type": "agent_run", "resource_type": "agent_run",
                "occurred_at": (moment + timedelta(hours=rng.randrange(0, 24))).isoformat(),
                "agent_id": rng.choice(AGENTS), "app_id": rng.choice(APPS),
            })
    events = [e for e in events if datetime.fromisoformat(e["occurred_at"]) <= settings.clock.now()]
    for start in range(0, len(events), 1000):
        ledger.record_usage(actor, msgspec.json.encode({"events": events[start:start + 1000]}))
