"""Scale-out: one ledger per cluster, tenants routed to clusters by a small directory.

`LEDGER_CLUSTERS=a=postgresql://host1/ledger,b=postgresql://host2/ledger` names the
clusters (ledger/settings.py parses it). Each cluster is a whole deployment's database: its
own ledger (notification log, positions, hash chain, checkpoints signed with the one key),
its own read models and its own workers; `bootstrap` builds one Services per cluster.
Unset, there is one cluster named `default` at DATABASE_URL and nothing else changes.

The directory lives in the first cluster, in three tables beside its ledger:
- `cluster_directory`: tenant -> cluster (and `moving` while move-tenant switches it);
- `cluster_credentials`: client id / key id / user email / session hash -> tenant, so
  that a request is routed before it is authenticated (filled on first use by searching
  the clusters, so credentials created before the split are found too);
- `cluster_outbox`: platform-wide events (price and credit-rate overrides) that a
  cluster has not received yet; `deliver_outbox` retries them.

Placement of a new tenant: the explicit `cluster` given on create, else the cluster with
the fewest tenants in the directory (ties: the first named). A tenant that is not in the
directory lives in the first cluster (everything created before LEDGER_CLUSTERS was set).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Callable, Iterator

from sqlalchemy import (
    Boolean, Column, DateTime, Integer, MetaData, String, Table, Text, func, select, text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, TimeoutError as PoolTimeout

from ledger.errors import NotFound, Unavailable
from ledger.settings import Settings, parse_clusters
from projections.db import make_engine
from runtime.bootstrap import Services, bootstrap

DEFAULT_CLUSTER = "default"
RETRY_AFTER_SECONDS = 5
HEALTH_CACHE_SECONDS = 1.0
DOWN = (OperationalError, PoolTimeout, DBAPIError, Unavailable)

metadata = MetaData()
directory_tenants = Table(
    "cluster_directory", metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("cluster", String(32), nullable=False),
    Column("moving", Boolean, nullable=False, default=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
directory_credentials = Table(
    "cluster_credentials", metadata,
    Column("kind", String(16), primary_key=True),  # client | key | user | session
    Column("credential", String(256), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
)
# A write request of a tenant holds a lease here from before it reads the tenant's `moving`
# flag until it has answered, so move-tenant can wait until no write is in flight.
directory_writes = Table(
    "cluster_directory_writes",
    metadata,
    Column("lease_id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
)
STALE_WRITE_SECONDS = 600  # a lease older than this is of a process that died mid-request
outbox = Table(
    "cluster_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster", String(32), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
)


def cluster_urls(settings: Settings) -> list[tuple[str, str]]:
    """(name, database url) of every cluster, the directory's first."""
    if not settings.ledger_clusters:
        return [(DEFAULT_CLUSTER, settings.database_url)]
    return parse_clusters(settings.ledger_clusters)


def is_clustered(settings: Settings) -> bool:
    return bool(settings.ledger_clusters)


def cluster_settings(settings: Settings, name: str) -> Settings:
    """The settings of one cluster: the same everything, its own database."""
    urls = dict(cluster_urls(settings))
    if name not in urls:
        raise NotFound("CLUSTER_NOT_FOUND", f"No cluster named {name}; known: {', '.join(urls)}")
    return replace(settings, database_url=urls[name])


def chosen(settings: Settings, names: tuple[str, ...] = ()) -> list[str]:
    """The clusters a command serves: those named (checked), else all."""
    known = [name for name, _ in cluster_urls(settings)]
    for name in names:
        if name not in known:
            raise NotFound("CLUSTER_NOT_FOUND", f"No cluster named {name}; known: {', '.join(known)}")
    return [name for name in known if not names or name in names]


def session_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cluster_down(name: str) -> Unavailable:
    return Unavailable(
        "CLUSTER_UNAVAILABLE", f"The ledger cluster {name} is not reachable right now; retry shortly",
        cluster=name, retry_after=RETRY_AFTER_SECONDS,
    )


