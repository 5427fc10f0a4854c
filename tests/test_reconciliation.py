"""Every output ties out to the nano-dollar: a generated mix of usage (many models, gauges,
unpriced models, tiny and huge costs, offsets, backdated times, voids, amendments and
price changes between posts) is read back through every usage output, and each equals the
exact Decimal sum of what was posted at the prices in force when it was posted. pandas and
DuckDB load every CSV with their default settings."""
from __future__ import annotations

import io
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas
from hypothesis import HealthCheck, Phase, given, settings as hyp_settings, strategies as st

from ledger.pricing.prices import ModelPrice, PriceBook
from tests.conftest import ADMIN_KEY

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
WINDOW = "start_date=2026-10-15&end_date=2026-11-20"
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "house-model", "secret-model"]
PROVIDER = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4": "anthropic", "house-model": "openai",
            "secret-model": "acme"}
OFFSETS = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
NANO = Decimal("0.000000001")
_tenants = itertools.count()

event = st.fixed_dictionaries({
    "model": st.sampled_from(MODELS),
    "prompt": st.integers(0, 200_000),
    "completion": st.integers(0, 50_000),
    "cost": st.one_of(st.none(), st.sampled_from(["0.000000001", "999999.999999999", "0.5", "12.345678912"])),
    "minutes_ago": st.integers(-4, 30 * 24 * 60),
    "offset": st.sampled_from(OFFSETS),
    "gauge": st.booleans(),
    "fate": st.sampled_from(["keep", "keep", "keep", "void", "amend"]),
})
batches = st.lists(st.tuples(st.lists(event, min_size=1, max_size=6), st.sampled_from([None, "1", "0.000001"])),
                   min_size=1, max_size=3)


def _admin(tenant: str) -> dict:
    return {"X-Admin-API-Key": ADMIN_KEY, "X-Tenant-ID": tenant, "X-Org-ID": "prod"}


