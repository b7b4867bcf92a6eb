"""uvicorn's httptools protocol with the limits a public-facing proxy needs.

httptools accepts unbounded header blocks and counts, and uvicorn has no
deadline for reading a request's headers (slow-loris). This subclass adds,
per connection and before any application code runs:

- a deadline for the complete header block (408, then close);
- a cap on the header block's size and on the header count (431);
- a cap on the request-target length (414);
- refusal of CONNECT (405) and of absolute-form targets that name a host
  other than the Host header (400) — we are never an open forward proxy;
- refusal of a missing or repeated Host and of ambiguous message framing
  (Content-Length with Transfer-Encoding, repeated Content-Length) with 400;
- cancellation of the request's task, with the message `CLIENT_GONE`, when
  the client disconnects before its response is complete — so the proxy
  frees the upstream connection at no per-request cost (ASGI alone could only
  learn of it by keeping a receive() call waiting in another task).
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from consentproxy.cancellation import CLIENT_GONE
from consentproxy.config.model import Limits
from consentproxy.observability import metrics

logger = logging.getLogger("consentproxy.protocol")

#: the request headers `_check_framing_and_host` looks at
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding"})
#: a timer may fire this early (the event loop's clock has millisecond steps)
_TIMER_SLACK = 0.001


class Rejected(Exception):
    """Raised inside a parser callback to answer with `status` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _response(status: int, reason: str) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    body = f"{status} {phrase}: {reason}\n".encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    """Set `limits` on the class (see `protocol_class`) before uvicorn uses it."""

    limits: Limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the one timer of this connection; it may fire before `_deadline_at` (then it re-arms)
        self._deadline: asyncio.TimerHandle | None = None
        #: when the header block in progress (or the first request) is due; None: nothing is due
        self._deadline_at: float | None = None
        self._header_bytes = 0
        self._framing: list[tuple[bytes, bytes]] = []
        self._in_headers = False

    # -- connection lifecycle -------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.OPEN_CONNECTIONS.inc()
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.OPEN_CONNECTIONS.dec()
        self._stop_deadline_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            task: asyncio.Task[None] | None = getattr(cycle, "asgi_task", None)
            if task is not None and not task.done():
                task.cancel(CLIENT_GONE)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # As uvicorn's, but the cycle remembers its task for connection_lost.
        task = self.loop.create_task(cycle.run_asgi(app))
        cycle.asgi_task = task
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _arm_deadline(self) -> None:
        """Start the header deadline unless one is running (the first request keeps the connection's).

        Per request this only notes the time: the timer is left running after
        the headers complete and, when it fires early, re-arms for what is
        left, so keep-alive requests cost no timer of their own.
        """
        if self._deadline_at is None:
            timeout = self.limits.header_timeout
            self._deadline_at = self.loop.time() + timeout
            if self._deadline is None:
                self._deadline = self.loop.call_later(timeout, self._deadline_expired)

    def _stop_deadline_timer(self) -> None:
        self._deadline_at = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_expired(self) -> None:
        self._deadline = None
        due = self._deadline_at
        if due is None:
            return  # the headers came in time; the next request arms again
        left = due - self.loop.time()
        if left > _TIMER_SLACK:  # the deadline moved on since this timer was set
            self._deadline = self.loop.call_later(left, self._deadline_expired)
            return
        self._deadline_at = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            logger.info("closing connection from %s: request headers not complete within %.1fs",
                        self.client, self.limits.header_timeout)
            self._reject(Rejected(408, "request headers not received in time"))
        else:
            self.transport.close()

    def _reject(self, rejection: Rejected) -> None:
        self._stop_deadline_timer()
        metrics.inc(metrics.REJECTED, str(rejection.status))
        if not self.transport.is_closing():
            self.transport.write(_response(rejection.status, rejection.reason))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Rejected):
                self._reject(cause)
            else:
                logger.warning("invalid HTTP request from %s: %s", self.client, cause or exc)
                self._reject(Rejected(400, "invalid HTTP request"))
        except httptools.HttpParserUpgrade:
            if self.scope.get("method") == "CONNECT":
                self._reject(Rejected(405, "CONNECT is not supported: this is not a forward proxy"))
            elif self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._reject(Rejected(400, "unsupported upgrade"))
        except httptools.HttpParserError as exc:
            self._reject(Rejected(400, f"invalid HTTP request ({exc})"))

    # -- parser callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._framing = []
        self._in_headers = True
        self._arm_deadline()

    def on_url(self, url: bytes) -> None:
        self.url += url  # uvicorn's on_url, inlined like on_header's
        if len(self.url) > self.limits.max_url_bytes:
            raise Rejected(414, f"request target longer than {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            raise Rejected(431, f"request header block larger than {self.limits.max_header_bytes} bytes")
        headers = self.headers
        if len(headers) >= self.limits.max_header_count:
            raise Rejected(431, f"more than {self.limits.max_header_count} request headers")
        # uvicorn's on_header, inlined: this runs for every header of every request
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        headers.append((name, value))
        if name in _FRAMING:
            self._framing.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._deadline_at = None  # the deadline is met; its timer, if still set, will find nothing due
        method = self.parser.get_method()
        if method == b"CONNECT":
            self.scope["method"] = "CONNECT"
            raise Rejected(405, "CONNECT is not supported: this is not a forward proxy")
        self._check_framing_and_host()
        super().on_headers_complete()

    def _check_framing_and_host(self) -> None:
        host: bytes | None = None
        content_length = 0
        transfer_encoding = 0
        for name, value in self._framing:  # the Host and framing headers, in order
            if name == b"host":
                if host is not None:
                    raise Rejected(400, "more than one Host header")
                host = value
            elif name == b"content-length":
                content_length += 1
            elif name == b"transfer-encoding":
                transfer_encoding += 1
        if content_length and transfer_encoding:
            raise Rejected(400, "both Content-Length and Transfer-Encoding")
        if content_length > 1 or transfer_encoding > 1:
            raise Rejected(400, "repeated message framing headers")
        if host is None or not host.strip():
            raise Rejected(400, "missing Host header")
        url = self.url
        if url[:1] != b"/":
            if url == b"*":
                raise Rejected(400, "asterisk-form request targets are not supported")
            try:
                target = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise Rejected(400, "invalid request target") from None
            if not target.schema or not target.host:
                raise Rejected(400, "invalid request target")
            authority = target.host + (b":%d" % target.port if target.port else b"")
            if authority.lower() != host.strip().lower():
                raise Rejected(400, "absolute request target names another host than the Host header")
