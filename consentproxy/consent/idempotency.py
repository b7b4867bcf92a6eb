"""Making a retried decision count once: answers remembered by Idempotency-Key.

A browser may send a POST twice (a kept-alive connection that drops), and the
banner retries after a timeout. The same key with the same consent cookie
and the same body gets the first answer again — same principal, same time,
same cookie — and is not counted again. The same key with another body is a
client bug and is refused. Kept per worker process in memory, for a day.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

from consentproxy.proxy.pipeline import Reply

TTL_SECONDS = 24 * 3600
MAX_ENTRIES = 20_000


class KeyReused(Exception):
    """The same Idempotency-Key came with a different decision."""


@dataclass(frozen=True, slots=True)
class Replay:
    reply: Reply


class IdempotencyCache:
    def __init__(self, ttl: float = TTL_SECONDS, limit: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.limit = limit
        # (key, consent cookie) → (stored at, body digest, answer); oldest first
        self._entries: OrderedDict[tuple[bytes, bytes], tuple[float, bytes, Replay]] = OrderedDict()

    def get(self, key: bytes, cookie: bytes, body: bytes) -> Replay | None:
        """The first answer to this key, or None; KeyReused when the key came with another body."""
        self._expire(time.monotonic())
        entry = self._entries.get((key, cookie))
        if entry is None:
            return None
        if entry[1] != hashlib.sha256(body).digest():
            raise KeyReused
        return entry[2]

    def put(self, key: bytes, cookie: bytes, body: bytes, replay: Replay) -> None:
        now = time.monotonic()
        self._entries[(key, cookie)] = (now, hashlib.sha256(body).digest(), replay)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._entries:
            stored_at = next(iter(self._entries.values()))[0]
            if now - stored_at < self.ttl:
                break
            self._entries.popitem(last=False)
