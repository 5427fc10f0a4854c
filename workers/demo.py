"""A realistic demo data set: two tenants, several orgs, clients, models and months of usage,
plus what the dashboard shows: a portal admin, a licence, node heartbeats and budgets."""
from __future__ import annotations

import random
from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from datetime import datetime, timedelta, timezone
from typing import Callable

import msgspec

from ledger.actor import Actor
from ledger.application import Ledger
from ledger.budgets.rules import period_bounds
from ledger.errors import Conflict, Invalid
from ledger.licensing.rules import LicenseTerms
from ledger.settings import Settings
from ledger.usage.rules import UsageIn
from runtime.bootstrap import bootstrap

DEMO_CLIENT_ID = "demo-agent"
DEMO_CLIENT_SECRET = "demo-secret-change-me"
DEMO_USER_EMAIL = "admin@acme.example"
DEMO_USER_PASSWORD = "demo-password-change-me"
DEMO_USER_PERMISSIONS = ["admin", "permission.billing.manage", "permission.tenant.superuser", "usage:platform_wide"]
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
    if days < 0 or events_per_day < 0:
        raise Invalid("INVALID_DEMO_SIZE", "days and events per day must be 0 or more")
    services = bootstrap(replace(settings, backdating_days=days + 2))
    store, ledger = services.store, services.ledger
    try:
        for tenant_id, name, orgs in (
            ("acme", "Acme Corp", (("acme-prod", "Production"), ("acme-research", "Research"))),
            ("globex", "Globex", (("globex-main", "Main"),)),
        ):
            _ignore_existing(lambda: ledger.identity.create_tenant(tenant_id, name, "system:demo"))
            for org_id, org_name in orgs:
                _ignore_existing(lambda: ledger.identity.create_org(tenant_id, org_id, org_name, "system:demo"))
        if ledger.identity.find_client(DEMO_CLIENT_ID) is None:
            ledger.identity.register_client("acme", "acme-prod", "Demo agent", "system:demo",
                                   client_id=DEMO_CLIENT_ID, secret=DEMO_CLIENT_SECRET)
        if ledger.identity.find_client("globex-agent") is None:
            ledger.identity.register_client(
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
        month_start = period_bounds("monthly", settings.clock.now())[0]
        prices = ledger.price_book()
        month_spend: dict[str, Decimal] = {}  # acme-prod's spend this month per agent, for the demo budgets
        for tenant_id, org_id, client_id, scale in streams:
            actor = Actor(tenant_id, org_id, f"client:{client_id}", client_id)
            batch: list[dict] = []
            for day in range(days, -1, -1):
                for i in range(int(events_per_day * scale)):
                    moment = now - timedelta(days=day, minutes=rng.randrange(0, 24 * 60))
                    if moment > settings.clock.now():
                        continue
                    event = _demo_event(rng, f"demo-{org_id}-{day}-{i}", moment)
                    batch.append(event)
                    if org_id == "acme-prod" and moment >= month_start:
                        cost = _cost(prices, event, moment)
                        month_spend[event["agent_id"]] = month_spend.get(event["agent_id"], Decimal(0)) + cost
                    if len(batch) == 1000:
                        ledger.usage.record(actor, msgspec.convert(batch, list[UsageIn]))
                        done += len(batch)
                        batch = []
                        if progress:
                            progress(min(done, total), total)
            if batch:
                ledger.usage.record(actor, msgspec.convert(batch, list[UsageIn]))
                done += len(batch)
        if progress:  # events planned for later today are skipped: the plan is done
            progress(total, total)
        _demo_credits(ledger, settings, days)
        _demo_portal(ledger, settings, month_spend)
        return {
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "portal_user": DEMO_USER_EMAIL,
            "portal_password": DEMO_USER_PASSWORD,
            "position": store.max_position(),
        }
    finally:
        services.close()


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
    """Names for the demo apps and users, daily storage levels and agent runs."""
    for (kind, entity_id), (name, owner, display) in ENTITY_NAMES.items():
        _ignore_existing(lambda: ledger.identity.register_entity(
            "acme", entity_id, kind, name, "system:demo",
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
        ledger.usage.record(actor, msgspec.convert(events[start:start + 1000], list[UsageIn]))


def _cost(prices, event: dict, moment: datetime) -> Decimal:
    """What ingest will price this event at (the same default price book)."""
    price = prices.price_for(event.get("llm_provider"), event.get("llm_model"), moment)
    if price is None:
        return Decimal(0)
    return price.cost(event.get("prompt_tokens", 0), event.get("completion_tokens", 0))


def _demo_portal(ledger: Ledger, settings: Settings, month_spend: dict[str, Decimal]) -> None:
    """What the dashboard shows beyond usage: a portal admin to log in with, acme-prod's
    licence, its nodes' heartbeats, and budgets in each state (ok, warning, exceeded).
    Each is created only when missing, so running the demo again adds nothing twice."""
    if ledger.identity.find_user(DEMO_USER_EMAIL) is None:
        ledger.identity.create_user("acme", "acme-prod", DEMO_USER_EMAIL, DEMO_USER_PASSWORD, DEMO_USER_PERMISSIONS, "system:demo")
    licence = ledger.licensing.find_license("acme", "acme-prod")
    if licence is None or not licence.active:
        expires = (settings.clock.now() + timedelta(days=365)).replace(hour=0, minute=0, second=0, microsecond=0)
        ledger.licensing.issue_license(
            "acme", "acme-prod", LicenseTerms("Enterprise", 10, expires, credits_included=Decimal(250_000)), "system:demo"
        )
    actor = Actor("acme", "acme-prod", f"client:{DEMO_CLIENT_ID}", DEMO_CLIENT_ID)
    nodes = [(f"agent-{n:02d}", "agent") for n in range(1, 7)] + [("orchestrator-01", "orchestrator")]
    for instance_id, instance_type in nodes:  # active for NODE_ACTIVE_WINDOW_SECONDS after loading
        ledger.licensing.record_heartbeat(
            actor, instance_id, instance_type, hostname=f"{instance_id}.acme.internal", port=8080,
            host_info={"os": "linux", "version": "1.4.2"},
        )
    # Limits follow this month's demo spend, so that each budget shows its state (ok,
    # warning at 85 %, exceeded at 125 %) on whatever day the demo is loaded.
    def spent(agent: str) -> Decimal:
        return month_spend.get(agent, Decimal(0))

    org_total = sum(month_spend.values(), Decimal(0))
    budgets = (
        {"budget_id": "acme-prod-monthly", "name": "Production monthly", "scope": "organization",
         "limit_usd": max(Decimal(10), (org_total * 2 / 10).to_integral_value(ROUND_CEILING) * 10),
         "period": "monthly", "on_exceed": "warn"},
        {"budget_id": "support-bot-monthly", "name": "Support bot monthly", "scope": "agent", "scope_id": "support-bot",
         "limit_usd": _cents(spent("support-bot") * Decimal("0.8"), ROUND_FLOOR), "period": "monthly", "on_exceed": "warn"},
        {"budget_id": "code-reviewer-monthly", "name": "Code reviewer monthly", "scope": "agent",
         "scope_id": "code-reviewer", "limit_usd": _cents(spent("code-reviewer") / Decimal("0.85"), ROUND_CEILING),
         "period": "monthly", "on_exceed": "warn"},
        {"budget_id": "sales-dashboard-credits", "name": "Sales Dashboard credits", "scope": "app",
         "scope_id": "sales-dashboard", "unit": "credits", "limit_credits": Decimal(5_000), "period": "monthly",
         "on_exceed": "warn"},
    )
    for terms in budgets:
        budget, _ = ledger.cost_controls.find_budget("acme", terms["budget_id"])
        if budget is None:
            ledger.cost_controls.create_budget(actor, "system:demo", terms)


def _cents(amount: Decimal, rounding: str) -> Decimal:
    """A limit in whole cents, never below one cent."""
    return max(amount.quantize(Decimal("0.01"), rounding=rounding), Decimal("0.01"))
