"""Read-your-writes: reads wait (bounded) until the read models they read reflect what the
caller must see, and say which position they reflect (X-Ledger-Position).

What a read waits for is the highest of:
- an explicit `min_position` (query) or `X-Min-Ledger-Position` (header);
- session consistency (on by default; SESSION_CONSISTENCY=false switches it off): the
  highest position the calling principal (portal session, API key, agent client or admin
  key) appended, and the latest configuration change of its tenant and of the platform.
  A request that appends raises those marks (projections/consistency_marks.py), so every
  API process sees them; the ledger raises them in the append's own transaction
  (ledger/store.py `also_in_appends`), so an append and its marks commit together.
  Usage, heartbeats and corrections raise only the writer's own mark: no one waits for
  another principal's usage, and reads of the usage read models skip the configuration
  marks.

Commands that consult a read model (licence sync, the budget check, docs-access
ownership) wait the same way with `consult`. The wait is bounded (`read_wait_seconds`);
when it runs out the answer is 503 NOT_CAUGHT_UP with Retry-After. A `min_position`
beyond the ledger's head can never be reached and answers 422 POSITION_AHEAD_OF_LEDGER.
"""
from __future__ import annotations

import threading
from uuid import UUID

from flask import Flask, g, request

from api.services import services
from ledger.errors import Invalid, Unavailable
from ledger.store import also_in_appends, reset_also_in_appends
from projections.consistency_marks import (
    PLATFORM_CONFIGURATION,
    marks_of,
    raise_marks,
    raise_marks_statement,
    request_state,
    tenant_configuration,
)
from projections.framework import wait_for_positions

# Blueprints whose writes are usage (or its corrections, or heartbeats): only the writer
# waits for them. Every other write is a configuration change, seen tenant-wide.
USAGE_WRITES = frozenset({"events", "otlp", "litellm", "corrections", "nodes"})
# Configuration that is the same for every tenant. Admin-key writes name no tenant of
# their own, so they raise the platform mark as well.
PLATFORM_WRITES = frozenset({"pricing", "admin_pricing", "docs_access"})
# Sessions live in the ledger itself (api/auth.py): logging in or out needs no mark.
UNMARKED_WRITES = frozenset({"auth"})
# Budget holds are read from the ledger (their own streams; a reserve decides on the period
# streams, ledger/budgets/hold_commands.py), so placing, committing or releasing one needs no
# mark; with one, a client's concurrent reserves would each wait for the others' projection.
UNMARKED_ENDPOINTS = frozenset({"budgets.check_budgets", "budget_holds.commit_hold", "budget_holds.release_hold"})
# Read models of usage only: configuration changes do not show in them.
USAGE_READ_MODELS = frozenset({"usage_events", "usage_rollups"})
# Reads that wait for the read models, at once per process: beyond it a read answers 503
# (Retry-After) at once, so waiting reads never hold every worker thread.
MAX_CONCURRENT_WAITS = 4
_WAITS = threading.BoundedSemaphore(MAX_CONCURRENT_WAITS)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reflect(*projection_names: str) -> int:
    """Wait until the read models reflect what this request must see, then record the
    position this read reflects for the X-Ledger-Position header."""
    position = consult(*projection_names)
    g.ledger_position = position
    return position


def consult(*projection_names: str) -> int:
    """Wait (bounded) until the named read models have passed `wanted_position`; returns
    the lowest position among them."""
    svc = services()
    wanted = wanted_position(*projection_names)
    known = g.get("known_positions")
    if not wanted:
        return wait_for_positions(svc.reader, projection_names, 0, timeout=0, known=known)
    try:
        # there already: no wait slot
        return wait_for_positions(svc.reader, projection_names, wanted, timeout=0, known=known)
    except Unavailable:
        pass
    if not _WAITS.acquire(blocking=False):
        raise Unavailable("TOO_MANY_WAITS", "Too many reads are waiting for the read models here; retry shortly")
    try:
        return wait_for_positions(svc.reader, projection_names, wanted, timeout=svc.settings.read_wait_seconds)
    finally:
        _WAITS.release()


def wanted_position(*projection_names: str) -> int:
    """The position the named read models must have passed for this request."""
    explicit = _explicit_position()
    own, configuration = _marks()
    if USAGE_READ_MODELS.issuperset(projection_names):
        configuration = 0
    return max(explicit, own, configuration)


def appended(position: int) -> int:
    """This request appended up to `position`: answer with it, and make sure the caller's
    marks are raised to it so its next reads, through any API process, wait for it.
    Normally the append's own transaction raised them already (`_marks_in_append`); a
    position this request did not append itself (a duplicate's) is raised here, with one
    UPSERT."""
    g.ledger_position = position
    if g.get("marks_raised_to", 0) >= position:
        return position
    keys = _mark_keys()
    if not keys:
        return position
    with services().engine.begin() as conn:
        raise_marks(conn, keys, position)
    _forget_fetched_marks()
    return position


