"""Budget hold commands: reserve, commit, release and expire, appended to the ledger.

Streams:
- the hold's own stream (`hold_stream(tenant, hold_id)`): version 1 is `BudgetHoldPlaced`,
  version 2 the one settlement (committed, released or expired), so a hold settles once
  however many callers, usage events and workers race for it;
- one stream per (budget incarnation, period) (`period_stream`): each version is a
  `BudgetPeriodHolds` carrying the holds that count now. Its version is the concurrency
  token: a reserve reads the last version n, decides, and appends at n+1 together with the
  hold's version 1 in one transaction; when another writer got there first the append
  conflicts and the reserve decides again on fresh state. The reserves and settlements of a
  process waiting on the same streams are decided and appended together (`PeriodTurns`,
  group commit), and between processes they queue on an advisory lock per stream.

Recorded spend comes from the budget_status read model (a `SpendSource`) at a known
position P; a committed hold listed in a period stream counts at its actual amount unless the
read model counted its commit at or before P, so a commit is never counted neither as spend
nor as a hold (docs/architecture.md, "How it works: budget holds").
"""
from __future__ import annotations

import random
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Collection, Protocol, Sequence
from uuid import UUID, uuid4

from ledger.budgets.events import (
    BudgetHoldCommitted,
    BudgetHoldExpired,
    BudgetHoldPlaced,
    BudgetHoldReleased,
    BudgetPeriodHolds,
    HeldAmount,
    PeriodHold,
)
from ledger.budgets.holds import PeriodState, actual_of, counts, expiry, fingerprint
from ledger.budgets.rules import BudgetUse, Decision, Estimate, as_utc, decide
from ledger.errors import Conflict, NotFound, Unavailable
from ledger.store import NewEvent, StreamConflict, stream_id

if TYPE_CHECKING:
    from ledger.actor import Actor
    from ledger.journal import Journal
    from ledger.usage.events import Usage

ATTEMPTS = 200
# The leaders of one process (`PeriodTurns`) whose stream sets overlap without being equal
# take turns on these locks (striped by stream) instead of racing each other to the append
# and retrying; the optimistic append stays what decides, so the invariant is unchanged.
_STRIPES = [threading.Lock() for _ in range(64)]
RETRY = object()  # a turn's outcome when it must read again and decide anew


@contextmanager
def _turn_on(streams: Sequence[UUID]):
    """Hold the stripes of these streams (in one order, so two callers never deadlock)."""
    with ExitStack() as stack:
        for index in sorted({s.int % len(_STRIPES) for s in streams}):
            stack.enter_context(_STRIPES[index])
        yield


class _Turn:
    """A reserve or a settlement waiting to be decided on a set of period streams."""

    def __init__(self, decide: "Callable[[dict[UUID, PeriodState], _Batch], Change | Reserved | object]"):
        self.decide = decide
        self.outcome: object = RETRY
        self.error: BaseException | None = None
        self.done = False


@dataclass(frozen=True)
class Change:
    """What a turn appends (`events`), the period states after it, and its answer (its
    position is filled in after the append)."""

    events: list[NewEvent]
    states: dict[UUID, PeriodState]
    outcome: "Reserved | Settled"


class _Batch:
    """What the turns of one group commit share: the commits the read model counted, asked
    once for every committed hold listed in the states the batch began from."""

    def __init__(self, states: dict[UUID, PeriodState]):
        self.listed = {h.hold_id for state in states.values() for h in state.committed}
        self._counted: dict[str, int] | None = None

    def counted(self, source: "SpendSource", hold_ids: Collection[str], position: int) -> set[str]:
        """Of these committed holds, those the read model counted at or before `position`
        (a hold committed within the batch is not counted yet)."""
        if not hold_ids:
            return set()
        if self._counted is None:
            self._counted = source.committed(self.listed) if self.listed else {}
        return {i for i in hold_ids if self._counted.get(i, position + 1) <= position}


