"""A small client for the Cloudflare Access v4 API: the members of one Access group.

The group's `include` rules of the form `{"email": {"email": ...}}` are the list of people
allowed to read the protected documentation; Cloudflare is the source of truth. Reads and
writes go to `{base}/accounts/{account}/access/groups/{group}` with a Bearer token. Any
error Cloudflare reports (or a failure to reach it) raises UpstreamFailed with its message.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ledger.errors import Unavailable, UpstreamFailed

NOT_CONFIGURED = "Documentation access management is not configured"


@dataclass(frozen=True)
class AccessGroup:
    raw: dict[str, Any]

    @property
    def emails(self) -> list[str]:
        found = []
        for rule in self.raw.get("include") or []:
            email = (rule.get("email") or {}).get("email") if isinstance(rule, dict) else None
            if isinstance(email, str):
                found.append(email)
        return found

    def has(self, email: str) -> bool:
        return email.lower() in (e.lower() for e in self.emails)

    def with_email(self, email: str) -> dict[str, Any]:
        include = list(self.raw.get("include") or []) + [{"email": {"email": email}}]
        return self._update_body(include)

    def without_email(self, email: str) -> dict[str, Any]:
        include = [
            rule
            for rule in self.raw.get("include") or []
            if not (isinstance(rule, dict) and str((rule.get("email") or {}).get("email", "")).lower() == email.lower())
        ]
        return self._update_body(include)

    def _update_body(self, include: list) -> dict[str, Any]:
        """The PUT body Cloudflare expects: the whole group definition, include replaced."""
        body: dict[str, Any] = {"name": self.raw.get("name", ""), "include": include}
        for key in ("exclude", "require", "is_default"):
            if key in self.raw:
                body[key] = self.raw[key]
        return body


class CloudflareAccess:
    def __init__(self, base_url: str, token: str, account_id: str, group_id: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.account_id = account_id
        self.group_id = group_id
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings) -> "CloudflareAccess":
        """503 when any of CF_API_TOKEN, CF_ACCOUNT_ID, CF_ACCESS_GROUP_ID is missing."""
        if not (settings.cf_api_token and settings.cf_account_id and settings.cf_access_group_id):
            raise Unavailable("DOCS_ACCESS_NOT_CONFIGURED", NOT_CONFIGURED)
        return cls(
            settings.cf_api_base_url,
            settings.cf_api_token,
            settings.cf_account_id,
            settings.cf_access_group_id,
            settings.cf_api_timeout_seconds,
        )

    @property
    def group_url(self) -> str:
        return f"{self.base_url}/accounts/{self.account_id}/access/groups/{self.group_id}"

    def group(self) -> AccessGroup:
        return AccessGroup(self._call("GET", self.group_url))

    def update_group(self, body: dict[str, Any]) -> AccessGroup:
        return AccessGroup(self._call("PUT", self.group_url, body))

    def _call(self, method: str, url: str, body: dict | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = _json(response.read())
        except urllib.error.HTTPError as error:
            payload = _json(error.read())
            raise UpstreamFailed(
                "CLOUDFLARE_ERROR", _message(payload) or f"Cloudflare answered HTTP {error.code}", upstream_status=error.code
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UpstreamFailed("CLOUDFLARE_UNREACHABLE", f"Cloudflare API is not reachable: {reason}") from None
        if not isinstance(payload, dict) or not payload.get("success") or not isinstance(payload.get("result"), dict):
            raise UpstreamFailed("CLOUDFLARE_ERROR", _message(payload) or "Cloudflare reported a failure")
        return payload["result"]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        errors = payload.get("errors") or []
        messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
        if messages:
            return "; ".join(messages)
    return ""
