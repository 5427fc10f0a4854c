"""Moving a tenant to another ledger cluster (`usage-ledger move-tenant TENANT --to NAME`).

1. Copy: the tenant's events are read from the source ledger in position order and
   appended to the target's, as stored (same streams, versions and bytes, so an idempotent
   retry of an acknowledged event is still a duplicate there), with new positions. Ingest
   goes on meanwhile; the copy is repeated until it has (nearly) caught up.
2. Switch: the directory marks the tenant `moving`: from then on its writes answer 503
   TENANT_MOVING with Retry-After (reads go on, from the source). Every write holds a lease
   in the directory from before it reads that flag until it has answered; once no lease of
   the tenant is left (every write that passed the check has committed or failed), the
   last events are copied. A write still in flight after `--grace` seconds aborts the move.
3. Verify: the tenant's events by type are counted on both sides; they must be equal.
4. The directory points at the target; a TenantMoved event is appended on both sides. The
   source keeps its sealed history (and its read models, until they are rebuilt).
A failure before step 4 clears `moving` and leaves the tenant where it was; a retry resumes
after what the failed attempt copied.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from eventsourcing.persistence import StoredEvent

from ledger.errors import Conflict, NotFound
from ledger.identity.events import TenantMoved
from ledger.store import LedgerStore, NewEvent, decode_notification, stream_id
from runtime.clusters import Clusters

WINDOW = 5000
CATCH_UP_ROUNDS = 5
NEARLY_CAUGHT_UP = 200  # events copied in a round below which the switch starts
ACTOR = "admin:move-tenant"


@dataclass
class MoveReport:
    tenant_id: str
    from_cluster: str
    to_cluster: str
    events_copied: int
    source_through: int
    totals: dict[str, int]
    writes_refused_seconds: float

    def as_json(self) -> dict:
        return dict(self.__dict__)


def tenant_events(store: LedgerStore, tenant_id: str, after: int, stop: int):
    """The stored rows of one tenant's events in (after, stop], in position order."""
    position = after
    while position < stop:
        until = min(stop, position + WINDOW)
        for row in store.read_window(position, until):
            if decode_notification(row).event.tenant_id == tenant_id:
                yield row
        position = until


def tenant_totals(store: LedgerStore, tenant_id: str) -> Counter:
    head = store.max_position()
    return Counter(
        row.topic for row in tenant_events(store, tenant_id, 0, head) if row.topic != TenantMoved.__name__
    )


def _copy(source: LedgerStore, target: LedgerStore, tenant_id: str, after: int) -> tuple[int, int]:
    """Copy the tenant's events after `after` up to the source's head: (copied, head)."""
    head = source.max_position()
    batch: list[StoredEvent] = []
    copied = 0
    for row in tenant_events(source, tenant_id, after, head):
        stream = row.originator_id if isinstance(row.originator_id, uuid.UUID) else uuid.UUID(row.originator_id)
        batch.append(StoredEvent(stream, row.originator_version, row.topic, bytes(row.state)))
        if len(batch) >= 500:
            target.recorder.insert_events(batch)
            copied += len(batch)
            batch = []
    if batch:
        target.recorder.insert_events(batch)
        copied += len(batch)
    return copied, head


def _key(row) -> tuple[str, int]:
    return str(row.originator_id).replace("-", ""), row.originator_version


def _resume_point(source: LedgerStore, target: LedgerStore, tenant_id: str, to: str) -> int:
    """Where the copy starts: 0 for a target that holds none of the tenant's events; after
    what an earlier, aborted move copied (the target then holds exactly the tenant's first
    events of the source, in order), so a move can be retried; else TENANT_IN_TARGET."""
    held = [r for r in tenant_events(target, tenant_id, 0, target.max_position()) if r.topic != TenantMoved.__name__]
    if not held:
        return 0
    copied = iter(tenant_events(source, tenant_id, 0, source.max_position()))
    through = 0
    for row in held:
        original = next(copied, None)
        if original is None or _key(original) != _key(row) or bytes(original.state) != bytes(row.state):
            raise Conflict("TENANT_IN_TARGET", f"Cluster {to} already holds other events of tenant {tenant_id}")
        through = original.id
    return through


def _wait_for_writes(directory, tenant_id: str, timeout: float) -> None:
    """Until no write of the tenant that passed the directory check is in flight (their
    leases, runtime/clusters.py); MOVE_WRITES_IN_FLIGHT when some outlast `timeout`."""
    deadline = time.monotonic() + timeout
    while directory.writes_in_flight(tenant_id):
        if time.monotonic() >= deadline:
            raise Conflict(
                "MOVE_WRITES_IN_FLIGHT", f"Writes of tenant {tenant_id} are still in flight after {timeout} s; retry the move",
            )
        time.sleep(0.05)


def move_tenant(
    clusters: Clusters, tenant_id: str, to: str, *, grace_seconds: float = 10.0,
    progress: Callable[[str], None] = lambda _: None,
) -> MoveReport:
    directory = clusters.directory
    if to not in clusters.names:
        raise NotFound("CLUSTER_NOT_FOUND", f"No cluster named {to}; known: {', '.join(clusters.names)}")
    source_name = directory.cluster_of(tenant_id)
    if source_name == to:
        raise Conflict("TENANT_ALREADY_THERE", f"Tenant {tenant_id} is already on cluster {to}")
    source = clusters.require(source_name)
    target = clusters.require(to)
    if not any(True for _ in tenant_events(source.store, tenant_id, 0, source.store.max_position())):
        raise NotFound("TENANT_NOT_FOUND", f"Tenant {tenant_id} has no events on cluster {source_name}")
    resumed = _resume_point(source.store, target.store, tenant_id, to)
    copied, through = _copy(source.store, target.store, tenant_id, resumed)
    progress(f"copied {copied} events through source position {through}")
    for _ in range(CATCH_UP_ROUNDS):
        more, through = _copy(source.store, target.store, tenant_id, through)
        copied += more
        if more < NEARLY_CAUGHT_UP:
            break

    directory.assign(tenant_id, source_name, moving=True)
    refused_at = time.monotonic()
    try:
        _wait_for_writes(directory, tenant_id, grace_seconds)  # writes that passed the check before the flag
        more, through = _copy(source.store, target.store, tenant_id, through)
        copied += more
        progress(f"switch: copied the last {more} events through source position {through}")
        before, after = tenant_totals(source.store, tenant_id), tenant_totals(target.store, tenant_id)
        if before != after:
            raise Conflict(
                "MOVE_TOTALS_DIFFER", f"Tenant {tenant_id}: the copy does not match the source",
                source=dict(before), target=dict(after),
            )
        now = clusters.settings.clock.now()
        for services in (source, target):
            moved = TenantMoved(
                tenant_id=tenant_id, recorded_at=now, actor=ACTOR, from_cluster=source_name, to_cluster=to,
                events_copied=copied, source_through=through,
            )
            services.store.append([NewEvent(stream_id("tenant-move", tenant_id, uuid.uuid4().hex), 1, moved)])
        directory.assign(tenant_id, to, moving=False)
    except BaseException:
        directory.assign(tenant_id, source_name, moving=False)
        raise
    return MoveReport(
        tenant_id, source_name, to, copied, through, dict(sorted(before.items())),
        round(time.monotonic() - refused_at, 3),
    )
