"""WebSocket pass-through: the upgrade and every frame, both ways.

aiohttp does the upstream handshake (its own key), uvicorn the client's;
the upstream's answer decides whether the client is accepted, and with
which subprotocol. Closing either side closes the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
from yarl import URL

from consentproxy.observability import metrics
from consentproxy.proxy.errors import error_page
from consentproxy.proxy.pipeline import Exchange

logger = logging.getLogger("consentproxy.proxy")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The handshake headers belong to each side's own connection.
_HANDSHAKE = frozenset({
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol",
})


async def proxy_websocket(
    exchange: Exchange, receive: Receive, send: Send, session: aiohttp.ClientSession
) -> None:
    scope = exchange.scope
    site = exchange.site
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    url = site.upstream_ws_base + scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode("latin-1")
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in exchange.request_headers if n not in _HANDSHAKE]
    headers.append(("Host", site.fixed_host or exchange.host.decode("latin-1")))
    forwarded = exchange.owned_headers.get(b"x-forwarded-for") if exchange.trusted_peer else None
    headers.append(("X-Forwarded-For", f"{forwarded.decode('latin-1')}, {exchange.peer}" if forwarded
                    else exchange.peer))
    headers.append(("X-Forwarded-Proto", "https" if exchange.scheme in ("https", "wss") else "http"))
    try:
        async with asyncio.timeout(site.config.connect_timeout + site.config.read_timeout):
            upstream = await session.ws_connect(
                URL(url, encoded=True), headers=headers, protocols=scope.get("subprotocols", ()),
                autoclose=False, autoping=True, max_msg_size=16 * 1024 * 1024, compress=0,
            )
    except aiohttp.WSServerHandshakeError as exc:
        metrics.count_request(site.name, exc.status)
        await _deny(scope, send, exc.status if 400 <= exc.status < 600 else 502)
        return
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        status = 504 if isinstance(exc, TimeoutError) else 502
        metrics.inc(metrics.UPSTREAM_ERRORS, site.name, "websocket")
        logger.warning("site %s: websocket upstream failed: %s", site.name, exc)
        metrics.count_request(site.name, status)
        await _deny(scope, send, status)
        return
    metrics.count_request(site.name, 101)
    await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
    to_upstream = asyncio.ensure_future(_client_to_upstream(receive, upstream))
    to_client = asyncio.ensure_future(_upstream_to_client(upstream, send))
    try:
        await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        await upstream.close()


async def _client_to_upstream(receive: Receive, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            else:
                await upstream.send_bytes(message.get("bytes") or b"")
        elif message["type"] == "websocket.disconnect":
            code = message.get("code", 1000)
            await upstream.close(code=code if 1000 <= code < 5000 and code not in (1005, 1006) else 1000)
            return


async def _upstream_to_client(upstream: aiohttp.ClientWebSocketResponse, send: Send) -> None:
    code = 1000
    async for message in upstream:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        elif message.type == aiohttp.WSMsgType.CLOSE:
            code = message.data if isinstance(message.data, int) else 1000
            break
        elif message.type == aiohttp.WSMsgType.ERROR:
            code = 1011
            break
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code if code not in (1005, 1006) else 1000})


async def _deny(scope: MutableMapping[str, Any], send: Send, status: int) -> None:
    """Refuse the handshake with an HTTP status where the server supports it."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers, body = error_page(status)
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})