class PeriodTurns:
    """Group commit on period streams. Every reserve and settlement of this process waiting
    for the same streams joins one group; whoever gets the group's turn first leads: it
    reads the streams once, lets each waiting turn decide in order on the state the turns
    before it left, and appends all their events in one transaction; the others find their
    answers when their turn comes. Between processes a leader holds the streams
    (`Journal.exclusive`) from its read to its append; the append's expected versions still
    decide, so a lost race (with a writer that did not ask for them) is read again."""

    def __init__(self, journal: "Journal"):
        self.journal = journal
        self._lock = threading.Lock()
        self._waiting: dict[tuple[UUID, ...], list[_Turn]] = {}
        # one lead at a time per stream set; striped, so the locks stay as many however many
        # budgets and periods a long-running process meets (a shared stripe only waits longer)
        self._leaders = [threading.Lock() for _ in range(256)]

    def take(self, streams: Sequence[UUID], decide) -> object:
        """The outcome of `decide` on the streams' current states: its Reserved or Settled
        answer, or RETRY when it must read again."""
        key = tuple(sorted(set(streams)))
        turn = _Turn(decide)
        with self._lock:
            self._waiting.setdefault(key, []).append(turn)
        leader = self._leaders[hash(key) % len(self._leaders)]
        with leader:
            if not turn.done:
                with self._lock:
                    batch = self._waiting.pop(key)
                try:
                    self._lead(key, batch)
                except Exception as error:  # the read failed (the database is down): every turn's answer
                    for waiting in batch:
                        waiting.error = waiting.error or error
                finally:
                    for waiting in batch:
                        waiting.done = True
        if turn.error is not None:
            raise turn.error
        return turn.outcome

    def _lead(self, key: tuple[UUID, ...], turns: list[_Turn]) -> None:
        with _turn_on(key), self.journal.exclusive(key) as last:
            states = {s: PeriodState.of(last[s].event, last[s].version) if s in last else PeriodState() for s in key}  # type: ignore[arg-type]
            shared, events, changed, taken = _Batch(states), [], [], set()
            for turn in turns:
                try:
                    change = turn.decide(states, shared)
                except Exception as error:  # noqa: BLE001 - the error is that turn's answer
                    turn.error = error
                    continue
                if not isinstance(change, Change):
                    turn.outcome = change
                    continue
                slots = {(e.stream_id, e.version) for e in change.events}
                if slots & taken:  # the same hold twice in one batch: the second reads again
                    continue
                taken |= slots
                states.update(change.states)
                changed.append((turn, change, len(events)))
                events.extend(change.events)
            if not events:
                return
            try:
                positions = self.journal.append(events)
            except StreamConflict:
                return  # every changing turn stays RETRY
            except Exception as error:
                for turn, _, _ in changed:
                    turn.error = error
                return
        for turn, change, start in changed:
            turn.outcome = replace(change.outcome, position=max(positions[start:start + len(change.events)]))


SCOPE_FIELDS = ("team_id", "agent_id", "workflow_id", "user_id", "app_id")


def hold_stream(tenant_id: str, hold_id: str) -> UUID:
    return stream_id("budget-hold", tenant_id, hold_id)


def period_stream(tenant_id: str, budget_id: str, incarnation: str, period: str, period_start: datetime) -> UUID:
    return stream_id("budget-holds", tenant_id, budget_id, incarnation, period, as_utc(period_start).isoformat())


def held_stream(tenant_id: str, held: HeldAmount) -> UUID:
    return period_stream(tenant_id, held.budget_id, held.incarnation, held.period, held.period_start)


@dataclass(frozen=True)
class HoldTarget:
    """A budget a request falls under: its terms and recorded spend (`use.used`), its period."""

    use: BudgetUse
    period: str
    period_start: datetime
    incarnation: str


@dataclass(frozen=True)
class Fresh:
    """The budgets a request falls under with their recorded spend, read in one statement
    from the read model at `position`."""

    targets: Sequence[HoldTarget]
    position: int


class SpendSource(Protocol):
    """What the budget_status read model tells a reserve."""

    def targets(self) -> Fresh: ...

    def committed(self, hold_ids: Collection[str]) -> dict[str, int]:
        """Of these holds, the committed ones the read model knows, with the position of
        their commit."""
        ...


