"""The proxy's ASGI entry: route by Host, establish who the client is, hand over.

Requests for unknown hosts get 421 and never reach any upstream. A client
with `max_requests_per_client` requests in flight in this worker gets 429
for the next, so one address cannot take what the other visitors need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

from consentproxy.observability import metrics
from consentproxy.proxy.errors import error_page
from consentproxy.proxy.handler import ProxyHandler, send_error
from consentproxy.proxy.headers import header_names, set_aside, split_request_headers
from consentproxy.proxy.limits import ClientSlots, LimitLog
from consentproxy.proxy.pipeline import Exchange
from consentproxy.proxy.websocket import proxy_websocket
from consentproxy.runtime import Runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ProxyApp:
    def __init__(self, runtime: Runtime, session: aiohttp.ClientSession) -> None:
        self.runtime = runtime
        self.session = session
        limits = runtime.config.server.limits
        self.limit_log = LimitLog()
        self.clients = ClientSlots(limits.max_requests_per_client)
        self.handler = ProxyHandler(session, runtime.config.server.access_log, limits, self.limit_log)

    def _exchange(self, scope: Scope) -> Exchange | int:
        """The exchange for a request, or the status to refuse it with."""
        runtime = self.runtime
        passed, owned = split_request_headers(scope["headers"])
        host = owned.get(b"host")
        if host is None:  # the HTTP protocol refuses this already; websockets pass another path
            return 400
        site = runtime.router.route(host)
        if site is None:
            return 421
        if scope["raw_path"][:1] != b"/":
            return 400
        client_addr = scope.get("client")
        peer = client_addr[0] if client_addr else "0.0.0.0"
        proxies = runtime.trusted
        trusted = bool(proxies.networks) and proxies.is_trusted(peer)
        client = proxies.client_address(peer, owned.get(b"x-forwarded-for")) if trusted else peer
        scheme = scope.get("scheme", "http")
        extra = site.config.client_address_headers
        if extra:
            passed = set_aside(passed, owned, header_names(extra))
        return Exchange(scope, site, peer, trusted, client, scheme, passed, owned)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange(scope)
        if isinstance(exchange, int):
            metrics.inc(metrics.REJECTED, str(exchange))
            await send_error(send, exchange)
            return
        # A trusted proxy that names no client (its health checks) is not limited as one.
        key: str | None = None
        if not (exchange.trusted_peer and exchange.client == exchange.peer):
            key = self.clients.acquire(exchange.client)
            if key is None:
                await self._too_many(exchange, send)
                return
        try:
            await self.handler(exchange, receive, send)
        finally:
            if key is not None:
                self.clients.release(key)

    async def _too_many(self, exchange: Exchange, send: Send) -> None:
        self.limit_log.hit("client_requests", "client %s has %d requests in flight (max_requests_per_client): 429",
                           exchange.client, self.clients.limit)
        metrics.count_request(exchange.site.name, 429)
        headers, body = error_page(429)
        headers = [*headers, (b"retry-after", b"1")]
        owned = exchange.owned_headers
        if b"content-length" in owned or b"transfer-encoding" in owned:  # its body is not read: the connection ends
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange(scope)
        if isinstance(exchange, int):
            metrics.inc(metrics.REJECTED, str(exchange))
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await proxy_websocket(exchange, receive, send, self.session)
