"""What auditors must not see: credential fields of events written by earlier releases.

Events written now seal their credential fields (ledger/identity/credentials.py), so the
stored bytes can be shown and hashed as they are. Events written by earlier releases hold
plain hashes; the ledger API and the export replace those values with "[redacted]". An
export line of such an event carries `"redacted": [field, ...]` and the entry hash sealed
for it: the verifier takes that hash as given for that one position (the chain through it
and every signed checkpoint are still checked), see docs/auditors.md.
"""
from __future__ import annotations

import json

from ledger.identity.credentials import is_sealed

REDACTED = "[redacted]"

# event type -> fields that hold credential material (append when an event gains one)
CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "UserCreated": ("password_hash",),
    "UserPasswordChanged": ("password_hash",),
    "ClientRegistered": ("secret_hash",),
    "ClientSecretRotated": ("secret_hash",),
    "ApiKeyCreated": ("key_sha256",),
}


def redact_payload(topic: str, payload: dict) -> list[str]:
    """Redact plain credential values of a parsed event in place; the fields redacted."""
    fields = CREDENTIAL_FIELDS.get(topic)
    if not fields:
        return []
    redacted = []
    for name in fields:
        value = payload.get(name)
        if value is not None and not is_sealed(value):
            payload[name] = REDACTED
            redacted.append(name)
    return redacted


def redact_state(topic: str, state: bytes) -> tuple[bytes, list[str]]:
    """The stored bytes, or a redacted copy (compact JSON, sorted keys) and the fields redacted."""
    if topic not in CREDENTIAL_FIELDS:
        return state, []
    try:
        payload = json.loads(state)
    except ValueError:
        return state, []
    if not isinstance(payload, dict):
        return state, []
    redacted = redact_payload(topic, payload)
    if not redacted:
        return state, []
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(), redacted
