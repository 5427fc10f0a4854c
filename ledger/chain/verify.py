"""Verification of the hash chain, and the offline export format (JSON Lines).

`Verifier` recomputes every entry hash from the stored events (it never trusts the
stored chain), compares it with the sealed hash at each position and with every signed
checkpoint, and stops at the first damage, which it names:

- edited:      the event at P no longer hashes to what was sealed at P;
- deleted:     a position that was sealed (or signed) has no event, events follow it;
- inserted:    an event that was never sealed sits before sealed positions;
- reordered:   the event at P is the one sealed at another position Q (swapped/moved);
- truncated:   positions were sealed or signed after the last stored event;
- chain_altered: ledger_chain rows were changed or removed while the events are intact;
- rehashed:    the chain agrees with the events but a validly signed checkpoint does not
               (events were changed and ledger_chain recomputed to hide it);
- forged_checkpoint: a checkpoint's signature does not verify with the trusted key;
- foreign_key_checkpoint: a checkpoint is signed by a key other than the trusted one(s).

Sources give batches of plain tuples: events (position, stream hex, version, type, state
bytes) and chain rows (position, prev_position, entry_hash). The database snapshot
(projections/ledger_chain.py) and the export file reader (ledger/chain/export.py) both
speak it.
"""
from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from itertools import chain as chained, islice
from typing import Callable, Iterable, Iterator

from ledger.chain.hashes import (
    GENESIS_HASH,
    Checkpoint,
    PublicKey,
    chain_hashes,
    entry_hash,
)

LOOKAHEAD = 50_000  # positions examined after a mismatch to tell a move from an edit

DAMAGE_KINDS = {
    "edited": "the stored event was changed after it was sealed",
    "deleted": "a sealed event is missing",
    "inserted": "an event that was never sealed sits among sealed events",
    "reordered": "sealed events were moved to other positions (swapped)",
    "truncated": "positions were sealed or signed after the last stored event",
    "chain_altered": "ledger_chain rows were changed or removed (the events are intact)",
    "rehashed": "the chain was recomputed to hide a change: a signed checkpoint disagrees",
    "forged_checkpoint": "a checkpoint's signature does not verify with the trusted public key",
    "foreign_key_checkpoint": "a checkpoint was signed by another key than the trusted one",
}


@dataclass(frozen=True)
class Damage:
    kind: str
    position: int
    detail: str

    def as_json(self) -> dict:
        return {"kind": self.kind, "position": self.position, "meaning": DAMAGE_KINDS[self.kind], "detail": self.detail}


@dataclass
class VerifyReport:
    intact: bool = True
    events_verified: int = 0
    unsealed_events: int = 0
    redacted_events: int = 0  # export lines whose credential fields were redacted (hash taken as given)
    checkpoints_verified: int = 0
    checkpoints_total: int = 0
    first_position: int | None = None
    last_position: int = 0
    sealed_through: int = 0
    signed_through: int = 0
    signatures_checked: bool = False
    trusted_key_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    events_per_second: float = 0.0
    warnings: list[str] = field(default_factory=list)
    damage: Damage | None = None

    def as_json(self) -> dict:
        data = asdict(self)
        data["damage"] = self.damage.as_json() if self.damage else None
        return data


class _Found(Exception):
    def __init__(self, damage: Damage):
        self.damage = damage


