"""Periodic jobs of the worker process (APScheduler): webhooks, syncs, forwarding, retention.

Each job is a plain function `run(settings)` that does one pass and returns; the scheduler
calls it every `seconds`. On PostgreSQL a job runs only in the worker that holds its
advisory lock, so several worker processes never run the same job at once. A job catches
and logs its own errors so one bad pass never stops the scheduler.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from ledger.settings import Settings
from workers.leadership import Leadership

log = logging.getLogger("usage_ledger.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    seconds: float
    run: Callable[[Settings], object]


def all_jobs(settings: Settings) -> list[Job]:
    """Every periodic job. Each capability adds its own line here."""
    from workers import alerts, checkpoints, hold_expiry, license_sync, marks, retention, siem

    jobs: list[Job] = []
    jobs.append(Job("ledger-checkpoint", checkpoints.CHECK_SECONDS, checkpoints.run))
    jobs.append(Job("budget_alerts", settings.budget_alerts_interval_seconds, alerts.run))
    jobs.append(Job("budget-hold-expiry", hold_expiry.SECONDS, hold_expiry.run))
    jobs.append(Job("audit-retention", 3600, retention.run))
    jobs.append(Job("consistency-marks-prune", marks.SECONDS, marks.run))
    if settings.siem_url:
        jobs.append(Job("siem-forward", settings.siem_interval_seconds, siem.run))
    if settings.license_manager_url:
        jobs.append(Job("license-sync", settings.license_sync_interval_seconds, license_sync.run))
    return jobs


def start_scheduler(settings: Settings, jobs: list[Job]) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    for job in jobs:
        leadership = Leadership(settings, f"job:{job.name}")
        guard = threading.Lock()

        def tick(job=job, leadership=leadership, guard=guard) -> None:
            if not guard.acquire(blocking=False):
                return
            try:
                if leadership.acquire():
                    job.run(settings)
            except Exception:
                log.exception("job failed", extra={"fields": {"job": job.name}})
            finally:
                guard.release()

        scheduler.add_job(tick, "interval", seconds=job.seconds, id=job.name, max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
