"""The per-site pipeline: each feature is a step with request/response hooks.

The core (`proxy.handler`) knows the order; each step knows its own job, in
the manner of mitmproxy's addons. A step may edit the upstream request
headers, answer the request itself, edit the response headers, or wrap the
response body in a streaming filter. Steps are built once per site when the
configuration loads, never per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consentproxy.proxy.sites import Site


class Exchange:
    """One proxied request and, once it arrives, its upstream response."""

    __slots__ = (
        "client",
        "extra",
        "host",
        "method",
        "owned_headers",
        "peer",
        "request_headers",
        "response_headers",
        "scheme",
        "scope",
        "site",
        "status",
        "trusted_peer",
    )

    def __init__(
        self,
        scope: MutableMapping[str, Any],
        site: Site,
        peer: str,
        trusted_peer: bool,
        client: str,
        scheme: str,
        request_headers: list[tuple[bytes, bytes]],
        owned_headers: dict[bytes, bytes],
    ) -> None:
        self.scope = scope
        self.site = site
        #: the address of the TCP peer, and whether it is a configured trusted proxy
        self.peer = peer
        self.trusted_peer = trusted_peer
        #: the visitor's address (from X-Forwarded-For when the peer is trusted)
        self.client = client
        self.scheme = scheme
        self.host: bytes = owned_headers[b"host"]
        self.method: str = scope.get("method", "GET")
        #: end-to-end headers to send upstream; steps may edit this list
        self.request_headers = request_headers
        #: headers the proxy owns (Host, framing, forwarding), by lower-case name
        self.owned_headers = owned_headers
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.extra: dict[str, Any] = {}


class Reply:
    """A response a step produces instead of asking the upstream."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Endpoint:
    """One of the proxy's own URLs that must read the request body or wait (the consent API).

    A step returns it from `on_request` instead of a Reply; the core then
    awaits it with the ASGI `receive` so it can read the body.
    """

    async def respond(self, exchange: Exchange, receive: Receive) -> Reply:
        raise NotImplementedError


class Step:
    """Base class: override only the hooks a feature needs."""

    #: set by steps that override `body_filter`, so the others cost nothing per body
    filters_body = False

    def on_request(self, exchange: Exchange) -> Reply | Endpoint | None:
        return None

    def on_response(self, exchange: Exchange) -> None:
        return None

    def body_filter(self, exchange: Exchange, body: AsyncIterator[bytes]) -> AsyncIterator[bytes] | None:
        """Return a new body iterator to rewrite the response, or None to pass it through."""
        return None
