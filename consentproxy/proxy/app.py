"""The proxy's ASGI entry: route by Host, establish who the client is, hand over.

Requests for unknown hosts get 421 and never reach any upstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

from consentproxy.observability import metrics
from consentproxy.proxy.handler import ProxyHandler, send_error
from consentproxy.proxy.headers import split_request_headers
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
        self.handler = ProxyHandler(session, runtime.config.server.access_log)

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
        return Exchange(scope, site, peer, trusted, client, scheme, passed, owned)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange(scope)
        if isinstance(exchange, int):
            metrics.inc(metrics.REJECTED, str(exchange))
            await send_error(send, exchange)
            return
        await self.handler(exchange, receive, send)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange(scope)
        if isinstance(exchange, int):
            metrics.inc(metrics.REJECTED, str(exchange))
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await proxy_websocket(exchange, receive, send, self.session)
