"""Configuration, read from environment variables only (documented in README.md)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ledger.clock import SystemClock

DEFAULT_DATABASE_URL = "sqlite:///./usage-ledger.db"
POSTGRES_SCHEMES = ("postgresql:", "postgres:", "postgresql+")
DATABASE_SCHEMES = (*POSTGRES_SCHEMES, "sqlite:")


class SettingsError(ValueError):
    """An environment variable the service cannot use; the message names it."""


def _number(env: dict[str, str], name: str, default: float, kind: type = float, minimum: float = 0) -> Any:
    """A numeric variable (unset or blank: the default), at least `minimum`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise SettingsError(f"{name} must be a {'whole number' if kind is int else 'number'}, got {raw!r}")
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _whole(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    return _number(env, name, default, int, minimum)


@dataclass
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_api_key: str | None = None
    deployment_mode: str = "saas"
    secret_pepper: str = "usage-ledger-default-pepper"
    backdating_days: int = 35
    read_wait_seconds: float = 2.0
    session_consistency: bool = True  # every principal reads its own writes with no header
    node_active_window_seconds: int = 300
    projector_batch_size: int = 5000
    projector_poll_seconds: float = 0.05
    db_pool_size: int = 5
    db_pool_timeout: float = 5.0
    # tamper evidence (ledger/chain/hashes.py): the private key lives outside the database
    ledger_signing_key_file: str | None = None
    ledger_public_key_file: str | None = None
    ledger_checkpoint_every: int = 10_000
    ledger_checkpoint_minutes: float = 5.0
    # axon audit retention, SIEM forwarding, License Manager sync
    audit_retention_days: int = 365
    siem_url: str | None = None
    siem_interval_seconds: float = 10.0
    license_manager_url: str | None = None
    license_manager_token: str | None = None
    license_sync_interval_seconds: float = 3600.0
    # budgets: the pre-flight check's cache and the alert webhooks
    budget_check_cache_seconds: float = 0.5
    budget_webhook_connect_timeout_seconds: float = 3.0  # at most 3
    budget_webhook_timeout_seconds: float = 10.0  # a whole delivery, at most 10
    budget_webhook_concurrency: int = 8  # deliveries in flight at once
    budget_webhook_per_tenant: int = 2  # of which one tenant's, at most
    webhook_allow_private_addresses: bool = False  # development only: loopback and private targets
    budget_webhook_max_attempts: int = 8
    budget_webhook_backoff_seconds: float = 30.0
    budget_alerts_interval_seconds: float = 5.0
    debug: bool = False  # the command line shows tracebacks of unexpected errors
    clock: Any = field(default_factory=SystemClock)
    # portal: sessions and docs access
    session_ttl_hours: float = 12.0
    session_cookie_secure: bool | None = None  # None: Secure when the request came over HTTPS
    cf_api_token: str | None = None
    cf_account_id: str | None = None
    cf_access_group_id: str | None = None
    cf_api_base_url: str = "https://api.cloudflare.com/client/v4"
    cf_api_timeout_seconds: float = 10.0
    # security: proxies whose X-Forwarded-For is believed, the /metrics bearer token
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str | None = None
    # scale-out (runtime/clusters.py): "name=url,name=url"; None is one cluster at database_url
    ledger_clusters: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        env = dict(os.environ if env is None else env)
        mode = env.get("DEPLOYMENT_MODE", "saas").strip().lower()
        values: dict[str, Any] = dict(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            admin_api_key=env.get("ADMIN_API_KEY") or None,
            deployment_mode=mode if mode in ("saas", "invpc") else "saas",
            secret_pepper=env.get("SECRET_PEPPER") or cls.secret_pepper,
            backdating_days=_whole(env, "BACKDATING_WINDOW_DAYS", cls.backdating_days, 0),
            read_wait_seconds=_number(env, "READ_WAIT_SECONDS", cls.read_wait_seconds),
            session_consistency=(env.get("SESSION_CONSISTENCY") or "true").strip().lower() not in ("false", "0", "no", "off"),
            node_active_window_seconds=_whole(env, "NODE_ACTIVE_WINDOW_SECONDS", cls.node_active_window_seconds),
            projector_batch_size=_whole(env, "PROJECTOR_BATCH_SIZE", cls.projector_batch_size),
            projector_poll_seconds=_number(env, "PROJECTOR_POLL_SECONDS", cls.projector_poll_seconds),
            db_pool_size=_whole(env, "DB_POOL_SIZE", cls.db_pool_size),
            db_pool_timeout=_number(env, "DB_POOL_TIMEOUT", cls.db_pool_timeout),
            ledger_signing_key_file=env.get("LEDGER_SIGNING_KEY_FILE") or None,
            ledger_public_key_file=env.get("LEDGER_PUBLIC_KEY_FILE") or None,
            ledger_checkpoint_every=_whole(env, "LEDGER_CHECKPOINT_EVERY", cls.ledger_checkpoint_every),
            ledger_checkpoint_minutes=_number(env, "LEDGER_CHECKPOINT_MINUTES", cls.ledger_checkpoint_minutes),
            audit_retention_days=_whole(env, "AUDIT_RETENTION_DAYS", cls.audit_retention_days),
            siem_url=env.get("SIEM_URL") or None,
            siem_interval_seconds=_number(env, "SIEM_INTERVAL_SECONDS", cls.siem_interval_seconds),
            license_manager_url=env.get("LICENSE_MANAGER_URL") or None,
            license_manager_token=env.get("LICENSE_MANAGER_TOKEN") or None,
            license_sync_interval_seconds=_number(env, "LICENSE_SYNC_INTERVAL_SECONDS", cls.license_sync_interval_seconds),
            debug=cls.debug_requested(env),
        )
        values.update(_portal_settings(env))
        values.update(_budget_settings(env))
        values.update(_security_settings(env))
        values.update(_cluster_settings(env))
        values.update(overrides)
        if not values["database_url"].startswith(DATABASE_SCHEMES):
            raise SettingsError(f"DATABASE_URL must start with postgresql:// or sqlite:///, got {values['database_url'].split(':', 1)[0]!r}")
        return cls(**values)

    @staticmethod
    def debug_requested(env: dict[str, str] | None = None) -> bool:
        """USAGE_LEDGER_DEBUG, readable even when other variables are broken."""
        value = (os.environ if env is None else env).get("USAGE_LEDGER_DEBUG") or ""
        return value.strip().lower() in ("1", "true", "yes")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(POSTGRES_SCHEMES)


def _portal_settings(env: dict[str, str]) -> dict[str, Any]:
    secure = (env.get("SESSION_COOKIE_SECURE") or "").strip().lower()
    return dict(
        session_ttl_hours=_number(env, "SESSION_TTL_HOURS", Settings.session_ttl_hours),
        session_cookie_secure={"true": True, "1": True, "false": False, "0": False}.get(secure),
        cf_api_token=env.get("CF_API_TOKEN") or None,
        cf_account_id=env.get("CF_ACCOUNT_ID") or None,
        cf_access_group_id=env.get("CF_ACCESS_GROUP_ID") or None,
        cf_api_base_url=(env.get("CF_API_BASE_URL") or Settings.cf_api_base_url).rstrip("/"),
        cf_api_timeout_seconds=_number(env, "CF_API_TIMEOUT_SECONDS", Settings.cf_api_timeout_seconds),
    )


def _budget_settings(env: dict[str, str]) -> dict[str, Any]:
    return dict(
        budget_check_cache_seconds=_number(env, "BUDGET_CHECK_CACHE_SECONDS", Settings.budget_check_cache_seconds),
        budget_webhook_connect_timeout_seconds=min(3.0, _number(
            env, "BUDGET_WEBHOOK_CONNECT_TIMEOUT_SECONDS", Settings.budget_webhook_connect_timeout_seconds
        )),
        budget_webhook_timeout_seconds=min(10.0, _number(
            env, "BUDGET_WEBHOOK_TIMEOUT_SECONDS", Settings.budget_webhook_timeout_seconds
        )),
        budget_webhook_concurrency=_whole(env, "BUDGET_WEBHOOK_CONCURRENCY", Settings.budget_webhook_concurrency),
        budget_webhook_per_tenant=_whole(env, "BUDGET_WEBHOOK_PER_TENANT", Settings.budget_webhook_per_tenant),
        webhook_allow_private_addresses=(env.get("WEBHOOK_ALLOW_PRIVATE_ADDRESSES") or "").strip().lower()
        in ("1", "true", "yes"),
        budget_webhook_max_attempts=_whole(env, "BUDGET_WEBHOOK_MAX_ATTEMPTS", Settings.budget_webhook_max_attempts),
        budget_webhook_backoff_seconds=_number(env, "BUDGET_WEBHOOK_BACKOFF_SECONDS", Settings.budget_webhook_backoff_seconds),
        budget_alerts_interval_seconds=_number(env, "BUDGET_ALERTS_INTERVAL_SECONDS", Settings.budget_alerts_interval_seconds),
    )


def _security_settings(env: dict[str, str]) -> dict[str, Any]:
    proxies = tuple(p.strip() for p in (env.get("TRUSTED_PROXIES") or "").split(",") if p.strip())
    return dict(trusted_proxies=proxies, metrics_token=env.get("METRICS_TOKEN") or None)


def _cluster_settings(env: dict[str, str]) -> dict[str, Any]:
    """LEDGER_CLUSTERS names the clusters; the first one is the default (it holds the
    directory), so DATABASE_URL becomes its URL. Unset: one cluster at DATABASE_URL."""
    value = (env.get("LEDGER_CLUSTERS") or "").strip()
    if not value:
        return {}
    first = parse_clusters(value)[0][1]
    return dict(ledger_clusters=value, database_url=first)


_CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def parse_clusters(value: str) -> list[tuple[str, str]]:
    """`a=postgresql://host/db1,b=postgresql://host/db2` -> [(name, url), ...] in order.
    Names: lower-case letter first, then letters, digits, - or _ (at most 32)."""
    clusters: list[tuple[str, str]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not _CLUSTER_NAME.match(name) or not url:
            raise SettingsError(f"LEDGER_CLUSTERS: expected name=url, got {item!r}")
        if not url.startswith(DATABASE_SCHEMES):
            raise SettingsError(f"LEDGER_CLUSTERS: cluster {name} has an unsupported URL scheme")
        if any(name == known for known, _ in clusters):
            raise SettingsError(f"LEDGER_CLUSTERS: cluster {name} is named twice")
        clusters.append((name, url))
    if not clusters:
        raise SettingsError("LEDGER_CLUSTERS names no cluster")
    return clusters
