"""Errors as values with a code, raised by the domain and turned into JSON in one place (api/errors.py)."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class. `kind` says which family the error belongs to; the API maps kinds to statuses."""

    kind = "invalid"

    def __init__(self, code: str, message: str, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class Invalid(DomainError):
    kind = "invalid"


class Malformed(DomainError):
    kind = "malformed"


class NotFound(DomainError):
    kind = "not_found"


class Conflict(DomainError):
    kind = "conflict"


class Forbidden(DomainError):
    kind = "forbidden"


class Unauthenticated(DomainError):
    kind = "unauthenticated"


class Throttled(DomainError):
    """429; details carry `retry_after` (seconds), sent as the Retry-After header."""

    kind = "throttled"


class TooLarge(DomainError):
    kind = "too_large"


class Unavailable(DomainError):
    kind = "unavailable"


class UpstreamFailed(DomainError):
    """A service we depend on (e.g. Cloudflare) answered with an error or not at all (502)."""

    kind = "upstream"
