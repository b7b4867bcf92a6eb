"""The HTTP proxy path: one request in, one upstream request out, streamed.

Raw ASGI on purpose (see GUIDE §2): no request objects, no middleware. Bodies
stream in both directions with back-pressure on both sides, so a 1 GB upload
or download never sits in memory; only a small request body is read whole
first, so that a client sending slowly holds no upstream connection while it
does (see `_read_body`), and every body has a deadline. When the client
goes away the server protocol cancels this task (message `CLIENT_GONE`); the
handler then drops the upstream connection instead of letting it finish for
nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
from aiohttp import hdrs
from yarl import URL

from consentproxy.cancellation import is_client_gone
from consentproxy.config.model import Limits
from consentproxy.observability import metrics
from consentproxy.observability.accesslog import log_request
from consentproxy.proxy.errors import error_page
from consentproxy.proxy.forwarding import upstream_request_headers
from consentproxy.proxy.headers import filter_response_headers
from consentproxy.proxy.limits import BodyBudget, LimitLog
from consentproxy.proxy.pipeline import BodyFilter, Endpoint, Exchange, FilterFailed, Reply
from consentproxy.proxy.requestbody import BodyTimeout, BodyTooLarge, ClientGone, RequestBody
from consentproxy.proxy.upstream import header_text

logger = logging.getLogger("consentproxy.proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_VIA = b"1.1 consentproxy"
_BODYLESS_STATUS = frozenset({204, 304})


class UpstreamAborted(Exception):
    """The upstream failed after the response started: the client connection must be cut.

    Raised to uvicorn on purpose (it closes the connection without ending the
    chunked body, so the client sees a truncated response, not a short one).
    """


class ProxyHandler:
    """Forwards one HTTP request for a routed site. Holds per-worker state only."""

    def __init__(self, session: aiohttp.ClientSession, access_log: bool, limits: Limits | None = None,
                 limit_log: LimitLog | None = None) -> None:
        self.session = session
        self.access_log = access_log
        limits = limits or Limits()
        #: bodies up to this size are read whole before an upstream connection is taken
        self.buffer_bytes = limits.body_buffer_bytes
        self.budget = BodyBudget(limits.max_buffered_bytes)
        self.limit_log = limit_log or LimitLog()

    async def __call__(self, exchange: Exchange, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, sent = await self._proxy(exchange, receive, send, started)
        except asyncio.CancelledError as exc:
            if not is_client_gone(exc):
                raise
            # Nobody is waiting for this response any more: absorb our own cancellation.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, "client_disconnect")
            status, sent = 499, 0
        metrics.count_request(exchange.site.name, status)
        if self.access_log:
            scope = exchange.scope
            log_request(exchange.site.name, exchange.method, scope["path"], scope["query_string"], status,
                        exchange.client, started, sent)

    async def _proxy(self, exchange: Exchange, receive: Receive, send: Send, started: float) -> tuple[int, int]:
        scope = exchange.scope
        site = exchange.site
        owned = exchange.owned_headers
        for step in site.steps:
            reply = step.on_request(exchange)
            if reply is not None:
                if isinstance(reply, Endpoint):
                    reply = await reply.respond(exchange, receive)
                return await _send_reply(send, reply), len(reply.body)

        # Message framing: the protocol refused CL+TE together; re-derive it here.
        transfer_encoding = owned.get(b"transfer-encoding")
        content_length: int | None = None
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != b"chunked":
                return await send_error(send, 501, "Only the chunked transfer coding is supported."), 0
        elif b"content-length" in owned:
            try:
                content_length = int(owned[b"content-length"])
            except ValueError:
                return await send_error(send, 400, "Invalid Content-Length."), 0
            if content_length < 0:
                return await send_error(send, 400, "Invalid Content-Length."), 0
            if content_length > site.config.max_body_bytes:
                return await send_error(send, 413, close=True), 0

        upstream_headers = upstream_request_headers(exchange, content_length)
        url = site.upstream_base + header_text(scope["raw_path"])
        query = scope["query_string"]
        if query:
            url += "?" + header_text(query)

        body: RequestBody | None = None
        data: bytes | _StreamedBody | None = None
        held = 0  # bytes of the budget this request holds
        try:
            if transfer_encoding is not None or content_length:
                body = RequestBody(receive, site.config)
                try:
                    data, held = await self._read_body(body, content_length)
                except BodyTimeout:
                    return await self._body_late(exchange, send, body), 0
                except ClientGone:
                    return 499, 0
                except BodyTooLarge:
                    return await send_error(send, 413, close=True), 0
            return await self._forward(exchange, send, started, url, upstream_headers, data, body)
        finally:
            self.budget.give(held)

    async def _forward(
        self, exchange: Exchange, send: Send, started: float, url: str, upstream_headers: list[tuple[str, str]],
        data: bytes | _StreamedBody | None, body: RequestBody | None,
    ) -> tuple[int, int]:
        site = exchange.site
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self.session.request(
                exchange.method, URL(url, encoded=True), headers=upstream_headers, data=data,
                allow_redirects=False, timeout=site.timeout, compress=None,
            )
            site.latency.observe(time.perf_counter() - started)
            return await self._respond(exchange, response, send)
        except asyncio.CancelledError:
            if response is not None:
                response.close()  # a half-read upstream connection cannot be reused
            raise
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            return await self._upstream_failed(exchange, send, response, body, "timeout", 504, exc)
        except aiohttp.ClientConnectorError as exc:
            return await self._upstream_failed(exchange, send, response, body, "connect", 502, exc)
        except (aiohttp.ClientError, OSError) as exc:
            return await self._upstream_failed(exchange, send, response, body, "protocol", 502, exc)

    async def _read_body(self, body: RequestBody, content_length: int | None) -> tuple[bytes | _StreamedBody, int]:
        """The body to send upstream, and the bytes of the budget it holds.

        A body of at most `buffer_bytes` is read whole first, so the upstream connection is taken only
        once it is complete: a client sending slowly then holds no slot of the shared pool. A larger one
        (or one the worker's budget cannot hold) streams once its first bytes are here, within its deadline.
        """
        buffer = content_length is None or content_length <= self.buffer_bytes
        parts: list[bytes] = []
        held = 0
        while True:
            chunk, more = await body.read()
            if buffer and chunk:
                if held + len(chunk) > self.buffer_bytes:
                    buffer = False
                elif self.budget.take(len(chunk)):
                    held += len(chunk)
                else:
                    buffer = False
                    self.limit_log.hit("buffer_budget", "request bodies fill this worker's buffer (max_buffered_bytes"
                                       " = %d): a body streams upstream as it comes instead", self.budget.limit)
            if not more:
                if not parts:
                    return chunk, held  # the whole body in one message (b"" for an empty chunked one)
                parts.append(chunk)
                return b"".join(parts), held
            if chunk:
                parts.append(chunk)
            if not buffer:
                return _StreamedBody(body, parts), held

    async def _body_late(self, exchange: Exchange, send: Send, body: RequestBody) -> int:
        """408 and close: the body did not arrive in time (whatever reached the upstream was cut off)."""
        config = exchange.site.config
        self.limit_log.hit("body_deadline", "site %s: request body from %s too slow (%d bytes in %.1fs; "
                           "body_grace %gs, body_min_rate %d B/s, body_timeout %gs): 408", exchange.site.name,
                           exchange.client, body.received, body.elapsed, config.body_grace, config.body_min_rate,
                           config.body_timeout)
        return await send_error(send, 408, close=True)

    async def _respond(self, exchange: Exchange, response: aiohttp.ClientResponse, send: Send) -> tuple[int, int]:
        status = response.status
        if not 200 <= status <= 599:
            # aiohttp skips interim 1xx answers itself; what is left is no final answer to a request that
            # asked for no upgrade (101, 1xx), or no HTTP status at all (600, 099): the server could not
            # even write its status line.
            response.close()
            metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, "status")
            logger.warning("site %s: upstream answered %s %s with status %d, not a final HTTP status",
                           exchange.site.name, exchange.method, exchange.scope["path"], status)
            return await send_error(send, 502), 0
        bodyless_status = status in _BODYLESS_STATUS
        has_body = exchange.method != "HEAD" and not bodyless_status
        if has_body and hdrs.TRANSFER_ENCODING in response.headers:
            codings = response.headers.getall(hdrs.TRANSFER_ENCODING)
            if not _only_chunked(codings):
                # aiohttp undoes the chunked coding only: the body left would be another coding's bytes
                # (gzip, chunked) or one framed by the close alone, served as if it were the content.
                response.close()
                metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, "protocol")
                logger.warning("site %s: upstream answered %s %s with Transfer-Encoding %r; only chunked is "
                               "taken from upstreams", exchange.site.name, exchange.method, exchange.scope["path"],
                               ", ".join(codings)[:200])
                return await send_error(send, 502), 0
        exchange.status = status
        exchange.response_headers = filter_response_headers(
            response.raw_headers, exchange.site.name, keep_length=not bodyless_status
        )
        filters: list[BodyFilter] = []
        for step in exchange.site.response_steps:
            step.on_response(exchange)
            if has_body and step.filters_body:
                found = step.body_filter(exchange)
                if found is not None:
                    filters.append(found)
        content = response.content
        if filters and content.is_eof():
            # The whole body came with the headers (most pages): filter it before the response starts, so
            # it goes out with its length in one message, and a body that cannot be filtered gets a 502.
            try:
                body = _filter_whole(filters, _read_buffered(content))  # a broken upstream body raises: a 502
            except FilterFailed:
                response.close()
                metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, "undecodable")  # the step logged why
                return await send_error(send, 502), 0
            response.release()
            headers = [row for row in exchange.response_headers if row[0] != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            exchange.response_headers = headers
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return status, len(body)
        await send({"type": "http.response.start", "status": status, "headers": exchange.response_headers})
        if not has_body:
            response.release()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return status, 0
        sent = 0
        try:
            if filters:
                sent = await _send_filtered(filters, content, send)
            else:
                sent = await _pump(content, send)
        except FilterFailed as exc:  # the step logged why; the client sees the connection cut
            response.close()
            metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, "undecodable")
            raise UpstreamAborted(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            response.close()
            kind = "timeout" if isinstance(exc, TimeoutError) else "body"
            metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, kind)
            logger.warning("site %s: upstream failed while sending the body of %s %s: %s",
                           exchange.site.name, exchange.method, exchange.scope["path"], _describe(exc))
            raise UpstreamAborted(str(exc)) from exc
        response.release()
        return status, sent

    async def _upstream_failed(
        self, exchange: Exchange, send: Send, response: aiohttp.ClientResponse | None, body: RequestBody | None,
        kind: str, status: int, exc: BaseException,
    ) -> tuple[int, int]:
        if response is not None:
            response.close()
        if body is not None and body.failed:  # the upload broke off on our side, not the upstream's
            if body.client_gone:
                return 499, 0
            if body.too_large:
                return await send_error(send, 413, close=True), 0
            return await self._body_late(exchange, send, body), 0
        metrics.inc(metrics.UPSTREAM_ERRORS, exchange.site.name, kind)
        logger.warning("site %s: upstream %s error for %s %s: %s", exchange.site.name, kind, exchange.method,
                       exchange.scope["path"], _describe(exc))
        return await send_error(send, status), 0


class _StreamedBody:
    """The rest of a request body as an async iterator for aiohttp, read within the body's deadline.

    A failure (client gone, too large, too late) is raised into aiohttp, which aborts the upstream
    request; the RequestBody keeps what happened for the handler.
    """

    def __init__(self, body: RequestBody, first: list[bytes]) -> None:
        self.body = body
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.first:
            yield part
        self.first = []
        more = True
        while more:
            chunk, more = await self.body.read()
            if chunk:
                yield chunk


async def _pump(content: aiohttp.StreamReader, send: Send) -> int:
    """Copy the upstream body to the client as it arrives; the last chunk ends the response."""
    sent = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return sent
        sent += len(chunk)
        if content.at_eof():
            await send({"type": "http.response.body", "body": chunk, "more_body": False})
            return sent
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _send_filtered(filters: list[BodyFilter], content: aiohttp.StreamReader, send: Send) -> int:
    """Filter the upstream body as it arrives and send each output; once the upstream body is complete, the
    last output ends the response (one write, a system call and a packet, fewer than an empty closing
    message). A still-streaming upstream never delays an output.
    """
    sent = 0
    last = b""
    while True:
        chunk = await content.readany()
        if not chunk:  # readany() returns nothing only once the end was fed and the buffer is empty
            break
        out = _filter_feed(filters, chunk)
        # at_eof(), not is_eof(): the end may have been fed while bytes are still buffered (reading
        # resumes the transport, which can refill the buffer at once). Stopping then cut the page.
        if content.at_eof():
            last = out
            break
        if out:
            sent += len(out)
            await send({"type": "http.response.body", "body": out, "more_body": True})
    try:
        tail = _filter_finish(filters)
    except FilterFailed:
        if last:  # what was rewritten still goes out; the cut connection then says the rest is missing
            await send({"type": "http.response.body", "body": last, "more_body": True})
        raise
    last = last + tail if last and tail else last or tail
    await send({"type": "http.response.body", "body": last, "more_body": False})
    return sent + len(last)


def _only_chunked(values: list[str]) -> bool:
    """Whether Transfer-Encoding values name the chunked coding and nothing else."""
    tokens = [token.strip().lower() for value in values for token in value.split(",")]
    return [token for token in tokens if token] == ["chunked"]


def _read_buffered(content: aiohttp.StreamReader) -> bytes:
    """Everything buffered of a body whose end was fed (read_nowait() takes only the chunks there when
    it starts, and reading can let more in)."""
    parts = [content.read_nowait()]
    while not content.at_eof():
        part = content.read_nowait()
        if not part:
            raise aiohttp.ClientPayloadError("the upstream body's end was fed, yet bytes are missing")
        parts.append(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _filter_feed(filters: list[BodyFilter], data: bytes) -> bytes:
    for body_filter in filters:
        if not data:
            break
        data = body_filter.feed(data)
    return data


def _filter_finish(filters: list[BodyFilter]) -> bytes:
    """The end of the body: each filter's rest, through the filters after it."""
    out = b""
    for body_filter in filters:
        out = body_filter.whole(out) if out else body_filter.finish()
    return out


def _filter_whole(filters: list[BodyFilter], data: bytes) -> bytes:
    for body_filter in filters:
        data = body_filter.whole(data)
    return data


async def _send_reply(send: Send, reply: Reply) -> int:
    headers = reply.headers
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})
    return reply.status


async def send_error(send: Send, status: int, detail: str | None = None, close: bool = False) -> int:
    """Send one of the proxy's own error pages; returns the status for the caller's bookkeeping."""
    headers, body = error_page(status, detail)
    if close:
        headers = [*headers, (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
