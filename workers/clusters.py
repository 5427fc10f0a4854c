"""`usage-ledger work` with LEDGER_CLUSTERS: the projectors and jobs of every cluster (or
of those named with --cluster), one `run_workers` per cluster in this process. Each
cluster's advisory locks live in its own database, so two worker processes split each
cluster's projections between them exactly as with one cluster. Beside them, the platform
outbox job appends price and credit-rate overrides to clusters that missed them."""
from __future__ import annotations

import logging
import signal
import threading

from ledger.settings import Settings
from runtime.clusters import Clusters, chosen, cluster_settings, deliver_outbox
from workers.projector import run_workers

log = logging.getLogger("usage_ledger.worker")
OUTBOX_INTERVAL_SECONDS = 5.0


def run_cluster_workers(settings: Settings, names: tuple[str, ...] = (), stop: threading.Event | None = None) -> None:
    """Every chosen cluster's workers until SIGTERM/SIGINT (or `stop`)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    threads = [
        threading.Thread(
            target=_serve_cluster, args=(name, cluster_settings(settings, name), stop),
            name=f"cluster-{name}", daemon=True,
        )
        for name in chosen(settings, names)
    ]
    for thread in threads:
        thread.start()
    with Clusters(settings, writer=True) as every:
        while not stop.is_set():
            deliver_platform_events(every)
            stop.wait(OUTBOX_INTERVAL_SECONDS)
    for thread in threads:
        thread.join(timeout=60)


def deliver_platform_events(every: Clusters) -> None:
    """The outbox job: price and credit-rate overrides a cluster missed while it was down."""
    try:
        delivered = deliver_outbox(every)
    except Exception:  # the directory's cluster is down: try again next round
        log.exception("platform outbox: delivery failed")
        return
    if any(delivered.values()):
        log.info("platform outbox delivered", extra={"fields": {"delivered": delivered}})


def _serve_cluster(name: str, settings: Settings, stop: threading.Event) -> None:
    """One cluster's workers; a cluster that is down is retried until it is back."""
    while not stop.is_set():
        try:
            run_workers(settings, stop=stop)
        except Exception:  # a dead server at start: the others keep working
            log.exception("cluster %s: workers stopped; restarting in 5 s", name)
            stop.wait(5)