def _mark_keys() -> list[str]:
    """The marks a write of this request raises: the caller's own, and for a configuration
    change its tenant's (or the platform's). None when switched off, before the caller is
    authenticated, or for logging in and out."""
    principal = g.get("principal")
    if (
        principal is None
        or request.blueprint in UNMARKED_WRITES
        or request.endpoint in UNMARKED_ENDPOINTS
        or not services().settings.session_consistency
    ):
        return []
    keys = [principal.mark_key]
    if request.blueprint not in USAGE_WRITES:
        shared = principal.tenant_id and request.blueprint not in PLATFORM_WRITES
        keys.append(tenant_configuration(principal.tenant_id) if shared else PLATFORM_CONFIGURATION)
    return keys


def _marks_in_append(position: int, placeholder: str) -> list[tuple[str, list]]:
    """Run by the ledger in the transaction of each append a write request makes
    (`register`): the marks commit with the events, one lock and one commit."""
    keys = _mark_keys()
    if not keys:
        return []
    g.marks_raised_to = max(g.get("marks_raised_to", 0), position)
    _forget_fetched_marks()
    return [raise_marks_statement(keys, position, placeholder)]


def _forget_fetched_marks() -> None:
    """The marks this request read are older than the ones it just raised."""
    g.pop("consistency_marks", None)
    g.pop("prefetched_marks", None)


def _explicit_position() -> int:
    raw = request.args.get("min_position") or request.headers.get("X-Min-Ledger-Position") or "0"
    try:
        wanted = int(raw)
        if wanted < 0:
            raise ValueError
    except ValueError:
        raise Invalid("VALIDATION_FAILED", "min_position must be a non-negative integer", field="min_position") from None
    if wanted:
        head = services().store.max_position()
        if wanted > head:
            raise Invalid(
                "POSITION_AHEAD_OF_LEDGER",
                f"min_position {wanted} is beyond the ledger's last position {head}",
                field="min_position",
                head=head,
            )
    return wanted


def _marks() -> tuple[int, int]:
    """(the caller's own mark, its configuration mark), read once per request."""
    principal = g.get("principal")
    cached = g.get("consistency_marks")
    if cached is not None and cached[0] == principal:
        return cached[1]
    svc = services()
    prefetched = g.get("prefetched_marks")
    if prefetched is not None and principal is not None and prefetched[0] == (principal.mark_key, principal.tenant_id):
        found: tuple[int, int] = prefetched[1]
    elif not svc.settings.session_consistency or principal is None:
        found = (0, 0)
    else:
        configuration = [PLATFORM_CONFIGURATION]
        if principal.tenant_id:
            configuration.append(tenant_configuration(principal.tenant_id))
        with svc.reader.connect() as conn:
            marks = marks_of(conn, [principal.mark_key, *configuration])
        found = (marks.get(principal.mark_key, 0), max((marks.get(k, 0) for k in configuration), default=0))
    g.consistency_marks = (principal, found)
    return found


def prefetch(mark_key: str, tenant_id: str, stream: UUID | None) -> int | None:
    """Read, in one round trip, what an authenticated request will need: the caller's
    marks (as `_marks` would), every read model's position (so `consult` need not ask
    again when they suffice), and the version of the caller's credential stream, which
    is returned (api/auth.py: the credential cache is valid while it has not moved)."""
    svc = services()
    configuration = [PLATFORM_CONFIGURATION]
    if tenant_id:
        configuration.append(tenant_configuration(tenant_id))
    # a write of usage reads no read model: its marks are not fetched (were one read after
    # all, `_marks` would fetch them)
    usage_write = request.method not in _READ_METHODS and request.blueprint in USAGE_WRITES
    keys = [mark_key, *configuration] if svc.settings.session_consistency and not usage_write else []
    with svc.reader.connect() as conn:
        marks, positions, version = request_state(conn, keys, stream)
    g.known_positions = positions
    if keys:
        found = (marks.get(mark_key, 0), max((marks.get(k, 0) for k in configuration), default=0))
    elif usage_write:
        return version
    else:
        found = (0, 0)
    g.prefetched_marks = ((mark_key, tenant_id), found)
    return version


def register(app: Flask) -> None:
    @app.before_request
    def _raise_marks_with_appends():
        # reads never raise marks (an append a read makes, such as a key's use, is not the
        # caller's write); a write's appends made before it is authenticated raise none
        if request.method not in _READ_METHODS:
            g.also_in_appends = also_in_appends(_marks_in_append)

    @app.teardown_request
    def _stop_raising_marks(_error):
        token = g.pop("also_in_appends", None)
        if token is not None:
            reset_also_in_appends(token)

    @app.after_request
    def _position_header(response):
        position = g.get("ledger_position")
        if position is not None:
            response.headers["X-Ledger-Position"] = str(position)
        return response
