"""Verifying one site's log as stored, for the admin API (the offline `verify` checks exports instead).

`verify_chain` proves the events link up and match every signed checkpoint;
it cannot see events cut off after the last checkpoint. The store's chain
head row is updated in the same transaction as every append, so comparing
it with what the events reach catches such a truncation too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consentproxy.records.chain import verify_chain
from consentproxy.records.checkpoint import key_id, public_key_text
from consentproxy.records.model import ConsentEvent
from consentproxy.records.store import RecordStore


def verify_site(store: RecordStore, site: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The verdict on a site's stored log, as JSON: `ok`, and when not, the first bad seq and why.

    Blocking and as long as the log: run it on a thread with a connection of its own.
    """
    # The head first, then checkpoints, then events: whatever is appended meanwhile only adds to the end.
    head_seq, head_hash = store.head(site)
    checkpoints = store.checkpoints(site)
    seen: dict[str, str] = {}

    def watched(events: Iterator[ConsentEvent]) -> Iterator[ConsentEvent]:
        for event in events:
            if event.seq == head_seq:
                seen["hash"] = event.hash
            yield event

    verdict = verify_chain(watched(store.events(site)), checkpoints, public_key, site)
    if verdict.ok and head_seq:
        reached = verdict.last_seq if verdict.last_seq is not None else max(
            (cp.seq for cp in checkpoints if cp.kind == "cut"), default=0)
        at_head = seen.get("hash", verdict.head if reached == head_seq else None)
        if reached < head_seq:
            verdict = dataclasses.replace(
                verdict, ok=False, bad_seq=reached + 1, code="truncated",
                reason=f"the log ends at seq {reached} but its chain head is at seq {head_seq} (records cut off)")
        elif at_head != head_hash:
            verdict = dataclasses.replace(
                verdict, ok=False, bad_seq=head_seq, code="head",
                reason=f"the record at seq {head_seq} does not carry the hash of the stored chain head")
    return {**dataclasses.asdict(verdict), "site": site, "verdict": str(verdict),
            "store_head": {"seq": head_seq, "hash": head_hash},
            "public_key": public_key_text(public_key), "key_id": key_id(public_key)}
