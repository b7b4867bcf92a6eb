"""The per-worker aiohttp client: one session, one sized keep-alive pool.

Set so that aiohttp adds nothing of its own to what we forward (no
Accept-Encoding, User-Agent, Accept or Content-Type), never decompresses,
never stores cookies, and ignores HTTP_PROXY in the environment; and so that
the request head reaches the site with the header bytes the client sent.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

import aiohttp
from aiohttp import http_writer
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


def create_session(server: ServerConfig) -> aiohttp.ClientSession:
    _install_byte_exact_heads()
    connector = aiohttp.TCPConnector(
        limit=server.upstream_connections,
        limit_per_host=0,
        keepalive_timeout=30,
        ttl_dns_cache=60,
    )
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
