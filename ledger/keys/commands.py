"""API key commands: create (the key is shown once), revoke, authenticate, record use.

A key's id follows from its random prefix, so a presented key finds its stream directly;
only a SHA-256 of the key is stored.
"""
from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from ledger.concept import ConceptCommands
from ledger.actor import Actor
from ledger.errors import Conflict, Forbidden, NotFound, Unauthenticated
from ledger.identity.credentials import seal, unseal
from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed
from ledger.keys.rules import (
    DEFAULT_SCOPES,
    KEY_USE_RECORD_INTERVAL,
    ApiKey,
    NewApiKey,
    check_expiry_days,
    check_scopes,
    key_id_for,
    new_key_material,
    parse_key,
    sha256_hex,
)
from ledger.store import stream_id

PREFIX_ATTEMPTS = 5


def key_stream(key_id: str) -> UUID:
    return stream_id("apikey", key_id)


def key_use_stream(key_id: str) -> UUID:
    return stream_id("apikey-used", key_id)


class KeyCommands(ConceptCommands):
    def create_key(
        self,
        actor: Actor,
        name: str,
        scopes: list[str] | None,
        expires_in_days: int | None,
        may_grant: frozenset[str] = frozenset(),
    ) -> NewApiKey:
        """A new key of the actor's org, created by `actor.name`. `may_grant`: the creator's
        permissions (scopes need the matching one, ledger/keys/rules.py SCOPE_PERMISSIONS)."""
        chosen = list(scopes) if scopes else list(DEFAULT_SCOPES)
        with self.audit.attempt(actor, "API_KEY_CREATE", name, {"name": name, "scopes": chosen}):
            chosen = check_scopes(chosen, may_grant)
            check_expiry_days(expires_in_days)
            now = self.now
            expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
            for _ in range(PREFIX_ATTEMPTS):
                prefix, secret = new_key_material()
                key_id = key_id_for(prefix)
                event = ApiKeyCreated(
                    tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=now, actor=actor.name,
                    key_id=key_id, name=name, key_prefix=prefix, key_sha256=seal(sha256_hex(secret), self.settings.secret_pepper, "key_sha256"),
                    scopes=chosen, expires_at=expires_at, created_by=actor.name,
                )
                position = self.journal.try_append(key_stream(key_id), event, 0)
                if position is not None:
                    return NewApiKey(self._key_from(event, 1), secret, position)
                # the random prefix is taken: draw another
            raise Conflict("KEY_PREFIX_EXHAUSTED", "Could not allocate a unique key prefix; retry")

    def find_key(self, key_id: str) -> ApiKey | None:
        if not key_id or len(key_id) > 64:
            return None
        key: ApiKey | None = None
        for recorded in self.journal.stream(key_stream(key_id)):
            event = recorded.event
            if isinstance(event, ApiKeyCreated):
                key = self._key_from(event, recorded.version)
            elif key is not None and isinstance(event, ApiKeyRevoked):
                key = replace(key, revoked_at=event.recorded_at, version=recorded.version)
        return key

    def revoke_key(self, actor: Actor, key_id: str, may_revoke_others: bool = True) -> int:
        """Revoke a key of the actor's org. Unknown, another org's or already revoked → 404;
        a key someone else created, unless `may_revoke_others` (admin) → 403."""
        key = self.find_key(key_id)
        visible = key is not None and key.tenant_id == actor.tenant_id and key.org_id == actor.org_id
        details = {"key_id": key_id, **({"name": key.name, "scopes": list(key.scopes)} if visible and key else {})}
        with self.audit.attempt(actor, "API_KEY_REVOKE", key_id, details):
            if not visible or key is None:
                raise NotFound("KEY_NOT_FOUND", f"API key {key_id} not found")
            if key.revoked_at is not None:
                raise NotFound("KEY_NOT_FOUND", f"API key {key_id} not found (already revoked)")
            if not may_revoke_others and key.created_by != actor.name:
                raise Forbidden("PERMISSION_DENIED", "Revoking a key someone else created needs admin", permission="admin")
            event = ApiKeyRevoked(
                tenant_id=key.tenant_id, org_id=key.org_id, recorded_at=self.now, actor=actor.name,
                key_id=key.key_id, name=key.name, scopes=list(key.scopes),
            )
            return self.journal.extend_stream(key_stream(key.key_id), event, key.version)

    def authenticate_key(self, presented: str) -> ApiKey:
        """The live key behind a Bearer value; 401 when unknown, wrong, revoked or expired."""
        prefix = parse_key(presented)
        key = self.find_key(key_id_for(prefix)) if prefix else None
        expected = key.key_sha256 if key else "0" * 64
        if key is None or not hmac.compare_digest(sha256_hex(presented), expected):
            raise Unauthenticated("UNAUTHENTICATED", "Unknown API key")
        if key.revoked_at is not None:
            raise Unauthenticated("KEY_REVOKED", "This API key has been revoked")
        if key.expires_at is not None and self.now >= key.expires_at:
            raise Unauthenticated("KEY_EXPIRED", "This API key has expired")
        return key

    def record_key_use(self, key: ApiKey) -> int | None:
        """Append ApiKeyUsed unless this key was recorded as used less than a minute ago.
        The use stream is versioned, so concurrent requests record it once (None otherwise)."""
        last = self.journal.last_in_stream(key_use_stream(key.key_id))
        now = self.now
        if last is not None and now - last.event.recorded_at < KEY_USE_RECORD_INTERVAL:
            return None
        event = ApiKeyUsed(tenant_id=key.tenant_id, org_id=key.org_id, recorded_at=now, actor=f"key:{key.key_id}", key_id=key.key_id)
        return self.journal.try_append(key_use_stream(key.key_id), event, last.version if last else 0)

    def _key_from(self, event: ApiKeyCreated, version: int) -> ApiKey:
        return ApiKey(
            event.key_id, event.tenant_id, event.org_id, event.name, event.key_prefix,
            unseal(event.key_sha256, self.settings.secret_pepper, "key_sha256"),
            tuple(event.scopes), event.recorded_at, event.expires_at, None, version, event.created_by,
        )
