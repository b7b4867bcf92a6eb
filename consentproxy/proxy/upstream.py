"""The per-worker aiohttp client: one session, one sized keep-alive pool.

Set so that aiohttp adds nothing of its own to what we forward (no
Accept-Encoding, User-Agent, Accept or Content-Type), never decompresses,
never stores cookies, and ignores HTTP_PROXY in the environment; and so that
the request head reaches the site with the header bytes the client sent.
Its connections (`UpstreamProtocol`) take only HTTP/1.x answers and fail a
body the moment its framing breaks.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Protocol, cast

import aiohttp
from aiohttp import http_writer
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import _EXC_SENTINEL
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from consentproxy.config.model import ServerConfig

logger = logging.getLogger("consentproxy.proxy")

_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # what aiohttp refuses in a request head, as it does


class _Serializer(Protocol):
    def __call__(self, status_line: str, headers: CIMultiDict[str]) -> bytes: ...


def header_text(value: bytes) -> str:
    """Header bytes as the text aiohttp takes: UTF-8, with any other byte kept as a surrogate escape,
    which `_serialize_head` writes back as that very byte (latin-1 text would be re-encoded as UTF-8)."""
    return value.decode("utf-8", "surrogateescape")


def _byte_exact(aiohttp_serializer: _Serializer) -> _Serializer:
    def serialize_head(status_line: str, headers: CIMultiDict[str]) -> bytes:
        """aiohttp's request-head writer, but text from `header_text` goes out as the bytes it came from.

        aiohttp writes every character as UTF-8 and silently drops surrogates, so a value holding bytes
        that are not UTF-8 (`Cookie: id=caf\\xe9`) would reach the site changed. ASCII heads, nearly all
        of them, still take aiohttp's own (C) writer; the rest are written here, as they came.
        """
        if status_line.isascii() and "".join(headers.values()).isascii():
            return aiohttp_serializer(status_line, headers)
        lines = [status_line, *(f"{name}: {value}" for name, value in headers.items())]
        if any(_FORBIDDEN.search(line) for line in lines):
            raise ValueError("Forbidden control character detected in headers. Potential header injection attack.")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")

    serialize_head.wrapped = aiohttp_serializer  # type: ignore[attr-defined]
    return serialize_head


def _install_byte_exact_heads() -> None:
    """Put `_byte_exact` in place of aiohttp's module-level request-head writer (once per process)."""
    current = getattr(http_writer, "_serialize_headers", None)
    if current is None:
        logger.warning("aiohttp %s has no http_writer._serialize_headers: header bytes that are not UTF-8 "
                       "are re-encoded on their way upstream", aiohttp.__version__)
        return
    if not hasattr(current, "wrapped"):
        http_writer._serialize_headers = _byte_exact(current)


_HTTP1 = b"HTTP/1."
#: where a status line's status code starts ("HTTP/1.1 200"), and where it ends
_CODE, _CODE_END = 9, 12
_START, _INTERIM, _FINAL, _FAILED = range(4)