@hyp_settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=batches)
def test_every_output_equals_the_exact_sum(h, plan):
    tenant = f"t{next(_tenants)}"  # examples share the database: their own tenant and model
    house = f"house-model-{tenant}"
    h.tenant(tenant)
    agent = h.agent(tenant, "prod")
    overrides: list[ModelPrice] = []
    expected: dict[str, Decimal] = {}
    tokens: dict[str, int] = {}
    counter = itertools.count()
    for events, new_price in plan:
        if new_price is not None:  # a price change between posts, in force for earlier times too
            body = {"provider": "openai", "model": house, "input_per_1k": new_price, "output_per_1k": new_price,
                    "effective_from": "2026-10-01T00:00:00Z"}
            assert h.admin("PUT", "/api/v1/admin/pricing", json=body).status_code == 200
            overrides.append(ModelPrice("openai", house, Decimal(new_price), Decimal(new_price),
                                        datetime(2026, 10, 1, tzinfo=timezone.utc), "override"))
        book = PriceBook(overrides)
        posted = []
        for e in events:
            model = house if e["model"] == "house-model" else e["model"]
            event_id = f"{tenant}-{next(counter)}"
            at = (NOW - timedelta(minutes=e["minutes_ago"], microseconds=next(counter))).astimezone(e["offset"])
            if e["gauge"]:
                body = {"event_id": event_id, "event_type": "storage", "resource_type": "app_storage",
                        "quantity": 1_000_000, "app_id": "a", "occurred_at": at.isoformat()}
                cost = Decimal(0)
            else:
                body = {"event_id": event_id, "event_type": "llm_request", "occurred_at": at.isoformat(),
                        "operation": "completion", "llm_provider": PROVIDER[e["model"]], "llm_model": model,
                        "prompt_tokens": e["prompt"], "completion_tokens": e["completion"]}
                if e["cost"] is not None:
                    body["cost_usd"] = e["cost"]
                    cost = Decimal(e["cost"])
                else:
                    price = book.price_for(PROVIDER[e["model"]], model, at)
                    cost = price.cost(e["prompt"], e["completion"]) if price else Decimal(0)
            posted.append((event_id, e, body))
            expected[event_id] = cost
            tokens[event_id] = 0 if e["gauge"] else e["prompt"] + e["completion"]
        assert h.post_events(agent, [b for _, _, b in posted]).status_code == 202
        for event_id, e, body in posted:
            if e["fate"] == "void":
                assert h.http.post(f"/api/v1/events/{event_id}/void", json={"reason": "r"}, headers=_admin(tenant)).status_code == 200
                del expected[event_id], tokens[event_id]
            elif e["fate"] == "amend" and not e["gauge"]:
                fields = {"cost_usd": "0.000000007"}
                assert h.http.post(f"/api/v1/events/{event_id}/amend", json={"fields": fields, "reason": "r"},
                                   headers=_admin(tenant)).status_code == 200
                expected[event_id] = Decimal("0.000000007")
    h.project()
    exact = sum(expected.values(), Decimal(0))
    nanos = int(exact / NANO)
    get = lambda path: h.http.get(path, headers=agent)  # noqa: E731

    summary = get(f"/api/v1/usage/summary?{WINDOW}").json
    assert (summary["estimated_cost_nanos"], summary["total_events"]) == (nanos, len(expected)), "summary"

    raw, cursor = [], ""
    while True:
        page = get(f"/api/v1/usage?granularity=raw&limit=1000&{WINDOW}{cursor}").json
        raw += page["data"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert {r["event_id"]: r["cost_nanos"] for r in raw} == {k: int(v / NANO) for k, v in expected.items()}
    assert all(len(r["occurred_at"]) == 27 and r["occurred_at"].endswith("Z") for r in raw)

    for granularity in ("hourly", "daily"):
        rows = get(f"/api/v1/usage?granularity={granularity}&{WINDOW}").json["data"]
        assert sum(r["estimated_cost_nanos"] for r in rows) == nanos, granularity

    records = get("/api/v1/usage/records?start=2026-10-15&end=2026-11-20&limit=1000").json["records"]
    assert sum(r["cost_nanos"] for r in records) == nanos, "records"
    totals = get("/api/v1/usage/breakdown?group_by=model&start=2026-10-15&end=2026-11-20").json["totals"]
    assert totals["events"] == len(expected)

    exact_tokens = sum(tokens.values())
    calls = len([k for k in expected if tokens.get(k) is not None and not _is_gauge(raw, k)])
    assert summary["total_tokens"] == exact_tokens, "summary tokens"
    assert sum(r["total_tokens"] for r in raw) == exact_tokens, "raw tokens"
    assert (totals["total_tokens"], totals["cost_nanos"]) == (exact_tokens, nanos), "breakdown"

    # credits: every raw row carries its credits (gauge readings what their level accrued),
    # and the credit report's total, its daily totals and its summary rows are that same sum
    raw_credits = sum(r["credits_nanos"] or 0 for r in raw)
    assert sum(r["credits_nanos"] or 0 for r in records) == raw_credits, "records credits"
    assert totals["credits_nanos"] == raw_credits, "breakdown credits (gauges included)"
    portal = h.portal_user(f"bill@{tenant}.test", permissions=("permission.billing.manage",), tenant_id=tenant)
    credit = portal.get("/api/usage?startDate=2026-10-15&endDate=2026-11-20").json
    assert credit["totalCreditsNanos"] == raw_credits, "/api/usage total"
    assert sum(r["totalCreditsNanos"] for r in credit["dailyTotals"]) == raw_credits, "/api/usage dailyTotals"
    assert sum(r["totalCreditsNanos"] for r in credit["usageSummary"]) == raw_credits, "/api/usage usageSummary"
    assert isinstance(credit["totalCredits"], float)

    # axon usage over the same days (the last 37 days: 2026-10-15 .. 2026-11-20)
    axon = get("/v1/axon/usage?days=37").json["data"]
    assert axon["range"] == {"start": "2026-10-15T00:00:00.000000Z", "end": "2026-11-21T00:00:00.000000Z"}
    assert (axon["totals"]["requests"], axon["totals"]["total_tokens"]) == (calls, exact_tokens), "axon"
    assert axon["totals"]["cost_nanos"] == nanos, "axon cost"

    # the export: the same events, the cost in exact cents
    export = get("/api/v1/export/usage?start=2026-10-15&end=2026-11-20").get_data(as_text=True)
    cents = pandas.read_csv(io.StringIO(export), dtype=str)["estimated_cost_cents"]
    assert len(cents) == len(expected), "export events"
    assert sum(Decimal(v) for v in cents) / 100 == exact, "export cost"
    if expected:
        frame = pandas.read_csv(io.StringIO(export))
        assert frame["estimated_cost_cents"].dtype.kind == "f" and frame["total_tokens"].dtype.kind == "i"
        assert pandas.to_datetime(frame["timestamp"]).notna().all()
        kinds = dict(zip(duckdb.read_csv(io.StringIO(export)).columns, [str(t) for t in duckdb.read_csv(io.StringIO(export)).types]))
        assert kinds["timestamp"].startswith("TIMESTAMP") and kinds["total_tokens"] in ("BIGINT", "INTEGER")
        for granularity in ("hourly", "daily"):
            aggregate = get(f"/api/v1/usage?granularity={granularity}&format=csv&{WINDOW}").get_data(as_text=True)
            frame = pandas.read_csv(io.StringIO(aggregate))
            assert frame["event_count"].dtype.kind == "i" and frame["estimated_cost_usd"].dtype.kind == "f"
            assert pandas.to_datetime(frame["time_bucket"]).notna().all()
            assert int(frame["event_count"].sum()) == len(expected)
            assert int(frame["estimated_cost_nanos"].sum()) == nanos, f"{granularity} CSV"
            table = duckdb.read_csv(io.StringIO(aggregate))
            kinds = dict(zip(table.columns, [str(t) for t in table.types]))
            assert kinds["time_bucket"].startswith("TIMESTAMP") and kinds["event_count"] in ("BIGINT", "INTEGER")

    text = get(f"/api/v1/usage?granularity=raw&format=csv&{WINDOW}").get_data(as_text=True)
    frame = pandas.read_csv(io.StringIO(text))
    assert len(frame) == len(expected)
    as_text = pandas.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert sum(Decimal(v) for v in as_text["cost_usd"]) == exact
    assert sum(int(Decimal(v) / NANO) for v in as_text["credits"] if v) == raw_credits, "raw CSV credits"
    # every row carries its credits (a gauge reading what its level accrued) but an unpriced
    # AI call's: its credits cannot be known (docs/api.md)
    for credits, unpriced in zip(as_text["credits"], as_text["unpriced"]):
        assert (credits == "") == (unpriced == "True"), "credits in every raw CSV row but an unpriced call's"
    if not expected:
        return  # no rows: nothing for pandas or DuckDB to infer
    assert frame["cost_usd"].dtype.kind == "f" and frame["prompt_tokens"].dtype.kind == "i"
    assert pandas.to_datetime(frame["occurred_at"]).notna().all()
    table = duckdb.read_csv(io.StringIO(text))
    assert table.aggregate("count(*)").fetchone()[0] == len(expected)
    kinds = dict(zip(table.columns, [str(t) for t in table.types]))
    assert kinds["occurred_at"].startswith("TIMESTAMP") and kinds["prompt_tokens"] in ("BIGINT", "INTEGER")


def _is_gauge(raw: list[dict], event_id: str) -> bool:
    return any(r["event_id"] == event_id and r["resource_type"] == "app_storage" for r in raw)