@dataclass(frozen=True)
class ReserveRequest:
    org_id: str
    estimated_cost_usd: Decimal | None
    estimated_credits: Decimal | None
    ttl_seconds: int
    hold_id: str | None = None
    team_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    app_id: str | None = None

    def digest(self) -> str:
        fields = {k: getattr(self, k) for k in ("org_id", "estimated_cost_usd", "estimated_credits", "ttl_seconds", *SCOPE_FIELDS)}
        return fingerprint(fields)


@dataclass(frozen=True)
class Reserved:
    """The decision; with `placed` when a hold was placed (or had been, for a repeated id)."""

    decision: Decision
    uses: tuple[BudgetUse, ...] = ()
    placed: BudgetHoldPlaced | None = None
    position: int = 0


@dataclass(frozen=True)
class Settled:
    placed: BudgetHoldPlaced
    settlement: BudgetHoldCommitted | BudgetHoldReleased | BudgetHoldExpired | None
    position: int = 0


class BudgetHolds:
    def __init__(self, journal: "Journal"):
        self.journal = journal
        self.turns = PeriodTurns(journal)

    # reading ---------------------------------------------------------------------------
    def find(self, tenant_id: str, hold_id: str) -> Settled | None:
        events = self.journal.stream(hold_stream(tenant_id, hold_id))
        if not events:
            return None
        settlement = events[1].event if len(events) > 1 else None
        return Settled(events[0].event, settlement)  # type: ignore[arg-type]

    def require(self, tenant_id: str, hold_id: str) -> Settled:
        found = self.find(tenant_id, hold_id)
        if found is None:
            raise NotFound("HOLD_NOT_FOUND", f"Hold {hold_id} not found")
        return found

    def _states(self, streams: Sequence[UUID]) -> list[PeriodState]:
        """The current state of each period stream (one read for all of them)."""
        last = self.journal.last_events(streams)
        return [PeriodState.of(last[s].event, last[s].version) if s in last else PeriodState() for s in streams]  # type: ignore[arg-type]

    # reserve ---------------------------------------------------------------------------
    def reserve(self, actor: "Actor", request: ReserveRequest, source: SpendSource) -> Reserved:
        """Place a hold on every budget the request falls under, or refuse (no hold)."""
        hold_id = request.hold_id or str(uuid4())
        digest = request.digest()
        estimate = Estimate(usd=request.estimated_cost_usd or 0, credits=request.estimated_credits or 0)
        for attempt in range(ATTEMPTS):
            existing = self.find(actor.tenant_id, hold_id) if request.hold_id else None
            if existing is not None:
                if existing.placed.fingerprint != digest:
                    raise Conflict("HOLD_ID_CONFLICT", f"Hold {hold_id} was placed with a different request")
                return Reserved(Decision(allowed=True, action=None), placed=existing.placed)
            # fresh every attempt: another reserve may have pruned commits that its newer
            # read of spend included, so an older spend read would miss them
            fresh = source.targets()
            now = self.journal.now
            # only block budgets refuse: they are decided on their period streams; warn and
            # downgrade budgets are held too, and answer from the read model's holds
            guarded = [t for t in fresh.targets if t.use.on_exceed == "block"]
            streams = [period_stream(actor.tenant_id, t.use.budget_id, t.incarnation, t.period, t.period_start) for t in guarded]

            def decide(states: dict[UUID, PeriodState], batch: _Batch, fresh=fresh, now=now, guarded=guarded, streams=streams):
                return self._decide_reserve(actor, request, source, hold_id, digest, estimate, fresh, now, guarded, streams, states, batch)

            outcome = self.turns.take(streams, decide)
            if outcome is RETRY:  # another writer got there first: read again
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
                continue
            return outcome  # type: ignore[return-value]
        raise Unavailable("HOLD_CONTENDED", "Too many concurrent reserves on the same budget; retry")

    def _decide_reserve(
        self, actor: "Actor", request: ReserveRequest, source: SpendSource, hold_id: str, digest: str, estimate: Estimate,
        fresh: "Fresh", now: datetime, guarded: list, streams: list[UUID], current: dict[UUID, PeriodState], batch: _Batch,
    ) -> Change | Reserved | object:
        """One reserve on the period streams' current states: the Change that places the
        hold, a refusal, or RETRY."""
        states = [(t, current[s]) for t, s in zip(guarded, streams)]
        if any(s.spend_position > fresh.position for _, s in states):
            return RETRY  # another reserve dropped commits that our spend does not include yet: read again
        # commits the read model counted at `position` are in the recorded spend already
        counted = batch.counted(source, {h.hold_id for _, s in states for h in s.committed}, fresh.position)
        held = {t.use.budget_id: s.held(now) + s.pending(counted) for t, s in states}
        uses = tuple(replace(t.use, held=held[t.use.budget_id]) if t.use.budget_id in held else t.use for t in fresh.targets)
        decision = decide(uses, estimate)
        if not decision.allowed:
            return Reserved(decision, uses)
        expires_at = expiry(now, request.ttl_seconds)
        holds = tuple(
            HeldAmount(budget_id=t.use.budget_id, unit=t.use.unit, amount=Decimal(estimate.of(t.use.unit)),
                       period=t.period, period_start=as_utc(t.period_start), incarnation=t.incarnation,
                       guarded=t.use.budget_id in held)
            for t in fresh.targets
        )
        placed = BudgetHoldPlaced(
            tenant_id=actor.tenant_id, org_id=request.org_id, recorded_at=now, actor=actor.name, hold_id=hold_id,
            holds=holds, expires_at=expires_at, ttl_seconds=request.ttl_seconds, fingerprint=digest,
            estimated_cost_usd=request.estimated_cost_usd, estimated_credits=request.estimated_credits,
            action=decision.action, downgrade_model=decision.downgrade_model, client_id=actor.client_id,
            **{k: getattr(request, k) for k in SCOPE_FIELDS},
        )
        events = [NewEvent(hold_stream(actor.tenant_id, hold_id), 1, placed)]
        after = {}
        for amount, stream, (_, state) in zip([h for h in holds if h.guarded], streams, states):
            changed = state.pruned(now, counted, fresh.position).placed(PeriodHold(hold_id=hold_id, amount=amount.amount, expires_at=expires_at))
            events.append(self._period_event(placed, amount, changed, state.version, "placed"))
            after[stream] = replace(changed, version=state.version + 1)
        return Change(events, after, Reserved(decision, uses, placed))

    # settle ----------------------------------------------------------------------------
    def commit(
        self, actor: "Actor", hold_id: str, actual_cost_usd: Decimal | None, actual_credits: Decimal | None,
        event_id: str | None = None,
    ) -> Settled:
        """Commit at the actual cost (the commit is the spend); exactly once."""

        def settle(placed: BudgetHoldPlaced, now: datetime) -> BudgetHoldCommitted:
            return BudgetHoldCommitted(
                tenant_id=placed.tenant_id, org_id=placed.org_id, recorded_at=now, actor=actor.name, hold_id=hold_id,
                via="call", holds=placed.holds, occurred_at=now, actual_cost_usd=actual_cost_usd,
                actual_credits=actual_credits, event_id=event_id, **{k: getattr(placed, k) for k in SCOPE_FIELDS},
            )

        return self._settle(actor.tenant_id, hold_id, settle)

    def release(self, actor: "Actor", hold_id: str) -> Settled:
        def settle(placed: BudgetHoldPlaced, now: datetime) -> BudgetHoldReleased:
            return BudgetHoldReleased(
                tenant_id=placed.tenant_id, org_id=placed.org_id, recorded_at=now, actor=actor.name, hold_id=hold_id,
                holds=placed.holds,
            )

        return self._settle(actor.tenant_id, hold_id, settle)

    def expire(self, tenant_id: str, hold_id: str, actor: str) -> Settled:
        """Record the expiry of a hold past its expiry (the expiry job)."""

        def settle(placed: BudgetHoldPlaced, now: datetime) -> BudgetHoldExpired:
            return BudgetHoldExpired(
                tenant_id=placed.tenant_id, org_id=placed.org_id, recorded_at=now, actor=actor, hold_id=hold_id,
                holds=placed.holds, expires_at=placed.expires_at,
            )

        return self._settle(tenant_id, hold_id, settle, expiring=True)

    def _settle(self, tenant_id: str, hold_id: str, make: Callable, expiring: bool = False) -> Settled:
        for attempt in range(ATTEMPTS):
            found = self.require(tenant_id, hold_id)
            now = self.journal.now
            if found.settlement is not None or counts(found.placed.expires_at, now) == expiring:
                return found  # settled already, or (not) expired yet: the caller judges
            settlement = make(found.placed, now)
            streams = [held_stream(tenant_id, held) for held in found.placed.holds if held.guarded]

            def decide(states: dict[UUID, PeriodState], batch: _Batch, placed=found.placed, settlement=settlement, now=now, streams=streams):
                events, after = self._settlement_change(placed, settlement, now, [states[s] for s in streams])
                return Change(events, dict(zip(streams, after)), Settled(placed, settlement))

            outcome = self.turns.take(streams, decide)
            if outcome is RETRY:
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
                continue
            return outcome  # type: ignore[return-value]
        raise Unavailable("HOLD_CONTENDED", "Too many concurrent changes on the same budget; retry")

    def settlement_events(self, placed: BudgetHoldPlaced, settlement, now: datetime) -> list[NewEvent]:
        """Version 2 of the hold and the next version of each of its period streams."""
        guarded = [held for held in placed.holds if held.guarded]
        states = self._states([held_stream(placed.tenant_id, held) for held in guarded])
        return self._settlement_change(placed, settlement, now, states)[0]

    def _settlement_change(
        self, placed: BudgetHoldPlaced, settlement, now: datetime, states: Sequence[PeriodState],
    ) -> tuple[list[NewEvent], list[PeriodState]]:
        """The settlement's events on these states of its period streams, and the states after."""
        events = [NewEvent(hold_stream(placed.tenant_id, placed.hold_id), 2, settlement)]
        change = {BudgetHoldCommitted: "committed", BudgetHoldReleased: "released", BudgetHoldExpired: "expired"}[type(settlement)]
        after = []
        for held, state in zip([held for held in placed.holds if held.guarded], states):
            actual = actual_of(settlement, held) if change == "committed" else None
            changed = state.pruned(now, ()).settled(placed.hold_id, actual)
            events.append(self._period_event(settlement, held, changed, state.version, change))
            after.append(replace(changed, version=state.version + 1))
        return events, after

    def usage_commit(self, tenant_id: str, usage: "Usage", hold_id: str, actor: str, now: datetime) -> list[NewEvent]:
        """The events that commit a held hold with a usage event carrying its id (appended
        by ingest with the usage, in one transaction); none when the hold is not held."""
        found = self.find(tenant_id, hold_id)
        if found is None or found.settlement is not None or not counts(found.placed.expires_at, now):
            return []
        placed = found.placed
        settlement = BudgetHoldCommitted(
            tenant_id=tenant_id, org_id=placed.org_id, recorded_at=now, actor=actor, hold_id=hold_id, via="usage",
            holds=placed.holds, occurred_at=usage.occurred_at, actual_cost_usd=usage.cost_usd,
            actual_credits=usage.credits, event_id=usage.event_id, **{k: getattr(placed, k) for k in SCOPE_FIELDS},
        )
        return self.settlement_events(placed, settlement, now)

    @staticmethod
    def _period_event(event, held: HeldAmount, state: PeriodState, version: int, change: str) -> NewEvent:
        return NewEvent(
            held_stream(event.tenant_id, held),
            version + 1,
            BudgetPeriodHolds(
                tenant_id=event.tenant_id, org_id=event.org_id, recorded_at=event.recorded_at, actor=event.actor,
                budget_id=held.budget_id, period=held.period, period_start=held.period_start, hold_id=event.hold_id,
                change=change, outstanding=state.outstanding, committed=state.committed,
                spend_position=state.spend_position,
            ),
        )

