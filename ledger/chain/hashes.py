"""Tamper evidence: the canonical form of a stored event, the hash chain and signed checkpoints.

The rules here are the contract an auditor reimplements (README "For auditors"):

    canonical(e) = b'{"event":' + STATE + b',"position":' + P + b',"stream_id":"' + SID
                   + b'","type":' + TYPE + b',"version":' + V + b'}'

where STATE is the stored event body exactly as stored (it is already compact JSON with
sorted keys, UTF-8), P and V are decimal integers, SID is the stream UUID as 32 lowercase
hex digits, and TYPE is the event type as a JSON string. The result is itself JSON with
sorted keys and no whitespace.

    entry_hash(P) = SHA-256(prev_hash || P as 8-byte big-endian unsigned || canonical(e))

with prev_hash the entry hash of the previous stored event (32 zero bytes before the
first). Embedding the stored bytes verbatim (instead of parsing and re-encoding them)
makes every backend and every reimplementation produce identical bytes, and any change
to a stored byte changes the hash.

A checkpoint signs `checkpoint_message(position, entry_hash, signed_at, key_id)` with
Ed25519. Plain Python and `cryptography`; no Flask, no SQL.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import Invalid

GENESIS_HASH = bytes(32)
CANONICAL_VERSION = "usage-ledger-chain/1"
CHECKPOINT_PREFIX = b"usage-ledger checkpoint v1\n"

_sha256 = hashlib.sha256
_PLAIN_TYPE = re.compile(r"[A-Za-z0-9_.:-]*")
_type_json: dict[str, bytes] = {}


def stream_hex(stream_id) -> str:
    """The stream id as 32 lowercase hex digits (SQLite stores this form, PostgreSQL a uuid)."""
    if isinstance(stream_id, str):
        if len(stream_id) == 32:
            return stream_id
        from uuid import UUID

        try:
            return UUID(stream_id).hex
        except ValueError:
            return stream_id
    return stream_id.hex


def type_json(topic: str) -> bytes:
    """The event type as a JSON string (ASCII, escaped as Python's json.dumps does)."""
    found = _type_json.get(topic)
    if found is None:
        found = json.dumps(topic).encode() if not _PLAIN_TYPE.fullmatch(topic) else b'"%s"' % topic.encode()
        if len(_type_json) < 1024:
            _type_json[topic] = found
    return found


def canonical(position: int, stream: str, version: int, topic: str, state: bytes) -> bytes:
    """The canonical bytes of one stored event (see the module docstring)."""
    return b'{"event":%b,"position":%d,"stream_id":"%b","type":%b,"version":%d}' % (
        state, position, stream_hex(stream).encode(), type_json(topic), version
    )


def entry_hash(prev_hash: bytes, position: int, stream: str, version: int, topic: str, state: bytes) -> bytes:
    return _sha256(
        prev_hash + position.to_bytes(8, "big") + canonical(position, stream, version, topic, state)
    ).digest()


def chain_hashes(prev_hash: bytes, rows) -> list[bytes]:
    """Entry hashes of consecutive stored events, rows = (position, stream_hex, version, topic, state).

    The hot loop of sealing and verifying: one bytes format and one SHA-256 per event."""
    out = []
    append = out.append
    tj = type_json
    for position, stream, version, topic, state in rows:
        if len(stream) != 32:
            stream = stream_hex(stream)
        prev_hash = _sha256(
            b'%b%b{"event":%b,"position":%d,"stream_id":"%b","type":%b,"version":%d}'
            % (prev_hash, position.to_bytes(8, "big"), state, position, stream.encode(), tj(topic), version)
        ).digest()
        append(prev_hash)
    return out


# checkpoints --------------------------------------------------------------------------
def format_signed_at(moment: datetime) -> str:
    """UTC, microseconds, 'Z' (what the database keeps, so the message round-trips)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_message(position: int, entry_hash_hex: str, signed_at: str, key_id: str) -> bytes:
    """What a checkpoint signature covers: a fixed prefix, then sorted compact JSON."""
    body = json.dumps(
        {"entry_hash": entry_hash_hex, "key_id": key_id, "position": position, "signed_at": signed_at},
        sort_keys=True,
        separators=(",", ":"),
    )
    return CHECKPOINT_PREFIX + body.encode()


@dataclass(frozen=True)
class Checkpoint:
    position: int
    entry_hash: bytes
    signed_at: str  # format_signed_at form
    signature: bytes
    key_id: str

    def message(self) -> bytes:
        return checkpoint_message(self.position, self.entry_hash.hex(), self.signed_at, self.key_id)

    def as_json(self) -> dict:
        return {
            "position": self.position,
            "entry_hash": self.entry_hash.hex(),
            "signed_at": self.signed_at,
            "signature": self.signature.hex(),
            "key_id": self.key_id,
        }


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Key fingerprint: the first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class Signer:
    """Signs checkpoints with the Ed25519 private key kept outside the database."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Signer":
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise Invalid("SIGNING_KEY_UNREADABLE", f"Cannot read the signing key {path}: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise Invalid("SIGNING_KEY_UNREADABLE", f"{path} is not an Ed25519 private key")
        return cls(key)

    def sign(self, position: int, entry_hash_value: bytes, signed_at: datetime) -> Checkpoint:
        stamp = format_signed_at(signed_at)
        message = checkpoint_message(position, entry_hash_value.hex(), stamp, self.key_id)
        return Checkpoint(position, entry_hash_value, stamp, self._key.sign(message), self.key_id)


class PublicKey:
    """The auditor's trusted public key."""

    def __init__(self, public_key: Ed25519PublicKey):
        self.key = public_key
        self.key_id = key_id_of(public_key)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PublicKey":
        try:
            data = Path(path).read_bytes()
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError:  # a private key file also tells its public half
                key = serialization.load_pem_private_key(data, password=None).public_key()
        except (OSError, ValueError, TypeError) as error:
            raise Invalid("PUBLIC_KEY_UNREADABLE", f"Cannot read the public key {path}: {error}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise Invalid("PUBLIC_KEY_UNREADABLE", f"{path} is not an Ed25519 public key")
        return cls(key)

    def pem(self) -> str:
        return public_key_pem(self.key)

    def verifies(self, checkpoint: Checkpoint) -> bool:
        try:
            self.key.verify(checkpoint.signature, checkpoint.message())
            return True
        except InvalidSignature:
            return False


def generate_key_files(out: str | os.PathLike) -> tuple[Path, Path, str]:
    """Write a new private key to `out` (PEM, mode 0600) and its public key to `out`.pub.
    Refuses to overwrite an existing key. Returns (private path, public path, key id)."""
    private_path = Path(out)
    public_path = Path(f"{out}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise Invalid("KEY_FILE_EXISTS", f"{path} already exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_text(public_key_pem(key.public_key()))
    return private_path, public_path, key_id_of(key.public_key())
