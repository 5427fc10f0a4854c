"""The offline export format (JSON Lines) of the ledger: writing it, reading it back in
batches the Verifier understands, and verifying a file.

A header line, the checkpoints, then every event and every sealed position in position
order (an event line carries its entry hash and its state verbatim, except the plain
credential fields of events written by earlier releases, which are redacted and named in
`redacted`: ledger/chain/redaction.py), then an end line with the counts.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain as chained
from typing import IO, Callable, Iterable, Iterator

import msgspec

from ledger.chain.hashes import CANONICAL_VERSION, Checkpoint, PublicKey
from ledger.chain.redaction import redact_state
from ledger.chain.verify import Damage, Verifier, VerifyReport
from ledger.errors import Invalid

EXPORT_FORMAT = "usage-ledger-export/1"


class _Line(msgspec.Struct, kw_only=True):
    kind: str
    position: int = 0
    stream_id: str = ""
    version: int = 0
    type: str = ""
    state: str | None = None
    state_b64: str | None = None
    entry_hash: str | None = None
    prev_position: int | None = None
    signed_at: str = ""
    signature: str = ""
    key_id: str = ""
    redacted: list[str] | None = None


class _Owner(msgspec.Struct):
    tenant_id: str = ""
    org_id: str = ""


# a decimal as Python's Decimal writes it with an exponent: "8E+1", "1E-9", "1.5E+3"
_EXPONENT = re.compile(r"-?\d+(?:\.\d+)?E[+-]\d+")


def plain_decimals(value):
    """A decoded event payload with every decimal written in exponent notation rewritten as a
    plain decimal ("8E+1" → "80", "1E-9" → "0.000000001"): the readable `payload` beside the
    stored (hashed) `state`, which stays verbatim."""
    if isinstance(value, dict):
        return {k: plain_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_decimals(v) for v in value]
    if isinstance(value, str) and _EXPONENT.fullmatch(value):
        return format(Decimal(value), "f")
    return value


_owner_decoder = msgspec.json.Decoder(_Owner)
_line_decoder = msgspec.json.Decoder(_Line)
_encode = msgspec.json.Encoder().encode


def owner_of(state: bytes) -> tuple[str, str]:
    try:
        owner = _owner_decoder.decode(state)
        return owner.tenant_id, owner.org_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "", ""


def export_lines(
    header: dict, checkpoints: list[Checkpoint], batches: Iterable[tuple[list, list, int | None]],
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The export file, line by line: a header, the checkpoints, then every event and
    every sealed position in position order (an event line carries its entry hash), then
    an end line with the counts."""
    yield _encode({"kind": "header", "format": EXPORT_FORMAT, "chain": CANONICAL_VERSION, **header}) + b"\n"
    for cp in checkpoints:
        yield _encode({"kind": "checkpoint", **cp.as_json()}) + b"\n"
    events_written = chain_only = 0
    for events, chain, _bound in batches:
        by_chain = {c[0]: c for c in chain}
        out = []
        for position, stream, version, topic, state in events:
            state = bytes(state)
            sealed = by_chain.pop(position, None)
            tenant_id, _org = owner_of(state)
            state, redacted = redact_state(topic, state)
            line = {
                "kind": "event",
                "position": position,
                "stream_id": stream,
                "version": version,
                "type": topic,
                "tenant_id": tenant_id,
            }
            try:
                line["state"] = state.decode("utf-8")
                line["payload"] = plain_decimals(json.loads(line["state"]))  # readable: no exponents
            except UnicodeDecodeError:
                line["state_b64"] = base64.b64encode(state).decode()
            except ValueError:
                pass
            if redacted:
                line["redacted"] = redacted
            line["entry_hash"] = bytes(sealed[2]).hex() if sealed else None
            line["prev_position"] = sealed[1] if sealed else None
            out.append((position, _encode(line)))
        for position, prev_position, digest in by_chain.values():  # sealed, but no event
            out.append((position, _encode({"kind": "chain", "position": position, "prev_position": prev_position, "entry_hash": bytes(digest).hex()})))
            chain_only += 1
        out.sort(key=lambda item: item[0])
        events_written += len(events)
        yield b"".join(line + b"\n" for _, line in out)
        if progress and events:
            progress(events[-1][0])
    yield _encode({"kind": "end", "events": events_written, "chain_only": chain_only}) + b"\n"


