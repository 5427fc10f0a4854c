"""Portal users and their sessions: create, permissions, disable and enable, passwords,
log in and out.

A session is valid while its user is enabled and no password change or disabling came
after it began: `UserLoggedIn.user_version` is the user stream's version at login and
`User.sessions_since` the version of the last event that ended every session, so ending
them is one append to the user's stream, seen by every API process at once.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from ledger.concept import ConceptCommands
from ledger.actor import Actor
from ledger.errors import Conflict, NotFound, Unauthenticated
from ledger.identity.credentials import seal, unseal
from ledger.identity.events import (
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserLoggedIn,
    UserLoggedOut,
    UserPasswordChanged,
    UserPermissionsChanged,
)
from ledger.identity.passwords import dummy_hash, hash_password, password_matches
from ledger.identity.rules import (
    Session,
    User,
    check_password,
    check_permissions,
    normalize_email,
)
from ledger.store import stream_id


def user_stream(email: str) -> UUID:
    return stream_id("user", email)


def session_stream(token: str) -> UUID:
    return stream_id("session", hashlib.sha256(token.encode()).hexdigest())


class UserAccounts(ConceptCommands):
    def _seal(self, value: str, field: str) -> str:
        return seal(value, self.settings.secret_pepper, field)

    def _unseal(self, stored: str, field: str) -> str:
        return unseal(stored, self.settings.secret_pepper, field)

    def require_org(self, tenant_id: str, org_id: str) -> None:  # IdentityCommands
        raise NotImplementedError

    # portal users ------------------------------------------------------------------------
    def create_user(
        self, tenant_id: str, org_id: str, email: str, password: str, permissions: list[str], actor: str
    ) -> tuple[User, int]:
        who = Actor(tenant_id, org_id, actor)
        with self.audit.attempt(who, "USER_CREATE", str(email), {"permissions": list(permissions)}):
            email = normalize_email(email)
            self.require_org(tenant_id, org_id)
            permissions = check_permissions(permissions)
            check_password(password)
            event = UserCreated(
                tenant_id=tenant_id, org_id=org_id, recorded_at=self.now, actor=actor,
                email=email, password_hash=self._seal(hash_password(password), "password_hash"), permissions=permissions,
            )
            position = self.journal.start_stream(user_stream(email), event, "USER_EXISTS", f"User {email} already exists")
        return _user_from(event, 1), position

    def change_permissions(self, email: str, permissions: list[str], actor: Actor, tenant_id: str | None = None) -> tuple[User, int]:
        """Replace a user's permissions. With tenant_id, a user of another tenant is unknown (404)."""
        with self.audit.attempt(actor, "USER_PERMISSIONS_CHANGE", str(email), {"permissions": list(permissions)}):
            user = self._require_user(email, tenant_id)
            permissions = check_permissions(permissions)
            event = UserPermissionsChanged(
                tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name,
                email=user.email, permissions=permissions, previous=list(user.permissions),
            )
            position = self.journal.extend_stream(user_stream(user.email), event, user.version)
        return replace(user, permissions=tuple(permissions), version=user.version + 1), position

    def disable_user(self, email: str, actor: Actor) -> tuple[User, int]:
        """Disable a user: every session ends now, every key the user created answers 401."""
        with self.audit.attempt(actor, "USER_DISABLE", str(email)):
            user = self._require_user(email)
            if user.disabled:
                raise Conflict("USER_ALREADY_DISABLED", f"User {user.email} is already disabled")
            event = UserDisabled(tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name, email=user.email)
            position = self.journal.extend_stream(user_stream(user.email), event, user.version)
        version = user.version + 1
        return replace(user, disabled=True, sessions_since=version, version=version), position

    def enable_user(self, email: str, actor: Actor) -> tuple[User, int]:
        with self.audit.attempt(actor, "USER_ENABLE", str(email)):
            user = self._require_user(email)
            if not user.disabled:
                raise Conflict("USER_NOT_DISABLED", f"User {user.email} is not disabled")
            event = UserEnabled(tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name, email=user.email)
            position = self.journal.extend_stream(user_stream(user.email), event, user.version)
        return replace(user, disabled=False, version=user.version + 1), position

    def set_password(self, email: str, password: str, actor: Actor) -> tuple[User, int]:
        """A new password (an admin's reset or the user's own change); every session ends."""
        with self.audit.attempt(actor, "USER_PASSWORD_CHANGE", str(email)):
            user = self._require_user(email)
            check_password(password)
            event = UserPasswordChanged(
                tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=actor.name,
                email=user.email, password_hash=self._seal(hash_password(password), "password_hash"),
            )
            position = self.journal.extend_stream(user_stream(user.email), event, user.version)
        version = user.version + 1
        return replace(user, password_hash=event.password_hash, sessions_since=version, version=version), position

    def change_own_password(self, session: Session, current: str, new: str) -> Session:
        """The user's own change: the current password is checked; every session ends and
        a new one begins for the caller."""
        user = session.user
        if not self.password_is(user, current):
            raise Unauthenticated("INVALID_CREDENTIALS", "The current password is not right")
        self.set_password(user.email, new, Actor(user.tenant_id, user.org_id, f"user:{user.email}"))
        changed = self.find_user(user.email)
        assert changed is not None
        return self._start_session(changed)

    def find_user(self, email: str) -> User | None:
        email = (email or "").strip().lower()
        if not email or len(email) > 254:
            return None
        user: User | None = None
        for recorded in self.journal.stream(user_stream(email)):
            event = recorded.event
            if isinstance(event, UserCreated):
                user = _user_from(event, recorded.version)
            elif user is None:
                continue
            elif isinstance(event, UserPermissionsChanged):
                user = replace(user, permissions=tuple(event.permissions), version=recorded.version)
            elif isinstance(event, UserPasswordChanged):
                user = replace(user, password_hash=event.password_hash, sessions_since=recorded.version, version=recorded.version)
            elif isinstance(event, UserDisabled):
                user = replace(user, disabled=True, sessions_since=recorded.version, version=recorded.version)
            elif isinstance(event, UserEnabled):
                user = replace(user, disabled=False, version=recorded.version)
        return user

    def _require_user(self, email: str, tenant_id: str | None = None) -> User:
        user = self.find_user(email)
        if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
            raise NotFound("USER_NOT_FOUND", f"User {email} not found")
        return user

    def password_is(self, user: User | None, password: object) -> bool:
        """Constant work whether or not the user exists."""
        stored = self._unseal(user.password_hash, "password_hash") if user else dummy_hash()
        return password_matches(password if isinstance(password, str) else "", stored) and user is not None

    # sessions ----------------------------------------------------------------------------
    def login(self, email: str, password: str) -> Session:
        """A new session for the right password; 401 INVALID_CREDENTIALS otherwise (the same
        answer, after the same work, whether or not the user exists). A disabled user with
        the right password gets 401 USER_DISABLED."""
        user = self.find_user(email) if isinstance(email, str) else None
        if not self.password_is(user, password) or user is None:
            raise Unauthenticated("INVALID_CREDENTIALS", "Unknown e-mail or wrong password")
        if user.disabled:
            raise Unauthenticated("USER_DISABLED", "This user is disabled; ask an administrator")
        return self._start_session(user)

    def _start_session(self, user: User) -> Session:
        token = secrets.token_urlsafe(32)
        session_id = "ses_" + secrets.token_hex(8)
        expires_at = self.now + timedelta(hours=self.settings.session_ttl_hours)
        event = UserLoggedIn(
            tenant_id=user.tenant_id, org_id=user.org_id, recorded_at=self.now, actor=f"user:{user.email}",
            email=user.email, session_id=session_id, expires_at=expires_at, user_version=user.version,
        )
        position = self.journal.start_stream(session_stream(token), event, "SESSION_EXISTS", "Session token already in use; retry")
        return Session(token, session_id, user, expires_at, position)

    def find_session(self, token: str) -> Session | None:
        """The live session for a token (not logged out, not expired, not ended by a
        password change or by disabling the user), with the user's current permissions."""
        if not token or len(token) > 256:
            return None
        started: UserLoggedIn | None = None
        for recorded in self.journal.stream(session_stream(token)):
            if isinstance(recorded.event, UserLoggedIn):
                started = recorded.event
            elif isinstance(recorded.event, UserLoggedOut):
                return None
        if started is None or self.now >= started.expires_at:
            return None
        user = self.find_user(started.email)
        if user is None or user.disabled or started.user_version < user.sessions_since:
            return None
        return Session(token, started.session_id, user, started.expires_at)

    def logout(self, session: Session) -> int:
        event = UserLoggedOut(
            tenant_id=session.user.tenant_id, org_id=session.user.org_id, recorded_at=self.now,
            actor=f"user:{session.user.email}", email=session.user.email, session_id=session.session_id,
        )
        position = self.journal.try_append(session_stream(session.token), event, 1)
        if position is None:
            raise Unauthenticated("UNAUTHENTICATED", "The session has already ended")
        return position


def _user_from(event: UserCreated, version: int) -> User:
    return User(
        event.email, event.tenant_id, event.org_id, event.password_hash,
        tuple(event.permissions), event.recorded_at, version,
    )
