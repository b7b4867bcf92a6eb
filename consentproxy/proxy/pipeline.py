"""The per-site pipeline: each feature is a step with request/response hooks.

The core (`proxy.handler`) knows the order; each step knows its own job, in
the manner of mitmproxy's addons. A step may edit the upstream request
headers, answer the request itself, edit the response headers, or give the
response body a filter (fed chunk by chunk, or the whole body when it came at
once). Steps are built once per site when the configuration loads, never per
request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consentproxy.proxy.sites import Site

#: a host name or an IP address, with an optional port: what an origin we write into a page may hold
_ORIGIN_HOST = re.compile(r"(?:[a-z0-9_-]+\.)*[a-z0-9_-]+\.?(?::[0-9]{1,5})?|\[[0-9a-f:.]+\](?::[0-9]{1,5})?")


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


    def public_origin(self) -> str:
        """The origin the visitor's browser is on ("https://shop.nl:8443"): the scheme and host a trusted proxy
        in front of us forwarded, else ours; "" when the host is no plain host name or address (nothing
        taken from a request goes into a page unchecked)."""
        owned = self.owned_headers
        proto = owned.get(b"x-forwarded-proto", b"") if self.trusted_peer else b""
        scheme = proto.split(b",")[0].strip().lower().decode("latin-1") or self.scheme
        host = (owned.get(b"x-forwarded-host") if self.trusted_peer else None) or self.host
        name = host.split(b",")[0].strip().lower().decode("latin-1")
        if scheme not in ("http", "https") or not _ORIGIN_HOST.fullmatch(name):
            return ""
        return f"{scheme}://{name}"


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


class FilterFailed(Exception):
    """A body filter cannot go on (the body does not decode as its headers say): the response fails.

    Before anything was sent the client gets a 502; after, the connection is cut.
    """


class BodyFilter:
    """Rewrites one response body. Synchronous: the core drives it, and skips any await per chunk.

    `feed` returns the output ready so far, `finish` the rest. When the whole body is already here
    as the response starts (a page that came in one read), the core calls `whole` instead and sends
    the result with its Content-Length.
    """

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def whole(self, data: bytes) -> bytes:
        out = self.feed(data)
        return out + self.finish()


class Step:
    """Base class: override only the hooks a feature needs."""

    #: set by steps that override `body_filter`, so the others cost nothing per body
    filters_body = False

    def on_request(self, exchange: Exchange) -> Reply | Endpoint | None:
        return None

    def on_response(self, exchange: Exchange) -> None:
        return None

    def body_filter(self, exchange: Exchange) -> BodyFilter | None:
        """Return a filter to rewrite this response's body, or None to pass it through."""
        return None
