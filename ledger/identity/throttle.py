"""Failed credential attempts: when to refuse (429) and when to write them to the ledger.
Pure functions over one subject's state (an account, a client address, a client id, a key);
the state lives in the database (projections/auth_failures.py) so every API process agrees.

- A window is 15 minutes. `limit` failures inside one window lock the subject out for a
  minute, doubling with each consecutive lockout (at most an hour); a quiet window after a
  lockout forgets the doubling. While locked out even the right password is refused.
- At most one ledger event per subject per window: the first failure of a window is
  written with the number of failures since the previous event (`failures`), the others
  are only counted.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

WINDOW_SECONDS = 15 * 60
ACCOUNT_LIMIT = 5  # failures per account (e-mail) per window
ADDRESS_LIMIT = 20  # failures per client address per window (several users may share one)
FIRST_LOCKOUT_SECONDS = 60
MAX_LOCKOUT_SECONDS = 3600


@dataclass(frozen=True)
class Failures:
    window_start: int = 0  # epoch seconds
    failures: int = 0  # in the current window
    lockouts: int = 0  # consecutive
    blocked_until: int = 0
    reported_at: int = -1  # when a ledger event was last written (-1: never)
    unreported: int = 0  # failures since that event
    version: int = 0  # optimistic concurrency in the table


def retry_after(state: Failures | None, now: int) -> int:
    """Seconds until the subject may try again (0: now)."""
    return max(0, state.blocked_until - now) if state else 0


def after_failure(state: Failures, now: int, limit: int) -> tuple[Failures, int]:
    """The state after one more failure, and how many failures to write in a ledger event now (0: none)."""
    lockouts = state.lockouts
    if state.blocked_until and now >= state.blocked_until + WINDOW_SECONDS:
        lockouts = 0
    window_start, failures = state.window_start, state.failures
    if now - window_start >= WINDOW_SECONDS:
        window_start, failures = now, 0
    failures += 1
    blocked_until = state.blocked_until
    if failures >= limit:
        lockouts += 1
        blocked_until = now + min(FIRST_LOCKOUT_SECONDS * 2 ** (lockouts - 1), MAX_LOCKOUT_SECONDS)
        window_start, failures = now, 0
    unreported, reported_at, report = state.unreported + 1, state.reported_at, 0
    if reported_at < 0 or now - reported_at >= WINDOW_SECONDS:
        report, unreported, reported_at = unreported, 0, now
    new = replace(
        state, window_start=window_start, failures=failures, lockouts=lockouts, blocked_until=blocked_until,
        reported_at=reported_at, unreported=unreported, version=state.version + 1,
    )
    return new, report
