"""The signing secrets of budget webhooks, one per budget, encrypted, outside the ledger.

A secret must never reach the ledger API, an export or the audit log, so it is kept out of
every event: this side table holds it, sealed with AES-256-GCM under a key derived from
SECRET_PEPPER (HKDF-SHA256), with the tenant and budget as associated data, so a sealed
value copied onto another budget's row does not open.

The table is not a read model: it is not derived from the ledger, `rebuild` leaves it
alone, and losing it loses the secrets (the owners rotate to get new ones). A row is
written right after the ledger accepted the budget write that needs it; should that fail,
the budget has a webhook and no secret, deliveries wait, and a rotation issues one.
"""
from __future__ import annotations

import base64
import os
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text, delete, select, text

from ledger.budgets.webhooks import new_secret

metadata = MetaData()

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("budget_id", String(128), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

_UPSERT = text(
    "INSERT INTO webhook_secrets (tenant_id, budget_id, sealed, created_at) "
    "VALUES (:tenant_id, :budget_id, :sealed, :created_at) "
    "ON CONFLICT (tenant_id, budget_id) DO UPDATE SET sealed = excluded.sealed, created_at = excluded.created_at"
)


def create_table(engine: Engine) -> None:
    metadata.create_all(engine)


class SecretBox:
    """Seals and opens webhook secrets with a key derived from the deployment's pepper."""

    def __init__(self, pepper: str):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"usage-ledger webhook secrets v1").derive(
            pepper.encode()
        )
        self._aead = AESGCM(key)

    @staticmethod
    def _context(tenant_id: str, budget_id: str) -> bytes:
        return f"{tenant_id}\x00{budget_id}".encode()

    def seal(self, tenant_id: str, budget_id: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), self._context(tenant_id, budget_id))
        return base64.b64encode(nonce + sealed).decode()

    def open(self, tenant_id: str, budget_id: str, sealed: str) -> str | None:
        """The secret, or None when it does not open (another pepper, another row's value)."""
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], self._context(tenant_id, budget_id)).decode()
        except InvalidTag:
            return None


class WebhookSecrets:
    """The side table, read and written through one engine."""

    def __init__(self, engine: Engine, pepper: str):
        self.engine = engine
        self.box = SecretBox(pepper)

    def issue(self, tenant_id: str, budget_id: str, now: datetime) -> str:
        """A new secret for the budget, replacing any other; returned once, stored sealed."""
        secret = new_secret()
        row = {"tenant_id": tenant_id, "budget_id": budget_id, "sealed": self.box.seal(tenant_id, budget_id, secret),
               "created_at": now.replace(tzinfo=None)}
        with self.engine.begin() as conn:
            conn.execute(_UPSERT, row)
        return secret

    def exists(self, tenant_id: str, budget_id: str) -> bool:
        return self._sealed(tenant_id, budget_id) is not None

    def secret(self, tenant_id: str, budget_id: str) -> str | None:
        sealed = self._sealed(tenant_id, budget_id)
        return None if sealed is None else self.box.open(tenant_id, budget_id, sealed)

    def forget(self, tenant_id: str, budget_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(webhook_secrets).where(
                    webhook_secrets.c.tenant_id == tenant_id, webhook_secrets.c.budget_id == budget_id
                )
            )

    def _sealed(self, tenant_id: str, budget_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(webhook_secrets.c.sealed).where(
                    webhook_secrets.c.tenant_id == tenant_id, webhook_secrets.c.budget_id == budget_id
                )
            ).scalar()