@dataclass
class ExportFile:
    header: dict
    checkpoints: list[Checkpoint]
    batches: Iterator[tuple[list, list, int | None]]
    complete: Callable[[], bool]


def read_export(handle: IO[bytes], batch_size: int = 20_000) -> ExportFile:
    """Parse an export file (header and checkpoints first; events streamed in batches)."""
    first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        header = {}
    if header.get("kind") != "header" or header.get("format") != EXPORT_FORMAT:
        raise Invalid("EXPORT_UNREADABLE", f"not a {EXPORT_FORMAT} file (bad header line)")
    if header.get("chain") != CANONICAL_VERSION:
        raise Invalid("EXPORT_UNREADABLE", f"unsupported chain version {header.get('chain')!r}")
    checkpoints: list[Checkpoint] = []
    pending: list[_Line] = []
    line_no = 1
    for raw in handle:
        line_no += 1
        line = _decode_line(raw, line_no)
        if line.kind != "checkpoint":
            pending.append(line)
            line_no -= 1  # counted again when the batches read it
            break
        try:
            checkpoints.append(
                Checkpoint(line.position, bytes.fromhex(line.entry_hash or ""), line.signed_at, bytes.fromhex(line.signature), line.key_id)
            )
        except ValueError as error:
            raise Invalid("EXPORT_UNREADABLE", f"line {line_no}: {error}") from None
    ended = [False]

    def batches() -> Iterator[tuple[list, list, int | None]]:
        nonlocal line_no
        events: list = []
        chain: list = []
        last = 0
        lines = chained(pending, (_decode_line(raw, line_no) for raw in handle))
        for line in lines:
            line_no += 1
            kind = line.kind
            if kind == "end":
                ended[0] = True
                break
            if kind not in ("event", "chain"):
                raise Invalid("EXPORT_UNREADABLE", f"line {line_no}: unexpected {kind!r} line")
            p = line.position
            if p <= last:
                raise _FileOrder(p, line_no)
            last = p
            if kind == "chain":
                chain.append((p, line.prev_position, bytes.fromhex(line.entry_hash or "")))
                continue
            if line.redacted:
                state = None  # credential fields of an earlier release: its entry hash is taken as given
            elif line.state is not None:
                state = line.state.encode("utf-8")
            else:
                state = base64.b64decode(line.state_b64 or "")
            events.append((p, line.stream_id, line.version, line.type, state))
            if line.entry_hash is not None:
                chain.append((p, line.prev_position, bytes.fromhex(line.entry_hash)))
            if len(events) >= batch_size:
                yield events, chain, p
                events, chain = [], []
        if events:
            bound = events[-1][0]
            carry = [c for c in chain if c[0] > bound]
            yield events, [c for c in chain if c[0] <= bound], bound
            chain = carry
        yield [], chain, None

    return ExportFile(header, checkpoints, batches(), lambda: ended[0])


class _FileOrder(Exception):
    def __init__(self, position: int, line_no: int):
        super().__init__(f"line {line_no}: position {position} is out of order")
        self.position = position


def _decode_line(raw: bytes, line_no: int) -> _Line:
    try:
        return _line_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise Invalid("EXPORT_UNREADABLE", f"line {line_no}: {error}") from None


def verify_export(
    handle: IO[bytes], trusted_keys: list[PublicKey], progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    export = read_export(handle)
    verifier = Verifier(export.checkpoints, trusted_keys, progress=progress, total=int(export.header.get("last_position") or 0))
    try:
        report = verifier.run(export.batches)
    except ValueError as error:  # bad hex or base64 in a line
        raise Invalid("EXPORT_UNREADABLE", f"malformed line: {error}") from None
    except _FileOrder as error:
        report = verifier.report
        report.intact = False
        report.damage = Damage("reordered", error.position, str(error))
        return report
    report.last_position = max(report.last_position, int(export.header.get("last_position") or 0))
    if report.intact and not export.complete():
        report.warnings.append("the file has no end line: it may be incomplete (a truncated copy)")
    return report
