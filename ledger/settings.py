"""Configuration, read from environment variables only (documented in README.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ledger.clock import SystemClock

DEFAULT_DATABASE_URL = "sqlite:///./usage-ledger.db"


@dataclass
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_api_key: str | None = None
    deployment_mode: str = "saas"
    secret_pepper: str = "usage-ledger-default-pepper"
    backdating_days: int = 35
    read_wait_seconds: float = 2.0
    node_active_window_seconds: int = 300
    projector_batch_size: int = 1000
    projector_poll_seconds: float = 0.05
    db_pool_size: int = 5
    db_pool_timeout: float = 5.0
    # tamper evidence (ledger/chain.py): the private key lives outside the database
    ledger_signing_key_file: str | None = None
    ledger_public_key_file: str | None = None
    ledger_checkpoint_every: int = 10_000
    ledger_checkpoint_minutes: float = 5.0
    clock: Any = field(default_factory=SystemClock)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        env = dict(os.environ if env is None else env)
        mode = env.get("DEPLOYMENT_MODE", "saas").strip().lower()
        values: dict[str, Any] = dict(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            admin_api_key=env.get("ADMIN_API_KEY") or None,
            deployment_mode=mode if mode in ("saas", "invpc") else "saas",
            secret_pepper=env.get("SECRET_PEPPER") or cls.secret_pepper,
            backdating_days=int(env.get("BACKDATING_WINDOW_DAYS", cls.backdating_days)),
            read_wait_seconds=float(env.get("READ_WAIT_SECONDS", cls.read_wait_seconds)),
            node_active_window_seconds=int(
                env.get("NODE_ACTIVE_WINDOW_SECONDS", cls.node_active_window_seconds)
            ),
            projector_batch_size=int(env.get("PROJECTOR_BATCH_SIZE", cls.projector_batch_size)),
            projector_poll_seconds=float(
                env.get("PROJECTOR_POLL_SECONDS", cls.projector_poll_seconds)
            ),
            db_pool_size=int(env.get("DB_POOL_SIZE", cls.db_pool_size)),
            db_pool_timeout=float(env.get("DB_POOL_TIMEOUT", cls.db_pool_timeout)),
            ledger_signing_key_file=env.get("LEDGER_SIGNING_KEY_FILE") or None,
            ledger_public_key_file=env.get("LEDGER_PUBLIC_KEY_FILE") or None,
            ledger_checkpoint_every=int(env.get("LEDGER_CHECKPOINT_EVERY", cls.ledger_checkpoint_every)),
            ledger_checkpoint_minutes=float(env.get("LEDGER_CHECKPOINT_MINUTES", cls.ledger_checkpoint_minutes)),
        )
        values.update(overrides)
        return cls(**values)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql:", "postgres:", "postgresql+"))
