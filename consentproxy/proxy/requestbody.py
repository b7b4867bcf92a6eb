"""Reading request bodies from ASGI receive(), under deadlines.

A client that stops sending must cost no more than its own connection: every
read has a deadline. For the upstream path (`RequestBody`) it is the site's:
the body may take `body_grace` plus one second per `body_min_rate` bytes that
arrived, and never more than `body_timeout` in all (mod_reqtimeout's rule, so
a large upload on a slow line passes while a trickle of one byte every few
seconds is cut). The proxy's own endpoints read small bodies whole with
`read_body`, within a fixed time.
"""

from __future__ import annotations

import asyncio

from consentproxy.config.model import SiteConfig
from consentproxy.proxy.pipeline import Receive

#: the most the proxy's own endpoints (consent API, analytics) wait for their small bodies
ENDPOINT_BODY_TIMEOUT = 30.0


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class BodyTimeout(ClientGone):
    """The body did not arrive within its deadline; for callers of `read_body`, as if the client had gone."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes `limit` bytes instead of buffering the rest, and
    giving up (BodyTimeout) after `ENDPOINT_BODY_TIMEOUT`."""
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(ENDPOINT_BODY_TIMEOUT):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk: bytes = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyTimeout from None


class RequestBody:
    """One request body on its way upstream: read chunk by chunk, each read within the body's deadline.

    The outcome stays here for the handler (the upload may fail inside aiohttp, which only reports a
    broken connection): `done`, or why not (`client_gone`, `too_large`, `timed_out`).
    """

    __slots__ = ("_grace", "_limit", "_rate", "_receive", "_started", "_total", "client_gone", "done", "received",
                 "timed_out", "too_large")

    def __init__(self, receive: Receive, config: SiteConfig) -> None:
        self._receive = receive
        self._limit = config.max_body_bytes
        self._grace = config.body_grace
        self._rate = config.body_min_rate
        self._total = config.body_timeout
        self._started = asyncio.get_running_loop().time()
        self.received = 0
        self.done = False
        self.client_gone = False
        self.too_large = False
        self.timed_out = False

    @property
    def failed(self) -> bool:
        return self.client_gone or self.too_large or self.timed_out

    def deadline(self) -> float:
        """When the next bytes are due: later the more arrived, at most `body_timeout` after the start."""
        allowed = self._total
        if self._rate:
            allowed = min(allowed, self._grace + self.received / self._rate)
        return self._started + allowed

    async def read(self) -> tuple[bytes, bool]:
        """The next chunk, and whether more follow. Raises ClientGone, BodyTooLarge or BodyTimeout."""
        try:
            async with asyncio.timeout_at(self.deadline()):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            self.client_gone = True
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if self.received > self._limit:
            self.too_large = True
            raise BodyTooLarge
        more: bool = message.get("more_body", False)
        self.done = not more
        return chunk, more

    @property
    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._started