class UpstreamProtocol(ResponseHandler):
    """aiohttp's client connection, with two faults of its parser closed.

    - Status lines: aiohttp's parser (llhttp) takes `HTTP/2.0 200` as HTTP
      version 2.0 and `RTSP/1.0 200` or `ICE/1.0 200` as HTTP/1.0, so they
      would be served as HTTP answers. The start of every response (and of
      the final one after any interim 1xx) must read `HTTP/1.`; otherwise the
      connection fails as on any unparseable head, before a response exists
      (the handler answers 502). Only a response's first bytes are looked at:
      the bytes still reach the parser as they came, and a body is not looked at.
    - A body whose framing breaks (an invalid chunk size) after its head was
      parsed: aiohttp fails the connection but not the body being read, and
      drops the read timeout, so a reader waits forever. Here any failure of
      the connection also fails an unfinished body (`ClientPayloadError`).
    """

    _head_state = _START
    _head_seen = b""

    def set_response_params(self, **kwargs: Any) -> None:  # the next request's response starts here
        self._head_state = _START
        self._head_seen = b""
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        state = self._head_state
        if state != _FINAL and data:
            if state == _FAILED:
                return  # the connection is closing; nothing more of it is read
            if self._parser is not None and not self._upgraded and self._payload_parser is None:
                problem = self._check_heads(data)
                if problem is not None:
                    self._head_state = _FAILED
                    if self.transport is not None:
                        self.transport.close()
                    self.set_exception(HttpProcessingError(code=400, message=problem))
                    return
        super().data_received(data)

    def set_exception(self, exc: BaseException, exc_cause: BaseException = _EXC_SENTINEL) -> None:
        payload = self._payload
        if payload is not None and not payload.is_eof() and payload.exception() is None:
            # a read timeout reaches the body as itself (as aiohttp then sets it), anything else as a cut
            failed = exc if isinstance(exc, TimeoutError) else aiohttp.ClientPayloadError(
                f"Response payload is not completed: {_describe(exc)}")
            payload.set_exception(failed, exc)
        super().set_exception(exc, exc_cause)

    def _check_heads(self, data: bytes) -> str | None:
        """Why the response heads starting in these bytes are no HTTP/1.x ones; None while they are (or
        cannot tell yet). Walks the status lines: the final one's settles it, an interim 1xx's head is
        skipped to the next."""
        seen = self._head_seen + data if self._head_seen else data
        while True:
            if self._head_state == _INTERIM:
                end = _head_end(seen)
                if end < 0:
                    self._head_seen = seen[-2:]  # enough to find a blank line split across reads
                    return None
                seen = seen[end:]
                self._head_state = _START
            seen = seen.lstrip(b"\r\n")
            if seen[:len(_HTTP1)] != _HTTP1[:len(seen)]:
                line = seen.split(b"\n", 1)[0][:80]
                return f"Bad status line: no HTTP/1.x status line: {line!r}"
            if len(seen) <= _CODE:
                self._head_seen = seen
                return None
            if seen[_CODE:_CODE + 1] != b"1":
                break
            if len(seen) < _CODE_END:
                self._head_seen = seen
                return None
            if seen[_CODE:_CODE_END] == b"101":  # switching protocols: what follows is not HTTP
                break
            self._head_state = _INTERIM
            seen = seen[_CODE_END:]
        self._head_state = _FINAL
        self._head_seen = b""
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HttpProcessingError):
        return exc.message.split("\n", 1)[0] or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _head_end(data: bytes) -> int:
    """Where the bytes after a head's blank line start (CRLF or bare LF line ends), or -1."""
    ends = [found + length for found, length in ((data.find(b"\n\r\n"), 3), (data.find(b"\n\n"), 2))
            if found >= 0]
    return min(ends) if ends else -1


def _use_protocol(connector: aiohttp.TCPConnector) -> None:
    """Make the connector's connections `UpstreamProtocol`s (aiohttp names their factory `_factory`)."""
    factory = getattr(connector, "_factory", None)
    if not isinstance(factory, functools.partial) or factory.func is not ResponseHandler:
        logger.warning("aiohttp %s: the connector's protocol factory is not where expected: upstream status "
                       "lines are not checked for HTTP/1.x, and an upstream body whose framing breaks may "
                       "wait for the client's own timeout", aiohttp.__version__)
        return
    ours = functools.partial(UpstreamProtocol, *factory.args, **factory.keywords)
    connector._factory = cast("functools.partial[ResponseHandler]", ours)


def create_session(server: ServerConfig) -> aiohttp.ClientSession:
    _install_byte_exact_heads()
    connector = aiohttp.TCPConnector(
        limit=server.upstream_connections,
        limit_per_host=0,
        keepalive_timeout=30,
        ttl_dns_cache=60,
    )
    _use_protocol(connector)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        max_line_size=65536,
        max_field_size=65536,
        read_bufsize=2**16,
    )
