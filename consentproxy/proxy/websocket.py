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
from consentproxy.proxy.forwarding import upstream_request_headers
from consentproxy.proxy.pipeline import Exchange
from consentproxy.proxy.upstream import header_text

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
    url = site.upstream_ws_base + header_text(scope["raw_path"])
    if scope["query_string"]:
        url += "?" + header_text(scope["query_string"])
    headers = upstream_request_headers(exchange, skip=_HANDSHAKE)
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
    to_client = asyncio.ensure_future(_upstream_to_client(upstream, send, site.name))
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
            if code == 1006:
                code = _CLIENT_BROKE_OFF
            await upstream.close(code=code if 1000 <= code < 5000 and code not in _NO_CLOSE_CODE else 1000)
            return


#: close codes that say the peer's connection ended without a closing handshake (no code, abnormal)
_NO_CLOSE_CODE = frozenset({1005, 1006})
#: "bad gateway": what the client gets when the upstream connection broke off (1006 cannot be sent)
_UPSTREAM_BROKE_OFF = 1014
#: "going away": what the upstream gets when the client's connection broke off
_CLIENT_BROKE_OFF = 1001


async def _upstream_to_client(upstream: aiohttp.ClientWebSocketResponse, send: Send, site: str) -> None:
    """Frames to the client, then the upstream's own close code.

    Read with receive(), not `async for`: the iterator swallows the closing frame and so its code, and
    aiohttp reports a connection that broke off without a closing frame as a normal closure. That must
    never reach the client as one: it gets 1014 ("bad gateway"), counted and logged.
    """
    while True:
        message = await upstream.receive()
        kind = message.type
        if kind == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif kind == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        elif kind == aiohttp.WSMsgType.CLOSE:
            code = message.data if isinstance(message.data, int) and _sendable(message.data) else 1000
            break
        elif kind == aiohttp.WSMsgType.ERROR:
            code = 1011
            break
        elif kind in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            code = _UPSTREAM_BROKE_OFF
            logger.warning("site %s: websocket upstream broke off without a closing handshake", site)
            break
    if code in (1011, _UPSTREAM_BROKE_OFF):
        metrics.inc(metrics.UPSTREAM_ERRORS, site, "websocket_broke_off")
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code})


def _sendable(code: int) -> bool:
    """A close code that may go out in a closing frame (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


async def _deny(scope: MutableMapping[str, Any], send: Send, status: int) -> None:
    """Refuse the handshake with an HTTP status where the server supports it."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers, body = error_page(status)
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})
