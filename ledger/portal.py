"""Portal commands (seed 000): users and sessions, API keys, licences, heartbeats,
policies, docs access and usage corrections.

Each command checks its rules against the state of one stream (folded from the ledger,
so it is never behind) and appends events with deterministic stream ids: a duplicate id
is a stream conflict and answers 409. Every admin-relevant attempt that fails is recorded
as AccessAttempted, so the admin audit log shows failures next to successes; no secret,
key or hash ever goes into those records.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator
from uuid import UUID, uuid4

import msgspec

from ledger.application import Actor, Ledger, usage_stream
from ledger.docs_access.cloudflare import CloudflareAccess
from ledger.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthenticated
from ledger.docs_access.events import DocsAccessGranted, DocsAccessRevoked
from ledger.events import LedgerEvent
from ledger.identity.events import UserCreated, UserLoggedIn, UserLoggedOut, UserPermissionsChanged
from ledger.keys.events import ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed
from ledger.licensing.events import HeartbeatReceived, LicenseIssued, LicenseReplaced, LicenseRevoked
from ledger.policies.events import PolicyCreated, PolicyDeleted, PolicyUpdated
from ledger.usage.events import Usage, UsageAmended, UsageRecorded, UsageVoided
from ledger.usage.rules import MAX_METADATA_DEPTH, json_depth, validate_batch
from ledger.licensing.rules import TIERS
from ledger.identity.passwords import dummy_hash, hash_password, password_matches
from ledger.store import NewEvent, StreamConflict, stream_id

PERMISSIONS = ("permission.billing.manage", "permission.tenant.superuser", "usage:platform_wide", "admin")
SCOPES = ("read:usage", "read:policies", "write:logs", "read:audit", "read:ledger", "usage:platform_wide")
DEFAULT_SCOPES = ("read:policies", "write:logs")
INSTANCE_TYPES = ("agent", "orchestrator")
POLICY_ACTIONS = ("block", "warn", "redact", "log")
KEY_USE_RECORD_INTERVAL = timedelta(minutes=1)
MAX_KEY_EXPIRY_DAYS = 3650
KEY_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
CORRECTION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_JSON_BYTES = 32 * 1024
MAX_RULES_DEPTH = 32

# Usage fields an amendment may replace; identity and provenance (event_id, occurred_at,
# client, instance, HTTP request) stay as recorded.
AMENDABLE_FIELDS = frozenset(
    {
        "event_type", "operation", "resource_type", "quantity", "user_id", "team_id", "agent_id",
        "workflow_id", "app_id", "knowledge_base_id", "http_status_code", "llm_provider", "llm_model",
        "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "cost_usd", "credits",
        "policies_evaluated", "policy_violations", "success", "metadata",
        "cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens",
    }
)
_PRICING_INPUTS = frozenset(
    {"llm_provider", "llm_model", "prompt_tokens", "completion_tokens", "total_tokens", "cached_prompt_tokens", "cache_creation_tokens"}
)


# streams --------------------------------------------------------------------------------
def user_stream(email: str) -> UUID:
    return stream_id("user", email)


def session_stream(token: str) -> UUID:
    return stream_id("session", hashlib.sha256(token.encode()).hexdigest())


def key_stream(key_id: str) -> UUID:
    return stream_id("apikey", key_id)


def key_use_stream(key_id: str) -> UUID:
    return stream_id("apikey-used", key_id)


def license_stream(tenant_id: str, org_id: str) -> UUID:
    return stream_id("license", tenant_id, org_id)


def policy_stream(tenant_id: str, policy_id: str) -> UUID:
    return stream_id("policy", tenant_id, policy_id)


# state folded from streams --------------------------------------------------------------
@dataclass(frozen=True)
class User:
    email: str
    tenant_id: str
    org_id: str
    password_hash: str
    permissions: tuple[str, ...]
    created_at: datetime
    version: int

    def public(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "tenant_id": self.tenant_id,
            "org_id": self.org_id,
            "permissions": list(self.permissions),
        }


@dataclass(frozen=True)
class Session:
    token: str
    session_id: str
    user: User
    expires_at: datetime
    position: int = 0


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    org_id: str
    name: str
    key_prefix: str
    key_sha256: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    version: int


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str  # the full key, shown once
    position: int


@dataclass(frozen=True)
class License:
    tenant_id: str
    org_id: str
    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None
    license_key: str | None
    active: bool
    version: int


@dataclass(frozen=True)
class LicenseTerms:
    tier: str
    nodes_total: int
    expires_at: datetime
    credits_included: Decimal | None = None
    license_key: str | None = None


@dataclass(frozen=True)
class Policy:
    tenant_id: str
    org_id: str
    policy_id: str
    name: str
    description: str
    category: str
    action: str
    enabled: bool
    rules: dict[str, Any]
    deleted: bool
    version: int

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "action": self.action,
            "enabled": self.enabled,
            "rules": self.rules,
        }


@dataclass(frozen=True)
class DocsAccessResult:
    email: str
    changed: bool
    position: int


@dataclass(frozen=True)
class UsageState:
    """The current state of one usage event: its original org, current facts, whether voided."""

    org_id: str
    usage: Usage
    voided: bool
    version: int


# key material ---------------------------------------------------------------------------
def new_key_material() -> tuple[str, str]:
    """(prefix, full key): `ulk_<8-char prefix>_<secret>`."""
    prefix = "".join(secrets.choice(KEY_PREFIX_ALPHABET) for _ in range(8))
    return prefix, f"ulk_{prefix}_{secrets.token_urlsafe(32)}"


def key_id_for(prefix: str) -> str:
    """The key id follows from its prefix, so a presented key finds its stream directly."""
    return "key_" + stream_id("apikey-id", prefix).hex[:16]


def parse_key(presented: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not presented.startswith("ulk_") or len(presented) < 14 or presented[12] != "_":
        return None
    prefix = presented[4:12]
    return prefix if all(c in KEY_PREFIX_ALPHABET for c in prefix) else None


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not EMAIL.match(email):
        raise Invalid("VALIDATION_FAILED", "email is not a valid e-mail address", field="email")
    return email


def check_permissions(permissions: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise Invalid(
            "INVALID_PERMISSIONS",
            f"Unknown permission(s): {', '.join(unknown)}; known: {', '.join(PERMISSIONS)}",
            field="permissions",
        )
    return sorted(set(permissions))


class Portal:
    """The portal's commands, on top of the ledger application."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.store = ledger.store
        self.settings = ledger.settings

    @property
    def now(self) -> datetime:
        return self.ledger.now

    # audit of failed attempts ------------------------------------------------------------
    @contextmanager
    def attempt(
        self, actor: Actor, action: str, target: str, details: dict[str, Any] | None = None
    ) -> Iterator[None]:
        """Run a command; when it fails with a domain error, record AccessAttempted
        (outcome denied when forbidden, else failure; the error code as reason) and re-raise."""
        try:
            yield
        except DomainError as error:
            if error.kind != "unavailable":  # database down: nothing can be recorded anyway
                outcome = "denied" if error.kind == "forbidden" else "failure"
                self.ledger.record_access_attempt(
                    actor.tenant_id, actor.org_id, actor.name, action, target, outcome,
                    f"{error.code}: {error.message}", **({"details": details} if details else {}),
                )
            raise

    # users and sessions -------------------------------------------------------------------
    def create_user(
        self, tenant_id: str, org_id: str, email: str, password: str, permissions: list[str], actor: str
    ) -> tuple[User, int]:
        who = Actor(tenant_id, org_id, actor)
        with self.attempt(who, "USER_CREATE", str(email), {"permissions": list(permissions)}):
            email = normalize_email(email)
            self.ledger.require_org(tenant_id, org_id)
            permissions = check_permissions(permissions)
            if not isinstance(password, str) or not 8 <= len(password) <= 1024:
                raise Invalid("VALIDATION_FAILED", "password must be 8 to 1024 characters", field="password")
            event = UserCreated(
                tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor,
                email=email, password_hash=hash_password(password), permissions=permissions,
            )
            position = self.ledger.journal.start_stream(user_stream(email), event, "USER_EXISTS", f"User {email} already exists")
        return self._user_from(event, 1), position

    def change_permissions(self, email: str, permissions: list[str], actor: Actor, tenant_id: str | None = None) -> tuple[User, int]:
        """Replace a user's permissions. With tenant_id, a user of another tenant is unknown (404)."""
        with self.attempt(actor, "USER_PERMISSIONS_CHANGE", str(email), {"permissions": list(permissions)}):
            user = self.find_user(email)
            if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
                raise NotFound("USER_NOT_FOUND", f"User {email} not found")
            permissions = check_permissions(permissions)
            event = UserPermissionsChanged(
                tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name,
                email=user.email, permissions=permissions, previous=list(user.permissions),
            )
            position = self.ledger.journal.extend_stream(user_stream(user.email), event, user.version)
        return replace(user, permissions=tuple(permissions), version=user.version + 1), position

    def find_user(self, email: str) -> User | None:
        email = (email or "").strip().lower()
        if not email or len(email) > 254:
            return None
        user: User | None = None
        for recorded in self.store.stream(user_stream(email)):
            event = recorded.event
            if isinstance(event, UserCreated):
                user = self._user_from(event, recorded.version)
            elif user is not None and isinstance(event, UserPermissionsChanged):
                user = replace(user, permissions=tuple(event.permissions), version=recorded.version)
        return user

    @staticmethod
    def _user_from(event: UserCreated, version: int) -> User:
        return User(
            event.email, event.tenant_id, event.org_id, event.password_hash,
            tuple(event.permissions), event.recorded_at, version,
        )

    def login(self, email: str, password: str) -> Session:
        """A new session for the right password; 401 INVALID_CREDENTIALS otherwise (the same
        answer, after the same work, whether or not the user exists)."""
        user = self.find_user(email) if isinstance(email, str) else None
        matches = password_matches(password if isinstance(password, str) else "", user.password_hash if user else dummy_hash())
        if user is None or not matches:
            if user is not None:
                self.ledger.record_access_attempt(
                    user.tenant_id, user.org_id, f"user:{user.email}", "USER_LOGIN", user.email, "failure", "wrong password"
                )
            raise Unauthenticated("INVALID_CREDENTIALS", "Unknown e-mail or wrong password")
        token = secrets.token_urlsafe(32)
        session_id = "ses_" + secrets.token_hex(8)
        expires_at = self.now + timedelta(hours=self.settings.session_ttl_hours)
        event = UserLoggedIn(
            tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=f"user:{user.email}",
            email=user.email, session_id=session_id, expires_at=expires_at,
        )
        position = self.store.append_to_stream(session_stream(token), event, 0)
        return Session(token, session_id, user, expires_at, position)

    def find_session(self, token: str) -> Session | None:
        """The live session for a token (not logged out, not expired), with the user's
        current permissions; None otherwise."""
        if not token or len(token) > 256:
            return None
        started: UserLoggedIn | None = None
        for recorded in self.store.stream(session_stream(token)):
            if isinstance(recorded.event, UserLoggedIn):
                started = recorded.event
            elif isinstance(recorded.event, UserLoggedOut):
                return None
        if started is None or self.now >= started.expires_at:
            return None
        user = self.find_user(started.email)
        if user is None:
            return None
        return Session(token, started.session_id, user, started.expires_at)

    def logout(self, session: Session) -> int:
        event = UserLoggedOut(
            tenant_id=session.user.tenant_id, org_id=session.user.org_id, recorded_at=self.now,
            actor=f"user:{session.user.email}", email=session.user.email, session_id=session.session_id,
        )
        try:
            return self.store.append_to_stream(session_stream(session.token), event, 1)
        except StreamConflict:
            raise Unauthenticated("UNAUTHENTICATED", "The session has already ended") from None

    # API keys ---------------------------------------------------------------------------
    def create_key(
        self,
        actor: Actor,
        name: str,
        scopes: list[str] | None,
        expires_in_days: int | None,
        may_grant: frozenset[str] = frozenset(),
    ) -> NewApiKey:
        """A new key of the actor's org. `may_grant`: the caller's own permissions, needed to
        hand out the usage:platform_wide scope."""
        chosen = list(scopes) if scopes else list(DEFAULT_SCOPES)
        with self.attempt(actor, "API_KEY_CREATE", name, {"name": name, "scopes": chosen}):
            unknown = sorted(set(chosen) - set(SCOPES))
            if unknown:
                raise Invalid(
                    "INVALID_SCOPES", f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}", field="scopes"
                )
            if "usage:platform_wide" in chosen and "usage:platform_wide" not in may_grant:
                raise Forbidden("PERMISSION_DENIED", "Only holders of usage:platform_wide may grant that scope")
            if expires_in_days is not None and not 1 <= expires_in_days <= MAX_KEY_EXPIRY_DAYS:
                raise Invalid(
                    "VALIDATION_FAILED", f"expires_in_days must be between 1 and {MAX_KEY_EXPIRY_DAYS}", field="expires_in_days"
                )
            chosen = sorted(set(chosen), key=SCOPES.index)
            now = self.now
            expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
            for _ in range(5):
                prefix, secret = new_key_material()
                key_id = key_id_for(prefix)
                event = ApiKeyCreated(
                    tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=now, actor=actor.name,
                    key_id=key_id, name=name, key_prefix=prefix, key_sha256=sha256_hex(secret),
                    scopes=chosen, expires_at=expires_at,
                )
                try:
                    position = self.store.append_to_stream(key_stream(key_id), event, 0)
                except StreamConflict:
                    continue  # the random prefix is taken: draw another
                return NewApiKey(self._key_from(event, 1), secret, position)
            raise Conflict("KEY_PREFIX_EXHAUSTED", "Could not allocate a unique key prefix; retry")

    def find_key(self, key_id: str) -> ApiKey | None:
        if not key_id or len(key_id) > 64:
            return None
        key: ApiKey | None = None
        for recorded in self.store.stream(key_stream(key_id)):
            event = recorded.event
            if isinstance(event, ApiKeyCreated):
                key = self._key_from(event, recorded.version)
            elif key is not None and isinstance(event, ApiKeyRevoked):
                key = replace(key, revoked_at=event.recorded_at, version=recorded.version)
        return key

    @staticmethod
    def _key_from(event: ApiKeyCreated, version: int) -> ApiKey:
        return ApiKey(
            event.key_id, event.tenant_id, event.org_id, event.name, event.key_prefix, event.key_sha256,
            tuple(event.scopes), event.recorded_at, event.expires_at, None, version,
        )

    def revoke_key(self, actor: Actor, key_id: str) -> int:
        """Revoke a key of the actor's org. Unknown, another org's or already revoked → 404."""
        key = self.find_key(key_id)
        visible = key is not None and key.tenant_id == actor.tenant_id and key.org_id == actor.org_id
        details = {"key_id": key_id, **({"name": key.name, "scopes": list(key.scopes)} if visible and key else {})}
        with self.attempt(actor, "API_KEY_REVOKE", key_id, details):
            if not visible or key is None:
                raise NotFound("KEY_NOT_FOUND", f"API key {key_id} not found")
            if key.revoked_at is not None:
                raise NotFound("KEY_NOT_FOUND", f"API key {key_id} not found (already revoked)")
            event = ApiKeyRevoked(
                tenant_id=key.tenant_id, org_id=key.org_id, recorded_at=self.now, actor=actor.name,
                key_id=key.key_id, name=key.name, scopes=list(key.scopes),
            )
            return self.ledger.journal.extend_stream(key_stream(key.key_id), event, key.version)

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
        The use stream is versioned, so concurrent requests record it once."""
        last = self.store.last_in_stream(key_use_stream(key.key_id))
        now = self.now
        if last is not None and now - last.event.recorded_at < KEY_USE_RECORD_INTERVAL:
            return None
        event = ApiKeyUsed(tenant_id=key.tenant_id, org_id=key.org_id, recorded_at=now, actor=f"key:{key.key_id}", key_id=key.key_id)
        try:
            return self.store.append_to_stream(key_use_stream(key.key_id), event, last.version if last else 0)
        except StreamConflict:
            return None  # a concurrent request recorded this use

    # licences ---------------------------------------------------------------------------
    def find_license(self, tenant_id: str, org_id: str) -> License | None:
        found: License | None = None
        for recorded in self.store.stream(license_stream(tenant_id, org_id)):
            event = recorded.event
            if isinstance(event, (LicenseIssued, LicenseReplaced)):
                found = License(
                    event.tenant_id, event.org_id, event.tier, event.nodes_total, event.expires_at,
                    event.credits_included, event.license_key, True, recorded.version,
                )
            elif isinstance(event, LicenseRevoked) and found is not None:
                found = replace(found, active=False, version=recorded.version)
            elif found is not None:  # events other engineers add to the licence stream
                found = replace(found, version=recorded.version)
        return found

    def issue_license(self, tenant_id: str, org_id: str, terms: LicenseTerms, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.attempt(who, "LICENSE_ISSUE", f"{tenant_id}/{org_id}", {"tier": terms.tier}):
            self.ledger.require_org(tenant_id, org_id)
            _check_terms(terms)
            current = self.find_license(tenant_id, org_id)
            if current is not None and current.active:
                raise Conflict("LICENSE_EXISTS", f"Organization {org_id} already has a licence; replace it with PUT")
            event = LicenseIssued(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, **_terms(terms))
            return self.ledger.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version if current else 0)

    def replace_license(self, tenant_id: str, org_id: str, terms: LicenseTerms, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.attempt(who, "LICENSE_REPLACE", f"{tenant_id}/{org_id}", {"tier": terms.tier}):
            _check_terms(terms)
            current = self.find_license(tenant_id, org_id)
            if current is None or not current.active:
                raise NotFound("LICENSE_NOT_FOUND", f"Organization {org_id} has no licence")
            event = LicenseReplaced(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, **_terms(terms))
            return self.ledger.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version)

    def revoke_license(self, tenant_id: str, org_id: str, actor: str) -> int:
        who = Actor(tenant_id, org_id, actor)
        with self.attempt(who, "LICENSE_REVOKE", f"{tenant_id}/{org_id}"):
            current = self.find_license(tenant_id, org_id)
            if current is None or not current.active:
                raise NotFound("LICENSE_NOT_FOUND", f"Organization {org_id} has no licence")
            event = LicenseRevoked(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, tier=current.tier)
            return self.ledger.journal.extend_stream(license_stream(tenant_id, org_id), event, current.version)

    # heartbeats -------------------------------------------------------------------------
    def record_heartbeat(
        self,
        actor: Actor,
        instance_id: str,
        instance_type: str,
        hostname: str | None = None,
        port: int | None = None,
        host_info: dict[str, Any] | None = None,
    ) -> int:
        """One event per heartbeat: each is a fact (the node was alive at that moment), and
        the node_status read model keeps only the latest per node."""
        if not CORRECTION_ID.match(instance_id or ""):
            raise Invalid("VALIDATION_FAILED", "instance_id must be 1-128 characters of [A-Za-z0-9._:-]", field="instance_id")
        if instance_type not in INSTANCE_TYPES:
            raise Invalid("VALIDATION_FAILED", "instance_type must be agent or orchestrator", field="instance_type")
        if host_info is not None and len(msgspec.json.encode(host_info)) > 8 * 1024:
            raise Invalid("VALIDATION_FAILED", "host_info must be at most 8 KiB of JSON", field="host_info")
        if host_info is not None and json_depth(host_info) > MAX_METADATA_DEPTH:
            raise Invalid("VALIDATION_FAILED", f"host_info must be nested at most {MAX_METADATA_DEPTH} levels deep", field="host_info")
        event = HeartbeatReceived(
            tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
            instance_id=instance_id, instance_type=instance_type, hostname=hostname, port=port, host_info=host_info,
        )
        return self.store.append([NewEvent(uuid4(), 1, event)])[0]

    # policies ---------------------------------------------------------------------------
    def find_policy(self, tenant_id: str, policy_id: str) -> Policy | None:
        if not policy_id or len(policy_id) > 64:
            return None
        policy: Policy | None = None
        for recorded in self.store.stream(policy_stream(tenant_id, policy_id)):
            event = recorded.event
            if isinstance(event, (PolicyCreated, PolicyUpdated)):
                policy = Policy(
                    event.tenant_id, event.org_id, event.policy_id, event.name, event.description, event.category,
                    event.action, event.enabled, event.rules, False, recorded.version,
                )
            elif isinstance(event, PolicyDeleted) and policy is not None:
                policy = replace(policy, deleted=True, version=recorded.version)
        return policy

    def create_policy(self, tenant_id: str, org_id: str, definition: dict[str, Any], actor: str, policy_id: str = "") -> tuple[str, int]:
        who = Actor(tenant_id, org_id, actor)
        with self.attempt(who, "POLICY_CREATE", policy_id or str(definition.get("name", "")), {"name": definition.get("name")}):
            self.ledger.require_org(tenant_id, org_id)
            policy_id = policy_id or "pol_" + secrets.token_hex(8)
            if not CORRECTION_ID.match(policy_id) or len(policy_id) > 64:
                raise Invalid("VALIDATION_FAILED", "policy_id must be 1-64 characters of [A-Za-z0-9._:-]", field="policy_id")
            definition = _check_policy(definition)
            current = self.find_policy(tenant_id, policy_id)
            if current is not None and not current.deleted:
                raise Conflict("POLICY_EXISTS", f"Policy {policy_id} already exists")
            event = PolicyCreated(tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor, policy_id=policy_id, **definition)
            position = self.ledger.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version if current else 0)
        return policy_id, position

    def update_policy(self, tenant_id: str, policy_id: str, changes: dict[str, Any], actor: str) -> int:
        who = Actor(tenant_id, "", actor)
        with self.attempt(who, "POLICY_UPDATE", policy_id, {"changed": sorted(changes)}):
            current = self.find_policy(tenant_id, policy_id)
            if current is None or current.deleted:
                raise NotFound("POLICY_NOT_FOUND", f"Policy {policy_id} not found")
            definition = _check_policy({**current.definition(), **changes})
            changed = sorted(k for k, v in definition.items() if current.definition()[k] != v)
            event = PolicyUpdated(
                tenant_id=tenant_id, org_id=current.org_id, recorded_at=self.now, actor=actor,
                policy_id=policy_id, changed=changed, **definition,
            )
            return self.ledger.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version)

    def delete_policy(self, tenant_id: str, policy_id: str, actor: str) -> int:
        who = Actor(tenant_id, "", actor)
        with self.attempt(who, "POLICY_DELETE", policy_id):
            current = self.find_policy(tenant_id, policy_id)
            if current is None or current.deleted:
                raise NotFound("POLICY_NOT_FOUND", f"Policy {policy_id} not found")
            event = PolicyDeleted(
                tenant_id=tenant_id, org_id=current.org_id, recorded_at=self.now, actor=actor, policy_id=policy_id, name=current.name
            )
            return self.ledger.journal.extend_stream(policy_stream(tenant_id, policy_id), event, current.version)

    # docs access (Cloudflare Access group is the source of truth) -------------------------
    def docs_access_users(self, cloudflare: CloudflareAccess) -> list[str]:
        return cloudflare.group().emails

    def grant_docs_access(self, actor: Actor, cloudflare: CloudflareAccess, email: str, reason: str = "") -> DocsAccessResult:
        with self.attempt(actor, "DOCS_ACCESS_GRANT", str(email), {"reason": reason} if reason else None):
            email = normalize_email(email)
            group = cloudflare.group()
            present = group.has(email)
            if not present:
                cloudflare.update_group(group.with_email(email))
            event = DocsAccessGranted(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, reason=reason, already_present=present,
            )
            position = self.store.append([NewEvent(uuid4(), 1, event)])[0]
        return DocsAccessResult(email, not present, position)

    def revoke_docs_access(self, actor: Actor, cloudflare: CloudflareAccess, email: str) -> DocsAccessResult:
        with self.attempt(actor, "DOCS_ACCESS_REVOKE", str(email)):
            email = normalize_email(email)
            group = cloudflare.group()
            present = group.has(email)
            if present:
                cloudflare.update_group(group.without_email(email))
            event = DocsAccessRevoked(
                tenant_id=actor.tenant_id, org_id=actor.org_id, recorded_at=self.now, actor=actor.name,
                email=email, already_absent=not present,
            )
            position = self.store.append([NewEvent(uuid4(), 1, event)])[0]
        return DocsAccessResult(email, present, position)

    # usage corrections ------------------------------------------------------------------
    def usage_state(self, tenant_id: str, event_id: str) -> UsageState | None:
        state: UsageState | None = None
        for recorded in self.store.stream(usage_stream(tenant_id, event_id)):
            event = recorded.event
            if isinstance(event, UsageRecorded):
                state = UsageState(event.org_id, event.usage, False, recorded.version)
            elif state is not None and isinstance(event, UsageVoided):
                state = replace(state, voided=True, version=recorded.version)
            elif state is not None and isinstance(event, UsageAmended):
                state = replace(state, usage=event.current, version=recorded.version)
        return state

    def void_usage(self, actor: Actor, event_id: str, reason: str) -> int:
        with self.attempt(actor, "USAGE_VOID", event_id, {"reason": reason}):
            state = self._correctable(actor, event_id, reason)
            event = UsageVoided(
                tenant_id=actor.tenant_id, org_id=state.org_id, recorded_at=self.now, actor=actor.name,
                event_id=event_id, reason=reason, voided=state.usage,
            )
            return self._correct(actor, event_id, event, state.version)

    def amend_usage(self, actor: Actor, event_id: str, fields: dict[str, Any], reason: str) -> tuple[Usage, int]:
        with self.attempt(actor, "USAGE_AMEND", event_id, {"reason": reason, "fields": sorted(fields or {})}):
            state = self._correctable(actor, event_id, reason)
            if not isinstance(fields, dict) or not fields:
                raise Invalid("VALIDATION_FAILED", "fields must be a non-empty object", field="fields")
            refused = sorted(set(fields) - AMENDABLE_FIELDS)
            if refused:
                raise Invalid(
                    "FIELD_NOT_AMENDABLE",
                    f"These fields cannot be amended: {', '.join(refused)}",
                    field="fields", fields=refused,
                )
            current = self._revalidate(state.usage, fields)
            event = UsageAmended(
                tenant_id=actor.tenant_id, org_id=state.org_id, recorded_at=self.now, actor=actor.name,
                event_id=event_id, reason=reason, fields=fields, previous=state.usage, current=current,
            )
            position = self._correct(actor, event_id, event, state.version)
        return current, position

    def _correctable(self, actor: Actor, event_id: str, reason: str) -> UsageState:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
            raise Invalid("VALIDATION_FAILED", "reason is required (at most 1,000 characters)", field="reason")
        state = self.usage_state(actor.tenant_id, event_id) if CORRECTION_ID.match(event_id or "") else None
        if state is None:
            raise NotFound("USAGE_NOT_FOUND", f"Usage event {event_id} not found")
        if state.voided:
            raise Conflict("USAGE_ALREADY_VOIDED", f"Usage event {event_id} is already voided")
        return state

    def _correct(self, actor: Actor, event_id: str, event: LedgerEvent, version: int) -> int:
        try:
            return self.store.append_to_stream(usage_stream(actor.tenant_id, event_id), event, version)
        except StreamConflict:
            raise Conflict("CONCURRENT_UPDATE", f"Usage event {event_id} changed meanwhile; retry") from None

    def _revalidate(self, usage: Usage, fields: dict[str, Any]) -> Usage:
        """Apply the replaced fields to the current facts and run the ingest rules again.
        Totals, success and cost that followed from replaced inputs are derived anew."""
        base = msgspec.to_builtins(usage)
        for derived in ("client_id", "unpriced", "body_sha256"):
            base.pop(derived, None)
        if {"prompt_tokens", "completion_tokens"} & set(fields) and "total_tokens" not in fields:
            base.pop("total_tokens", None)
        if _PRICING_INPUTS & set(fields) and "cost_usd" not in fields:
            base.pop("cost_usd", None)
        if "http_status_code" in fields and "success" not in fields:
            base.pop("success", None)
        base.update(fields)
        base = {k: v for k, v in base.items() if v is not None}
        items = [msgspec.Raw(msgspec.json.encode(base))]
        # the event keeps its occurred_at, so the backdating window is measured from it
        (amended,) = validate_batch(
            items, client_id=usage.client_id, now=usage.occurred_at, backdating_days=self.settings.backdating_days,
            prices=self.ledger.price_book(),
        )
        return msgspec.structs.replace(amended, body_sha256=usage.body_sha256)


def _terms(terms: LicenseTerms) -> dict[str, Any]:
    return {
        "tier": terms.tier,
        "nodes_total": terms.nodes_total,
        "expires_at": terms.expires_at,
        "credits_included": terms.credits_included,
        "license_key": terms.license_key,
    }


def _check_terms(terms: LicenseTerms) -> None:
    if terms.tier not in TIERS:
        raise Invalid("VALIDATION_FAILED", f"tier must be one of {', '.join(TIERS)}", field="tier")
    if not isinstance(terms.nodes_total, int) or not 1 <= terms.nodes_total <= 1_000_000:
        raise Invalid("VALIDATION_FAILED", "nodes_total must be an integer from 1 to 1,000,000", field="nodes_total")
    if terms.expires_at.tzinfo is None:
        raise Invalid("VALIDATION_FAILED", "expires_at needs a time zone offset", field="expires_at")
    if terms.credits_included is not None and (not terms.credits_included.is_finite() or terms.credits_included < 0):
        raise Invalid("VALIDATION_FAILED", "credits_included must be a number ≥ 0", field="credits_included")


def _check_policy(definition: dict[str, Any]) -> dict[str, Any]:
    name = definition.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise Invalid("VALIDATION_FAILED", "name must be 1-200 characters", field="name")
    description = definition.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise Invalid("VALIDATION_FAILED", "description must be at most 2,000 characters", field="description")
    category = definition.get("category") or "general"
    if not isinstance(category, str) or not SLUG.match(category):
        raise Invalid("VALIDATION_FAILED", "category must be a lowercase slug", field="category")
    action = definition.get("action") or "block"
    if action not in POLICY_ACTIONS:
        raise Invalid("VALIDATION_FAILED", f"action must be one of {', '.join(POLICY_ACTIONS)}", field="action")
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("VALIDATION_FAILED", "enabled must be true or false", field="enabled")
    rules = definition.get("rules") or {}
    if not isinstance(rules, dict) or len(msgspec.json.encode(rules)) > MAX_JSON_BYTES:
        raise Invalid("VALIDATION_FAILED", "rules must be a JSON object of at most 32 KiB", field="rules")
    if json_depth(rules) > MAX_RULES_DEPTH:
        raise Invalid("VALIDATION_FAILED", f"rules must be nested at most {MAX_RULES_DEPTH} levels deep", field="rules")
    return {"name": name, "description": description, "category": category, "action": action, "enabled": enabled, "rules": rules}