class Directory:
    """tenant -> cluster, credential -> tenant, and the platform outbox (first cluster)."""

    def __init__(self, engine, names: list[str], clock):
        self.engine = engine
        self.names = names
        self.clock = clock

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    def _read(self, query):
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).all()
        except DOWN:
            raise Unavailable(
                "DIRECTORY_UNAVAILABLE", "The cluster directory is not reachable right now",
                cluster=self.names[0], retry_after=RETRY_AFTER_SECONDS,
            ) from None

    def entry(self, tenant_id: str) -> tuple[str, bool] | None:
        rows = self._read(
            select(directory_tenants.c.cluster, directory_tenants.c.moving).where(directory_tenants.c.tenant_id == tenant_id)
        )
        return (rows[0][0], bool(rows[0][1])) if rows else None

    def cluster_of(self, tenant_id: str) -> str:
        entry = self.entry(tenant_id)
        return entry[0] if entry else self.names[0]

    def tenants(self) -> dict[str, str]:
        return {t: c for t, c in self._read(select(directory_tenants.c.tenant_id, directory_tenants.c.cluster))}

    def counts(self) -> dict[str, int]:
        counted = dict(self._read(
            select(directory_tenants.c.cluster, func.count()).group_by(directory_tenants.c.cluster)
        ))
        return {name: int(counted.get(name, 0)) for name in self.names}

    def place(self, explicit: str | None = None) -> str:
        """Where a new tenant goes: the explicit cluster, else the fewest tenants."""
        if explicit:
            if explicit not in self.names:
                raise NotFound("CLUSTER_NOT_FOUND", f"No cluster named {explicit}; known: {', '.join(self.names)}")
            return explicit
        counts = self.counts()
        return min(self.names, key=lambda name: (counts[name], self.names.index(name)))

    def assign(self, tenant_id: str, cluster: str, *, moving: bool = False) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            updated = conn.execute(
                directory_tenants.update().where(directory_tenants.c.tenant_id == tenant_id)
                .values(cluster=cluster, moving=moving, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(directory_tenants.insert().values(tenant_id=tenant_id, cluster=cluster, moving=moving, updated_at=now))

    def begin_write(self, tenant_id: str) -> str:
        """A lease for one write request of the tenant (taken before its `moving` flag is read)."""
        lease = uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                conn.execute(directory_writes.insert().values(lease_id=lease, tenant_id=tenant_id, started_at=func.now()))
        except DOWN:
            raise Unavailable(
                "DIRECTORY_UNAVAILABLE", "The cluster directory is not reachable right now",
                cluster=self.names[0], retry_after=RETRY_AFTER_SECONDS,
            ) from None
        return lease

    def end_write(self, lease: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(directory_writes.delete().where(directory_writes.c.lease_id == lease))

    def writes_in_flight(self, tenant_id: str) -> int:
        # the database's clock on both sides: API processes and the CLI may not share one
        since = func.now() - timedelta(seconds=STALE_WRITE_SECONDS)
        rows = self._read(
            select(func.count()).select_from(directory_writes)
            .where(directory_writes.c.tenant_id == tenant_id, directory_writes.c.started_at > since)
        )
        return int(rows[0][0])

    def set_moving(self, tenant_id: str, moving: bool) -> None:
        self.assign(tenant_id, self.cluster_of(tenant_id), moving=moving)

    def tenant_of(self, kind: str, credential: str) -> str | None:
        rows = self._read(
            select(directory_credentials.c.tenant_id)
            .where(directory_credentials.c.kind == kind, directory_credentials.c.credential == credential)
        )
        return rows[0][0] if rows else None

    def remember(self, kind: str, credential: str, tenant_id: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(directory_credentials.insert().values(kind=kind, credential=credential, tenant_id=tenant_id))
        except IntegrityError:
            pass  # another request remembered it first

    # the platform outbox --------------------------------------------------------------
    def enqueue(self, cluster: str, kind: str, payload: dict, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.insert().values(
                cluster=cluster, kind=kind, payload=json.dumps(payload), created_at=self.clock.now(),
                attempts=1, last_error=error[:500],
            ))

    def pending(self, cluster: str | None = None) -> list[tuple[int, str, str, dict]]:
        query = select(outbox.c.id, outbox.c.cluster, outbox.c.kind, outbox.c.payload).where(outbox.c.delivered_at.is_(None))
        if cluster:
            query = query.where(outbox.c.cluster == cluster)
        return [(i, c, k, json.loads(p)) for i, c, k, p in self._read(query.order_by(outbox.c.id))]

    def delivered(self, item_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == item_id).values(delivered_at=self.clock.now()))

    def failed(self, item_id: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                outbox.update().where(outbox.c.id == item_id)
                .values(attempts=outbox.c.attempts + 1, last_error=error[:500])
            )


@dataclass
class Answer:
    """A fan-out read: what the reachable clusters said, and the ones that did not answer."""

    by_cluster: dict
    missing: list[str]

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def flags(self) -> dict:
        return {"partial": self.partial, "missing_clusters": self.missing}


class Clusters:
    """Every cluster's Services (built on first use) and the directory."""

    def __init__(
        self, settings: Settings, *, writer: bool = False, pool_size: int | None = None,
        pool_timeout: float | None = None, first: Services | None = None,
    ):
        self.settings = settings
        self.urls = cluster_urls(settings)
        self.names = [name for name, _ in self.urls]
        self._options = dict(writer=writer, pool_size=pool_size, pool_timeout=pool_timeout)
        self._services: dict[str, Services] = {}
        self._owned: set[str] = set()
        if first is not None:
            self._services[self.names[0]] = first
        self._lock = threading.Lock()
        self._health: dict[str, tuple[float, bool]] = {}
        self.directory = Directory(self.services(self.names[0]).engine, self.names, settings.clock)

    @property
    def first(self) -> str:
        return self.names[0]

    def settings_for(self, name: str) -> Settings:
        return cluster_settings(self.settings, name)

    def services(self, name: str) -> Services:
        with self._lock:
            if name not in self._services:
                self._services[name] = bootstrap(self.settings_for(name), **self._options)
                self._owned.add(name)
            return self._services[name]

    def __iter__(self) -> Iterator[tuple[str, Services]]:
        for name in self.names:
            yield name, self.services(name)

    def reachable(self, name: str) -> bool:
        """A cheap `SELECT 1`, remembered for a second (answers never wait on a dead server)."""
        now = time.monotonic()
        seen = self._health.get(name)
        if seen and now - seen[0] < HEALTH_CACHE_SECONDS:
            return seen[1]
        try:
            with self.services(name).engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            up = True
        except DOWN:
            up = False
        self._health[name] = (now, up)
        return up

    def forget_health(self) -> None:
        self._health.clear()

    def require(self, name: str) -> Services:
        if not self.reachable(name):
            raise cluster_down(name)
        return self.services(name)

    def fan_out(self, read: Callable[[str, Services], object]) -> Answer:
        """`read` on every cluster; a cluster that is down is named in `missing`."""
        by_cluster: dict = {}
        missing: list[str] = []
        for name in self.names:
            if not self.reachable(name):
                missing.append(name)
                continue
            try:
                by_cluster[name] = read(name, self.services(name))
            except DOWN:
                self._health[name] = (time.monotonic(), False)
                missing.append(name)
        return Answer(by_cluster, missing)

    def close(self) -> None:
        for name in list(self._owned):
            self._services.pop(name).close()
        self._owned.clear()

    def __enter__(self) -> "Clusters":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def setup_clusters(settings: Settings) -> dict[str, list[str]]:
    """Create or migrate every cluster's ledger and read models, and the directory tables
    in the first; the read models rebuilt, by cluster."""
    from projections.registry import setup_database

    rebuilt = {name: setup_database(cluster_settings(settings, name)) for name, _ in cluster_urls(settings)}
    engine = make_engine(settings.database_url if not settings.ledger_clusters else cluster_urls(settings)[0][1], writer=True)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    return rebuilt


# platform-wide events ----------------------------------------------------------------
# Price and credit-rate overrides hold for every tenant, so every cluster's ledger records
# them, with the same effective_from. A cluster that is down gets an outbox row instead and
# `deliver_outbox` appends it when the cluster is back; appending one twice (a retry after
# an unrecorded success) changes no price book.

def apply_platform_event(services: Services, kind: str, payload: dict) -> int:
    """Append one platform-wide event to a cluster's ledger; its position there."""
    from datetime import datetime
    from decimal import Decimal

    def decimal(name: str):
        return None if payload.get(name) is None else Decimal(payload[name])

    effective_from = datetime.fromisoformat(payload["effective_from"])
    if kind == "model_price":
        return services.ledger.cost_controls.set_model_price(
            payload["provider"], payload["model"], decimal("input_per_1k"), decimal("output_per_1k"), effective_from,
            payload["actor"], decimal("cached_input_per_1m"), decimal("cache_write_input_per_1m"),
        )
    if kind == "credit_rate":
        position, _ = services.ledger.pricing.set_credit_rate(
            payload["resource_type"], decimal("credits_per_unit"), payload["actor"], effective_from
        )
        return position
    raise ValueError(f"unknown platform-wide event kind {kind!r}")


def replicate_platform_event(clusters: "Clusters", kind: str, payload: dict, done: str) -> dict[str, int | None]:
    """Append to every cluster but `done` (which already has it): position by cluster,
    None where it went to the outbox."""
    positions: dict[str, int | None] = {}
    for name in clusters.names:
        if name == done:
            continue
        try:
            if not clusters.reachable(name):
                raise cluster_down(name)
            positions[name] = apply_platform_event(clusters.services(name), kind, payload)
        except DOWN as error:
            clusters.directory.enqueue(name, kind, payload, str(error))
            positions[name] = None
    return positions


def deliver_outbox(clusters: "Clusters") -> dict[str, int]:
    """Append what each reachable cluster missed, oldest first; delivered count by cluster.
    One cluster's failure never holds the others'."""
    delivered: dict[str, int] = {}
    for item_id, name, kind, payload in clusters.directory.pending():
        if name in delivered and delivered[name] < 0:
            continue  # this cluster failed already in this round: keep its order
        try:
            if name not in clusters.names or not clusters.reachable(name):
                raise cluster_down(name)
            apply_platform_event(clusters.services(name), kind, payload)
        except DOWN as error:
            clusters.directory.failed(item_id, str(error))
            delivered[name] = -1
            continue
        clusters.directory.delivered(item_id)
        delivered[name] = delivered.get(name, 0) + 1
    return {name: max(count, 0) for name, count in delivered.items()}


def price_book(services: Services) -> set[tuple]:
    """Every price and credit-rate override a cluster's ledger holds (what makes its books)."""
    from ledger.pricing.events import CreditRateSet, ModelPriceSet
    from projections.pricing_queries import RATE_TOPICS

    book: set[tuple] = set()
    for recorded in services.store.read(0, None, RATE_TOPICS):
        e = recorded.event
        if isinstance(e, ModelPriceSet):
            book.add(("price", e.provider, e.model, str(e.input_per_1k), str(e.output_per_1k),
                      str(e.cached_input_per_1m), str(e.cache_write_input_per_1m), e.effective_from.isoformat()))
        elif isinstance(e, CreditRateSet) and not e.tenant_id:
            book.add(("credit_rate", e.resource_type, str(e.credits_per_unit), e.effective_from.isoformat()))
    return book


def check_price_books(clusters: "Clusters") -> dict:
    """Which clusters' price books differ from the first reachable one's (and which could
    not be read). `consistent` only when every cluster answered and all agree."""
    answer = clusters.fan_out(lambda _name, services: price_book(services))
    books = answer.by_cluster
    reference = next(iter(books.values()), set())
    differing = sorted(name for name, book in books.items() if book != reference)
    return {
        "consistent": not differing and not answer.partial,
        "differing": differing,
        "clusters": {
            name: {"overrides": len(book), "digest": hashlib.sha256(repr(sorted(book)).encode()).hexdigest()[:16]}
            for name, book in books.items()
        },
        "pending": len(clusters.directory.pending()),
        **answer.flags(),
    }
