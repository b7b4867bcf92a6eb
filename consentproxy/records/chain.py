"""Tamper evidence: one hash chain per site, and its offline verification.

    hash = SHA-256(prev_hash as 32 raw bytes ‖ canonical(hashed form))

with prev_hash of the site's first event = 64 zeros. The hashed form holds
every field of the event except the raw personal values, their salt and the
idempotency key (a transport detail):

    {v, record_id, site, seq, time, notice_id, event_type, method, choices,
     expires_at, regime, principal_c, ip_c, ua_c, country_c}

where `*_c` is `commitment(salt, field, value)` or null when there was no
value, and times are `YYYY-MM-DDTHH:MM:SS.mmmZ`. Erasing a principal deletes
the raw values and the salt, keeps the commitments: every hash still
recomputes. While the salt is there, verification also checks that each raw
value matches its commitment, so editing a raw field is detected too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consentproxy.records.checkpoint import Checkpoint, checkpoint_problem
from consentproxy.records.model import (
    EVENT_TYPES,
    METHODS,
    PERSONAL_FIELDS,
    ConsentEvent,
    canonical,
    commitment,
    iso_ms,
)

GENESIS = "0" * 64


def hashed_form(event: ConsentEvent, seq: int | None = None) -> dict[str, Any]:
    """The part of an event the chain covers: no raw personal data, only commitments to it."""
    commitments = event.commitments
    return {
        "v": event.schema_version, "record_id": event.record_id, "site": event.site,
        "seq": event.seq if seq is None else seq, "time": iso_ms(event.time), "notice_id": event.notice_id,
        "event_type": event.event_type, "method": event.method, "choices": dict(event.choices),
        "expires_at": iso_ms(event.expires_at), "regime": event.regime,
        "principal_c": commitments.get("principal"), "ip_c": commitments.get("ip"),
        "ua_c": commitments.get("ua"), "country_c": commitments.get("country"),
    }


def event_hash(prev_hash: str, event: ConsentEvent, seq: int | None = None) -> str:
    """The hash of `event` chained after `prev_hash` (at `seq`, if it is not the event's own yet)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(hashed_form(event, seq))).hexdigest()


def link(events: Iterable[ConsentEvent], seq: int, head: str) -> list[ConsentEvent]:
    """Chain `events` after the head (seq, hash) of one site; returns them with seq, prev_hash and hash set."""
    linked = []
    for event in events:
        seq += 1
        digest = event_hash(head, event, seq)
        linked.append(event.chained(seq, head, digest))
        head = digest
    return linked


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a verification; when not ok, `bad_seq` is the first record that fails and why."""

    ok: bool
    site: str | None
    count: int  # events checked
    first_seq: int | None
    last_seq: int | None
    head: str  # hash after the last event checked
    checkpoints: int  # checkpoints whose signature verified
    bad_seq: int | None = None
    code: str | None = None  # stable: gap, order, link, hash, commitment, malformed, site, start, checkpoint, truncated
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            span = f"seq {self.first_seq}-{self.last_seq}" if self.count else "no events"
            return (f"OK: {self.count} events ({span}) of {self.site or '-'} verify; head {self.head}; "
                    f"{self.checkpoints} signed checkpoints")
        return f"FAILED at seq {self.bad_seq}: {self.reason}"


def _malformed(event: ConsentEvent) -> str | None:
    if event.event_type not in EVENT_TYPES:
        return f"unknown event type {event.event_type!r}"
    if event.method not in METHODS:
        return f"unknown method {event.method!r}"
    if set(event.commitments) != set(PERSONAL_FIELDS) or event.commitments.get("principal") is None:
        return "commitments missing or incomplete"
    if not all(isinstance(value, bool) for value in event.choices.values()):
        return "choices are not booleans"
    if len(event.prev_hash) != 64 or len(event.hash) != 64:
        return "chain fields are not SHA-256 hex"
    try:
        bytes.fromhex(event.prev_hash)
        if event.salt is not None:
            bytes.fromhex(event.salt)
    except ValueError:
        return "chain fields or salt are not hex"
    return None


def _commitment_problem(event: ConsentEvent) -> str | None:
    raw = {"principal": event.principal, "ip": event.ip, "ua": event.ua, "country": event.country}
    for name, value in raw.items():
        committed = event.commitments.get(name)
        if event.salt is None:
            if value is not None:
                return f"{name} present without the salt to check it against its commitment"
            continue
        if value is None:
            # Only an erasure may drop a raw value, and it drops the salt too.
            if committed is not None:
                return f"{name} removed but the salt kept (not an erasure)"
        elif committed is None or commitment(event.salt, name, value) != committed:
            return f"{name} does not match its commitment"
    return None


def verify_chain(events: Iterable[ConsentEvent], checkpoints: Sequence[Checkpoint],
                 public_key: Ed25519PublicKey, site: str | None = None) -> Verdict:
    """Check one site's events (in seq order, streamed) against the chain and the signed checkpoints.

    A log whose first seq is not 1 (purged) must start right after a `cut`
    checkpoint, whose head it continues from. Every checkpoint within the log
    must match the head at its seq; one beyond the last event means records
    were cut off the end.
    """
    pending = sorted(checkpoints, key=lambda cp: (cp.seq, cp.kind))
    verified = 0
    site_name = site
    count = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head = GENESIS
    index = 0

    def fail(seq: int, code: str, reason: str) -> Verdict:
        return Verdict(False, site_name, count, first_seq, last_seq, head, verified, seq, code, reason)

    def check_checkpoints_at(seq: int, expect_head: str | None) -> Verdict | None:
        """Verify every checkpoint up to seq; those exactly at seq must carry `expect_head` (if known)."""
        nonlocal index, verified
        while index < len(pending) and pending[index].seq <= seq:
            cp = pending[index]
            index += 1
            if site_name is not None and cp.site != site_name:
                return fail(cp.seq, "checkpoint", f"checkpoint belongs to another site ({cp.site})")
            problem = checkpoint_problem(cp, public_key)
            if problem:
                return fail(cp.seq, "checkpoint", problem)
            verified += 1
            if cp.seq == seq and expect_head is not None and cp.head != expect_head:
                return fail(seq, "checkpoint",
                            f"chain head at seq {seq} differs from the signed checkpoint "
                            "(records up to here were rewritten)")
        return None

    for event in events:
        if first_seq is None:
            site_name = site_name or event.site
            first_seq = event.seq
            if event.seq != 1:
                cut = next((cp for cp in pending if cp.seq == event.seq - 1 and cp.kind == "cut"), None)
                if cut is None or cut.site != site_name or checkpoint_problem(cut, public_key):
                    return fail(event.seq, "start",
                                f"the log starts at seq {event.seq} without a signed cut checkpoint at seq "
                                f"{event.seq - 1} (records deleted outside a purge?)")
                head = cut.head
            problem = check_checkpoints_at(event.seq - 1, head)
            if problem:
                return problem
        expected = (last_seq or first_seq - 1) + 1
        if event.site != site_name:
            return fail(event.seq, "site", f"record of another site ({event.site})")
        if event.seq > expected:
            return fail(expected, "gap", f"record missing: expected seq {expected}, found {event.seq}")
        if event.seq < expected:
            return fail(event.seq, "order", f"record out of order or duplicated: expected seq {expected}")
        malformed = _malformed(event)
        if malformed:
            return fail(event.seq, "malformed", malformed)
        if event.prev_hash != head:
            return fail(event.seq, "link", f"prev_hash does not match the hash of seq {event.seq - 1}")
        if event_hash(head, event) != event.hash:
            return fail(event.seq, "hash", "record content does not match its hash (edited)")
        problem_text = _commitment_problem(event)
        if problem_text:
            return fail(event.seq, "commitment", problem_text)
        head = event.hash
        last_seq = event.seq
        count += 1
        problem = check_checkpoints_at(event.seq, head)
        if problem:
            return problem

    if last_seq is None:
        # Nothing left (or never anything): the checkpoints must still be genuine.
        problem = check_checkpoints_at(pending[-1].seq if pending else 0, None)
        if problem:
            return problem
        cuts = [cp for cp in pending if cp.kind == "cut"]
        cut_seq = cuts[-1].seq if cuts else 0
        if pending and pending[-1].seq > cut_seq:
            return fail(cut_seq + 1, "truncated",
                        f"no records left, but a signed checkpoint covers seq {pending[-1].seq}")
        return Verdict(True, site_name, 0, None, None, cuts[-1].head if cuts else GENESIS, verified)
    if index < len(pending):
        return fail(last_seq + 1, "truncated",
                    f"the log ends at seq {last_seq} but a signed checkpoint covers seq {pending[-1].seq}")
    return Verdict(True, site_name, count, first_seq, last_seq, head, verified)
