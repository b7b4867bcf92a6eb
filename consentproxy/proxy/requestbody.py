"""Reading a small request body whole, for the proxy's own endpoints (the upstream gets bodies streamed)."""

from __future__ import annotations

from consentproxy.proxy.pipeline import Receive


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes `limit` bytes instead of buffering the rest."""
    chunks: list[bytes] = []
    total = 0
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
