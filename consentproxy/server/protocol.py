"""uvicorn's httptools protocol with the limits a public-facing proxy needs.

httptools accepts unbounded header blocks and counts (it gathers a header
line in memory until the line ends), and uvicorn has no deadline for reading
a request's headers (slow-loris). This subclass adds, per connection and
before any application code runs:

- a cap on the connections one client address holds open in this worker
  (503, then close; trusted proxies and the admin listener are exempt),
  and the count of them by which `server.acceptor` tells a busy address;
- a deadline for the complete header block (408, then close);
- a cap on the header block's size, counted on the bytes as they arrive, so
  a line that never ends gets its 431 as soon as it crosses the cap and a
  connection's head never holds much more than the cap in memory; and a cap
  on the header count (431);
- a cap on the request-target length (414);
- refusal of any HTTP version but 1.0 and 1.1 (400): llhttp takes a request
  line without a version as HTTP/0.9 (and parses header lines after it) and
  takes `HTTP/2.0` in an HTTP/1 request line, and the proxy would forward
  either upstream as an HTTP/1.1 request;
- refusal of CONNECT (405) and of absolute-form targets whose scheme is not
  http or https or that name a host other than the Host header (400) — we
  are never an open forward proxy;
- refusal of a missing, repeated or invalid Host (see
  `proxy.sites.normalise_host`) and of ambiguous message framing
  (Content-Length with Transfer-Encoding, repeated Content-Length) with 400;
  the Host the application (and so the upstream) sees is the normal form;
- refusal of an upgrade to anything but a WebSocket (400) before the
  request is handed on;
- a drain that does not race idle keep-alive connections (see `shutdown`);
- refusals that are final: a refused request is never handed to the
  application (so never sent upstream), nothing after it is read, and the
  requests pipelined before it are answered first;
- cancellation of the request's task, with the message `CLIENT_GONE`, when
  the client disconnects before its response is complete — so the proxy
  frees the upstream connection at no per-request cost (ASGI alone could only
  learn of it by keeping a receive() call waiting in another task).
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import logging
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from consentproxy.cancellation import CLIENT_GONE
from consentproxy.config.model import IPNetwork, Limits
from consentproxy.observability import metrics
from consentproxy.proxy.limits import LOG_INTERVAL, client_key
from consentproxy.proxy.sites import normalise_host
from consentproxy.server.fairness import Batches

logger = logging.getLogger("consentproxy.protocol")

#: the request headers `_check_framing_and_host` looks at
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding"})
#: the HTTP versions served (`get_http_version()`: llhttp also passes 0.9, for a request line without a version,
#: and 2.0)
_VERSIONS = frozenset({"1.0", "1.1"})
#: how long a refused connection's late bytes are read and dropped before it closes (see `_linger_close`)
LINGER_SECONDS = 2.0
#: how many expired deadlines one turn of the event loop handles (see `fairness.Batches`)
EXPIRIES_PER_TURN = 16
#: a timer may fire this early (the event loop's clock has millisecond steps)
_TIMER_SLACK = 0.001
#: the bytes of a request head besides its target and header lines: the longest method llhttp knows
#: (11), two spaces, `HTTP/1.1`, the request line's CRLF and the blank line's
_HEAD_SLACK = 11 + 2 + 8 + 2 + 2
#: where the parser is: between messages, in a request head, or past the head (in the body, if any)
_IDLE, _HEAD, _BODY = 0, 1, 2

#: this worker's open connections by client (`proxy.limits.client_key`: an IPv6 client by its /64)
_open_by_address: dict[str, int] = {}
#: an address that holds more connections than this in the worker is busy: its new ones wait their turn
#: (`server.acceptor`); a browser opens six per site
BUSY_CONNECTIONS = 32


def is_busy(address: str) -> bool:
    """Whether a new connection from `address` waits its turn (`server.acceptor`): the address holds more
    than BUSY_CONNECTIONS in this worker (a trusted proxy's connections, which are not counted, never do)."""
    return _open_by_address.get(client_key(address), 0) > BUSY_CONNECTIONS


class _ThrottledLog:
    """One log line for the first occurrence, then at most one per `LOG_INTERVAL` with the count since:
    a thousand connections refused or timed out together must not write a thousand lines (and stall the loop)."""

    def __init__(self, level: int, message: str) -> None:
        self._level = level
        self._message = message  # formatted with the arguments of `note` and the count left out since
        self._last = -LOG_INTERVAL
        self._quiet = 0

    def note(self, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < LOG_INTERVAL:
            self._quiet += 1
            return
        self._last, quiet, self._quiet = now, self._quiet, 0
        logger.log(self._level, self._message, *args, quiet)


_refusal_log = _ThrottledLog(
    logging.WARNING, "refusing connections from %s: it holds %d, the limit per client address "
    "(max_connections_per_client); %d other connections refused since the last such line")
_header_timeout_log = _ThrottledLog(
    logging.INFO, "closing connection from %s: request headers not complete within %.1fs; %d other connections "
    "closed so since the last such line")
#: deadlines that came due, handled a few per turn of the loop (connections opened together expire together)
_expiries: Batches[HardenedHttpToolsProtocol] = Batches(lambda protocol: protocol._expire(), EXPIRIES_PER_TURN)


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
    """Set `limits` (and the rest below) on the class (see `protocol_class`) before uvicorn uses it."""

    limits: Limits = Limits()
    #: peers whose connections carry many clients: no per-address connection limit for them
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: local ports with no per-address connection limit (the admin listener: scrapes and operators)
    unlimited_ports: frozenset[int] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the one timer of this connection; it may fire before `_deadline_at` (then it re-arms)
        self._deadline: asyncio.TimerHandle | None = None
        #: when the header block in progress (or the first request) is due; None: nothing is due
        self._deadline_at: float | None = None
        self._header_bytes = 0
        self._framing: list[tuple[bytes, bytes]] = []
        self._in_headers = False
        self.url = b""
        self._phase = _IDLE
        #: bytes of the current head fed to the parser (an upper bound), and what a head may take besides
        #: its target
        self._head_bytes = 0
        self._head_limit = self.limits.max_header_bytes + _HEAD_SLACK
        #: heads begun on this connection: tells whether a feed began a new one
        self._messages = 0
        #: the body bytes still due of the request being read, when it has a Content-Length
        self._body_left: int | None = None
        #: the cycle whose ASGI task runs (uvicorn's `cycle` is the last one parsed, maybe queued)
        self._running: RequestResponseCycle | None = None
        #: once set, nothing more is read; it is sent when the requests before it are answered
        self._refusal: Rejected | None = None
        #: the client address this connection counts against, once counted
        self._counted: str | None = None
        #: the worker drains (see `shutdown`): every request still read is its connection's last
        self._draining = False

    # -- connection lifecycle -------------------------------------------------
    def shutdown(self) -> None:
        """The worker drains (stopped, or retired after a reload): never close under a request on its way.

        uvicorn closes an idle keep-alive connection at once, and a request the client sent meanwhile
        fails (wrk counts it; a browser retries it, if it may). Here such a connection stays open as long as
        its keep-alive timeout promised: a request that comes is answered with `Connection: close`, and the
        client reconnects to a serving worker; one that stays idle is closed when the timeout is over.
        """
        self._draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # closed once this response is sent, as uvicorn does
        # Idle: its keep-alive timer, or a first request's head deadline, still closes it.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.OPEN_CONNECTIONS.inc()
        if not self._admit():
            return
        self._arm_deadline()

    def _admit(self) -> bool:
        """Count this connection against its client address; over the limit, answer 503 and close.

        At the TCP level the peer address is all there is: behind a trusted proxy every visitor shares
        its address, so connections from trusted proxies are not counted (that proxy limits its own; the
        requests it forwards are limited per visitor by `max_requests_per_client`). An IPv6 client
        counts by its /64, which one subscriber holds whole. Counted even with no limit set: the count
        also tells the acceptor which addresses are busy.
        """
        client = self.client
        if client is None or (self.server is not None and self.server[1] in self.unlimited_ports):
            return True
        address = client[0]
        if self.trusted_proxies and _is_trusted(address, self.trusted_proxies):
            return True
        key = client_key(address)
        count = _open_by_address.get(key, 0)
        limit = self.limits.max_connections_per_client
        if limit and count >= limit:
            metrics.inc(metrics.CONNECTIONS_REFUSED, "per_client_limit")
            _refusal_log.note(key, count)
            self._refusal = Rejected(503, "too many connections from your address")
            self._write_refusal()
            return False
        _open_by_address[key] = count + 1
        self._counted = key
        return True

    def _release(self) -> None:
        address = self._counted
        if address is not None:
            self._counted = None
            count = _open_by_address.pop(address, 1) - 1
            if count > 0:
                _open_by_address[address] = count

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.OPEN_CONNECTIONS.dec()
        self._release()
        self._stop_deadline_timer()
        cycles = {self.cycle, self._running}
        super().connection_lost(exc)
        for cycle in cycles:
            if cycle is not None and not cycle.response_complete:
                _cancel(cycle)

    def handle_websocket_upgrade(self) -> None:
        """As uvicorn's; the WebSocket protocol that takes the transport over releases what we counted."""
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if protocol is self:
            return
        lost = protocol.connection_lost
        self._stop_deadline_timer()

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                metrics.OPEN_CONNECTIONS.dec()
                self._release()

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # As uvicorn's, but the cycle remembers its task for connection_lost.
        task = self.loop.create_task(cycle.run_asgi(app))
        cycle.asgi_task = task
        self._running = cycle
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None and not self._answers_pending():
            self._write_refusal()

    def _answers_pending(self) -> bool:
        running = self._running
        return bool(self.pipeline) or (running is not None and not running.response_complete)

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
        _expiries.add(self.loop, self)

    def _expire(self) -> None:
        """The deadline has passed (called by `_expiries`, maybe a few turns later): 408, or close when idle."""
        due = self._deadline_at
        if due is None or due - self.loop.time() > _TIMER_SLACK or self.transport.is_closing():
            return  # the connection was closed, or its deadline met or re-armed, while it waited its turn
        self._deadline_at = None
        if self._in_headers:
            _header_timeout_log.note(self.client, self.limits.header_timeout)
            self._reject(Rejected(408, "request headers not received in time"))
        else:
            self.transport.close()

    def _reject(self, rejection: Rejected) -> None:
        """Refuse the request being read: final, and answered after the requests before it.

        Nothing more is read. When the request's head was accepted and its body cannot be framed, the
        request is taken back: dropped if it is still queued behind others, otherwise its task is ended
        (the upstream, if it was reached, sees an incomplete request) and the refusal is its answer —
        unless its response has begun, when the connection can only be cut.
        """
        self._stop_deadline_timer()
        if self._refusal is not None:
            return
        self._refusal = rejection
        metrics.inc(metrics.REJECTED, str(rejection.status))
        cycle = self.cycle
        if self._phase == _BODY and cycle is not None and not cycle.response_complete:
            queued = [entry for entry in self.pipeline if entry[0] is cycle]
            for entry in queued:
                self.pipeline.remove(entry)
            if not queued:  # it runs, so every request before it is answered
                started = cycle.response_started
                _cancel(cycle)
                if started:
                    self.transport.close()
                else:
                    self._write_refusal()
                return
        if not self._answers_pending():
            self._write_refusal()

    def _write_refusal(self) -> None:
        rejection = self._refusal
        self._unset_keepalive_if_required()
        if rejection is not None and not self.transport.is_closing():
            self.transport.write(_response(rejection.status, rejection.reason))
            self._linger_close()

    def _linger_close(self) -> None:
        """Close after an answer the client may still be sending over (an endless header, a body we refused):
        closing with its bytes unread would make the kernel reset the connection, and the reset can wipe
        out our answer before the client reads it. So our side ends first (FIN after the answer), what the
        client still sends is read and dropped (`data_received` ignores it), and the connection closes
        after `LINGER_SECONDS` at the latest, as nginx's lingering close does."""
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusal is not None:
            return  # a refused request ends what this connection sends
        try:
            self._feed(data)
        except Rejected as rejection:
            self._reject(rejection)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Rejected):
                self._reject(cause)
            else:
                logger.warning("invalid HTTP request from %s: %s", self.client, cause or exc)
                self._reject(Rejected(400, "invalid HTTP request"))
        except httptools.HttpParserUpgrade:
            # on_headers_complete refused CONNECT and every upgrade but a WebSocket one
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._reject(Rejected(400, "unsupported upgrade"))
        except httptools.HttpParserError as exc:
            self._reject(Rejected(400, f"invalid HTTP request ({exc})"))

    def _feed(self, data: bytes) -> None:
        """Feed the parser so that a request head never takes more than its cap, wherever lines end.

        httptools keeps a header line in memory until it ends, so the cap is counted here, on the bytes
        given to it: a head is fed at most what it may still take, and one still unfinished at its cap
        gets 431. Each piece fed ends where a head ends (its blank line) or a Content-Length body ends,
        so the next head is counted from its own start, however many requests a read holds (after a
        chunked body, from the next read: one read at most goes uncounted, for httptools' own check).
        """
        parser = self.parser
        view: memoryview | None = None
        start, total = 0, len(data)
        while start < total:
            phase = self._phase
            if phase == _BODY:
                left = self._body_left
                end = min(total, start + left) if left else total
            else:
                room = max(1, self._head_room())
                end = data.find(b"\r\n\r\n", start, start + room)
                end = min(total, start + room) if end < 0 else end + 4
            if start == 0 and end == total:
                piece: bytes | memoryview = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[start:end]
            messages = self._messages
            parser.feed_data(piece)
            if self._phase == _HEAD:
                if phase != _BODY:
                    known = self._head_bytes if messages == self._messages else 0
                    self._head_bytes = known + end - start
                if self._head_room() <= 0:
                    raise Rejected(431, f"request header block larger than {self.limits.max_header_bytes} bytes")
            start = end

    def _head_room(self) -> int:
        """How many more bytes the head being read may take (its target has its own cap, in on_url)."""
        target = len(self.url) if self._phase == _HEAD else 0
        return self._head_limit + target - self._head_bytes

    # -- parser callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._head_bytes = 0
        self._messages += 1
        self._phase = _HEAD
        self._body_left = None
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
        version = self.parser.get_http_version()
        if version not in _VERSIONS:
            raise Rejected(400, f"unsupported HTTP version {version}: only HTTP/1.0 and HTTP/1.1 are served")
        method = self.parser.get_method()
        if method == b"CONNECT":
            self.scope["method"] = "CONNECT"
            raise Rejected(405, "CONNECT is not supported: this is not a forward proxy")
        self._check_framing_and_host()
        if self.parser.should_upgrade() and not self._should_upgrade():
            # uvicorn would start the request and refuse the upgrade after: refused, it goes nowhere
            raise Rejected(400, "unsupported upgrade")
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        self._phase = _BODY

    def on_body(self, body: bytes) -> None:
        if self._body_left is not None:
            self._body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._head_bytes = 0
        super().on_message_complete()

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
        if content_length:
            self._body_left = _declared_length(self._framing)
        if host is None or not host.strip():
            raise Rejected(400, "missing Host header")
        normal = normalise_host(host)
        if normal is None:
            raise Rejected(400, "invalid Host header")
        if normal != host:
            self._set_host(normal)
        url = self.url
        if url[:1] != b"/":
            if url == b"*":
                raise Rejected(400, "asterisk-form request targets are not supported")
            try:
                target = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise Rejected(400, "invalid request target") from None
            if not target.schema or not target.host or target.userinfo:
                raise Rejected(400, "invalid request target")
            if target.schema.lower() not in (b"http", b"https"):  # RFC 3986 3.1: schemes ignore case
                raise Rejected(400, "absolute request target of another scheme than http or https")
            name = b"[" + target.host + b"]" if b":" in target.host else target.host
            authority = name + (b":%d" % target.port if target.port else b"")
            if normalise_host(authority) != normal:
                raise Rejected(400, "absolute request target names another host than the Host header")

    def _set_host(self, normal: bytes) -> None:
        """Give the application (and so the upstream) the Host in its normal form."""
        headers = self.headers
        for index, (name, _value) in enumerate(headers):
            if name == b"host":
                headers[index] = (name, normal)
                return


def _declared_length(framing: list[tuple[bytes, bytes]]) -> int | None:
    """The one Content-Length's value; None when the parser would not take it (it then refuses the request)."""
    for name, value in framing:
        if name == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


def _is_trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _cancel(cycle: RequestResponseCycle) -> None:
    """End a cycle whose client is gone or whose request was refused: it sends nothing more."""
    cycle.disconnected = True
    cycle.message_event.set()
    task: asyncio.Task[None] | None = getattr(cycle, "asgi_task", None)
    if task is not None and not task.done():
        task.cancel(CLIENT_GONE)
