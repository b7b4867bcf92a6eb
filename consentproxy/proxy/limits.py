"""Fair use of one worker: what a single client may take of what all clients share.

- `ClientSlots`: requests in flight per client address (beyond: 429). The
  address is the one the proxy derives (from X-Forwarded-For behind a trusted
  proxy); an IPv6 client counts by its /64, which one subscriber holds whole.
- `BodyBudget`: bytes of request bodies held in memory by this worker. Small
  bodies are read whole before an upstream connection is taken, so a client
  that sends slowly holds no slot of the shared pool; the budget bounds what
  that buffering may cost.
- `LimitLog`: each limit that bites is a metric and a log line, at most one
  line per limit every few seconds (an attack would otherwise flood the log).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time

from consentproxy.observability import metrics

logger = logging.getLogger("consentproxy.limits")

LOG_INTERVAL = 10.0


class LimitLog:
    """Counts every time a limit bites; logs the first time, then at most once per `LOG_INTERVAL` per limit."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def hit(self, limit: str, message: str, *args: object) -> None:
        metrics.inc(metrics.LIMITED, limit)
        now = time.monotonic()
        last = self._last.get(limit)
        if last is not None and now - last < self.interval:
            self._quiet[limit] = self._quiet.get(limit, 0) + 1
            return
        self._last[limit] = now
        quiet = self._quiet.pop(limit, 0)
        if quiet:
            logger.warning(message + " (and %d more times since the last such line)", *args, quiet)
        else:
            logger.warning(message, *args)


class ClientSlots:
    """Requests in flight by client, at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, client: str) -> str | None:
        """The key to `release` later, or None when the client has `limit` requests in flight already."""
        key = client_key(client)
        count = self._counts.get(key, 0)
        if self.limit and count >= self.limit:
            return None
        self._counts[key] = count + 1
        return key

    def release(self, key: str) -> None:
        count = self._counts[key] - 1
        if count:
            self._counts[key] = count
        else:
            del self._counts[key]

    def in_flight(self, client: str) -> int:
        return self._counts.get(client_key(client), 0)


@functools.lru_cache(maxsize=4096)
def client_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64 (an IPv4-mapped one as the IPv4 address)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class BodyBudget:
    """Bytes of request bodies this worker holds in memory, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve `size` bytes; False (and nothing reserved) when they do not fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        metrics.BUFFERED_BODY_BYTES.inc(size)
        return True

    def give(self, size: int) -> None:
        if size:
            self.used -= size
            metrics.BUFFERED_BODY_BYTES.dec(size)
