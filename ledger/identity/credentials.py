"""Credential material in events: sealed (encrypted) so the ledger can be shown to auditors.

Events written by this release keep password hashes, client-secret hashes and API-key
digests as `enc1:<base64 nonce||ciphertext>`: AES-256-GCM under a key derived from
SECRET_PEPPER (HMAC-SHA-256 of a fixed label), with the field name as associated data so a
value cannot be moved to another field. The hash chain covers these bytes, so an export
carries them as stored and still verifies offline; without the pepper they say nothing.

Events written by earlier releases hold the plain values; `unseal` returns those as they
are, and the ledger API and the export redact them (ledger/chain/redaction.py).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX = "enc1:"
_LABEL = b"usage-ledger credential sealing v1"
_NONCE_BYTES = 12


@lru_cache(maxsize=8)
def _cipher(pepper: str) -> AESGCM:
    return AESGCM(hmac.new(pepper.encode(), _LABEL, hashlib.sha256).digest())


def is_sealed(value: str) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(value: str, pepper: str, field: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(pepper).encrypt(nonce, value.encode(), field.encode())
    return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(stored: str, pepper: str, field: str) -> str:
    """The plain value of a stored field ("" when it cannot be opened, which matches no
    credential: a changed pepper locks sealed credentials out rather than failing open)."""
    if not is_sealed(stored):
        return stored
    try:
        raw = base64.b64decode(stored[len(SEALED_PREFIX):], validate=True)
        return _cipher(pepper).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], field.encode()).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        return ""