class Verifier:
    """Walks batches in position order; see the module docstring."""

    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        trusted_keys: Iterable[PublicKey] = (),
        start_after: int = 0,
        start_hash: bytes = GENESIS_HASH,
        progress: Callable[[int, int], None] | None = None,
        total: int = 0,
    ):
        self.checkpoints = {c.position: c for c in checkpoints if c.position > start_after}
        self.cp_positions = sorted(self.checkpoints)
        self.trusted = {k.key_id: k for k in trusted_keys}
        self.prev = start_hash
        self.prev_position = start_after  # position of the last event walked
        self.pending: tuple[int, bytes, int] | None = None  # first unsealed event, hash before it, count
        self.progress = progress
        self.total = total
        self.report = VerifyReport(
            checkpoints_total=len(self.checkpoints),
            signatures_checked=bool(self.trusted),
            trusted_key_ids=sorted(self.trusted),
            signed_through=start_after,
        )

    # driver -----------------------------------------------------------------------------
    def run(self, batches: Iterable[tuple[list, list, int | None]]) -> VerifyReport:
        started = time.perf_counter()
        walked = 0
        stream = iter(batches)
        try:
            for events, chain, bound in stream:
                if self.report.first_position is None and events:
                    self.report.first_position = events[0][0]
                if not self._fast(events, chain, bound):
                    self._slow(events, chain, bound, stream)
                walked += len(events)
                if events:
                    self.report.last_position = events[-1][0]
                if self.progress and events:
                    self.progress(events[-1][0], self.total)
        except _Found as found:
            self.report.intact = False
            self.report.damage = found.damage
        if self.pending and self.report.intact:
            self.report.unsealed_events = self.pending[2]
        self.report.seconds = round(time.perf_counter() - started, 3)
        walked = walked or self.report.events_verified
        self.report.events_per_second = round(walked / self.report.seconds) if self.report.seconds else 0
        if not self.trusted:
            self.report.warnings.append(
                "no public key given: checkpoint signatures were NOT checked, so a re-hashed chain "
                "with re-written checkpoints would not be detected (pass --public-key)"
            )
        if self.report.intact and not self.checkpoints:
            self.report.warnings.append("no signed checkpoints: the chain proves consistency, not authenticity")
        elif self.report.intact and self.report.signed_through < self.report.last_position:
            self.report.warnings.append(
                f"positions after {self.report.signed_through} are not covered by a signed checkpoint yet"
            )
        if self.report.unsealed_events:
            self.report.warnings.append(
                f"{self.report.unsealed_events} event(s) after position {self.report.sealed_through} "
                "are not sealed yet (appended after the sealing projector's last batch)"
            )
        return self.report

    def _checkpoints_in(self, low: int, high: int | None) -> list[int]:
        i = bisect_right(self.cp_positions, low)
        j = len(self.cp_positions) if high is None else bisect_right(self.cp_positions, high)
        return self.cp_positions[i:j]

    # the common case: every event sealed, every hash equal ---------------------------------
    def _fast(self, events: list, chain: list, bound: int | None) -> bool:
        if self.pending is not None or not events or len(chain) != len(events):
            return False
        if any(e[4] is None for e in events):  # redacted lines: position by position
            return False
        if chain[-1][0] != events[-1][0] or chain[0][0] != events[0][0]:
            return False
        positions = [e[0] for e in events]
        if [c[0] for c in chain] != positions:
            return False
        hashes = chain_hashes(self.prev, events)
        if [c[2] for c in chain] != hashes:
            return False
        checks = []
        for c in self._checkpoints_in(self.prev_position, bound):
            i = bisect_left(positions, c)
            if i == len(positions) or positions[i] != c:
                return False
            checks.append((c, hashes[i]))
        for c, digest in checks:
            self._check_checkpoint(self.checkpoints[c], digest, digest)
        self.prev = hashes[-1]
        self.prev_position = positions[-1]
        self.report.events_verified += len(events)
        self.report.sealed_through = positions[-1]
        return True

    # position by position, naming the damage ---------------------------------------------
    def _slow(self, events: list, chain: list, bound: int | None, rest: Iterator) -> None:
        in_range = {c: self.checkpoints[c] for c in self._checkpoints_in(self.prev_position, bound)}
        items = _merge(events, chain, in_range)
        for i, (p, ev, ch, cp) in enumerate(items):
            if ev is None:
                later = chained(items[i + 1:], self._more(rest))
                if any(item[1] is not None for item in later):
                    what = "sealed" if ch is not None else "signed in a checkpoint"
                    raise _Found(Damage("deleted", p, f"position {p} was {what} but its event is missing"))
                what = "sealed" if ch is not None else "signed in a checkpoint"
                raise _Found(
                    Damage(
                        "truncated",
                        p,
                        f"the ledger ends at position {self.prev_position} but position {p} was {what}",
                    )
                )
            if ev[4] is None:  # redacted in the export: the sealed hash stands for the event
                if ch is None:
                    raise _Found(Damage("edited", p, f"the event at position {p} is redacted but was never sealed"))
                self.report.redacted_events += 1
                h = bytes(ch[2])
            else:
                h = entry_hash(self.prev, *ev)
            if ch is None:
                if self.pending is None:
                    self.pending = (p, self.prev, 0)
                self.pending = (self.pending[0], self.pending[1], self.pending[2] + 1)
                self.prev, self.prev_position = h, p
                if cp is not None:
                    self._check_checkpoint(cp, h, None)
                continue
            sealed = bytes(ch[2])
            if self.pending is not None:
                first, before, count = self.pending
                if h == sealed:
                    raise _Found(
                        Damage(
                            "chain_altered",
                            first,
                            f"ledger_chain has no rows for {count} event(s) from position {first}, "
                            f"but position {p} chains over them: the events are intact, chain rows were removed",
                        )
                    )
                raise _Found(
                    Damage(
                        "inserted",
                        first,
                        f"{count} event(s) from position {first} were never sealed, yet position {p} was sealed after them",
                    )
                )
            if h != sealed:
                later = chained(items[i + 1:], self._more(rest))
                raise _Found(self._classify(p, ev, ch, h, later))
            self.prev, self.prev_position = h, p
            self.report.events_verified += 1
            self.report.sealed_through = p
            if cp is not None:
                self._check_checkpoint(cp, h, sealed)

    def _more(self, rest: Iterator) -> Iterator[tuple]:
        for events, chain, bound in rest:
            yield from _merge(events, chain, {})

    def _classify(self, p: int, ev: tuple, ch: tuple, h: bytes, later: Iterator[tuple]) -> Damage:
        sealed = bytes(ch[2])
        prev_sealed_position = ch[1]
        if prev_sealed_position is not None and prev_sealed_position > self.prev_position:
            return Damage(
                "deleted",
                prev_sealed_position,
                f"position {p} was sealed after position {prev_sealed_position}, which is missing",
            )
        # redacted events (no bytes to hash) cannot be matched elsewhere: treat them as absent
        ahead = [(q, o if o is None or o[4] is not None else None, c, k) for q, o, c, k in islice(later, LOOKAHEAD)]
        content = ev[1:]
        next_event = next((a for a in ahead if a[1] is not None), None)
        # the chain row at p was changed, the events still chain through it
        first = ahead[0] if ahead else None
        if first is not None and first[1] is not None and first[2] is not None:
            if entry_hash(h, *first[1]) == bytes(first[2][2]) and first[2][1] == p:
                return Damage("chain_altered", p, f"the ledger_chain row at {p} was changed; the event is intact")
        # the event at p belongs to another sealed position
        sealed_prev = sealed
        for q, other, other_chain, _ in ahead:
            if other_chain is None:
                continue
            if entry_hash(sealed_prev, q, *content) == bytes(other_chain[2]):
                if other is not None and entry_hash(self.prev, p, *other[1:]) == sealed:
                    return Damage("reordered", p, f"the events at positions {p} and {q} were swapped")
                if next_event is not None and next_event[0] == q:
                    return Damage(
                        "deleted", p, f"the event sealed at {p} is missing; later events were moved down one position"
                    )
                return Damage("reordered", p, f"the event at position {p} was sealed at position {q}")
            sealed_prev = bytes(other_chain[2])
        # the event sealed at p now sits one position later: something was put in front of it
        if next_event is not None and entry_hash(self.prev, p, *next_event[1][1:]) == sealed:
            return Damage("inserted", p, f"an unsealed event was put at {p}; the sealed events were moved up")
        return Damage("edited", p, f"the event at position {p} does not hash to the value sealed at {p}")

    def _check_checkpoint(self, cp: Checkpoint, recomputed: bytes, sealed: bytes | None) -> None:
        if self.trusted:
            key = self.trusted.get(cp.key_id)
            if key is None:
                raise _Found(
                    Damage(
                        "foreign_key_checkpoint",
                        cp.position,
                        f"the checkpoint at {cp.position} names key {cp.key_id}; trusted: {', '.join(sorted(self.trusted))}",
                    )
                )
            if not key.verifies(cp):
                raise _Found(
                    Damage("forged_checkpoint", cp.position, f"the signature of the checkpoint at {cp.position} is not valid")
                )
        if cp.entry_hash != recomputed:
            since = self.report.signed_through
            if sealed is not None and sealed == recomputed:
                note = "" if self.trusted else " (signature not checked: no public key)"
                raise _Found(
                    Damage(
                        "rehashed",
                        cp.position,
                        f"ledger_chain agrees with the events but the checkpoint signed at {cp.position}{note} does not: "
                        f"an event after {since} and at or before {cp.position} was changed and the chain recomputed",
                    )
                )
            raise _Found(
                Damage(
                    "edited",
                    cp.position,
                    f"the events after {since} and at or before {cp.position} do not hash to the signed checkpoint",
                )
            )
        self.report.checkpoints_verified += 1
        self.report.signed_through = cp.position


def _merge(events: list, chain: list, checkpoints: dict[int, Checkpoint]) -> list[tuple]:
    """(position, event, chain row, checkpoint) for every position any of them has."""
    by_event = {e[0]: e for e in events}
    by_chain = {c[0]: c for c in chain}
    positions = sorted(set(by_event) | set(by_chain) | set(checkpoints))
    return [(p, by_event.get(p), by_chain.get(p), checkpoints.get(p)) for p in positions]
