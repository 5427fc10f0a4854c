"""What auditors must not see: credential fields of events written by earlier releases, and
the query string of a webhook URL.

Events written now seal their credential fields (ledger/identity/credentials.py), so the
stored bytes can be shown and hashed as they are. Events written by earlier releases hold
plain hashes; the ledger API and the export replace those values with "[redacted]". An
export line of such an event carries `"redacted": [field, ...]` and the entry hash sealed
for it: the verifier takes that hash as given for that one position (the chain through it
and every signed checkpoint are still checked), see docs/auditors.md.

A budget's webhook URL is stored as the tenant gave it (deliveries need all of it), and a
receiver's token often rides in its query string or its path. The ledger API and the export
show it as every other answer does (`shown_url`: no query, fragment or user info, token-like
path segments cut to their last characters), and list it under
`redacted` as a dotted path such as `budget.webhook_url`.
"""
from __future__ import annotations

import json

from ledger.budgets.webhooks import shown_url
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
# event type -> paths of the webhook URLs it holds (append when an event gains one)
URL_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "BudgetCreated": (("budget", "webhook_url"),),
    "BudgetUpdated": (("budget", "webhook_url"), ("previous", "webhook_url")),
    "BudgetThresholdCrossed": (("webhook_url",),),
}


def redact_payload(topic: str, payload: dict) -> list[str]:
    """Redact plain credential values and webhook URLs' query strings of a parsed event in
    place; the fields redacted."""
    redacted = []
    for name in CREDENTIAL_FIELDS.get(topic, ()):
        value = payload.get(name)
        if value is not None and not is_sealed(value):
            payload[name] = REDACTED
            redacted.append(name)
    for *parents, name in URL_FIELDS.get(topic, ()):
        holder = payload
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        value = holder.get(name) if isinstance(holder, dict) else None
        shown = shown_url(value) if isinstance(value, str) else value
        if shown != value:
            holder[name] = shown
            redacted.append(".".join((*parents, name)))
    return redacted


def redact_state(topic: str, state: bytes) -> tuple[bytes, list[str]]:
    """The stored bytes, or a redacted copy (compact JSON, sorted keys) and the fields redacted."""
    if topic not in CREDENTIAL_FIELDS and topic not in URL_FIELDS:
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
