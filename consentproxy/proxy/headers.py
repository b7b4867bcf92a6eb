"""Header hygiene for both directions of the proxy, on raw bytes.

Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and never cross
the proxy; neither does any header a Connection header names, nor one in
which a client claims an address (`CLIENT_ADDRESS_HEADERS`). Upstream
response headers that uvicorn would refuse to serialise (control bytes,
invalid names) are dropped with a log line instead of turning into a 500.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Callable
from typing import NamedTuple

from consentproxy.observability import metrics
from consentproxy.privacy.client_headers import CLIENT_ADDRESS_HEADERS

logger = logging.getLogger("consentproxy.proxy")

HOP_BY_HOP: frozenset[bytes] = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})

# Request headers the proxy itself owns: it sets them, or uvicorn consumed them.
_PROXY_OWNED: frozenset[bytes] = frozenset({
    b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
    b"via", b"expect", b"content-length",
})
_REQUEST_DROP = HOP_BY_HOP | _PROXY_OWNED
_NOT_PASSED = _REQUEST_DROP | CLIENT_ADDRESS_HEADERS


_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def split_request_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], dict[bytes, bytes]]:
    """End-to-end request headers, and the proxy-owned and client-address ones by name.

    uvicorn already lower-cased names and the protocol refused repeated Host
    and framing headers, so a dict is safe for the owned ones. Headers that
    may legitimately repeat (X-Forwarded-For, Via) have their values joined.
    A name with `_` for `-` of any of these (`X_Forwarded_For`, which CGI and
    PHP read as X-Forwarded-For) is dropped outright.
    """
    passed: list[tuple[bytes, bytes]] = []
    owned: dict[bytes, bytes] = {}
    named: set[bytes] | None = None
    for name, value in headers:
        if name in _NOT_PASSED:
            if name in owned and (name in _JOINED or name in CLIENT_ADDRESS_HEADERS):
                owned[name] += b", " + value
            else:
                owned[name] = value
            continue
        if b"_" in name and name.replace(b"_", b"-") in _NOT_PASSED:
            continue
        passed.append((name, value))
    connection = owned.get(b"connection")
    if connection is not None:
        named = connection_tokens(connection) - {b"close", b"keep-alive"}
        if named:
            passed = [(n, v) for n, v in passed if n not in named]
    return passed, owned


_JOINED = frozenset({b"x-forwarded-for", b"via", b"connection"})


def set_aside(
    passed: list[tuple[bytes, bytes]], owned: dict[bytes, bytes], names: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """`passed` without the headers a site names as client-address ones (also in their `_` spelling),
    which join the owned ones."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in passed:
        plain = name.replace(b"_", b"-")
        if plain in names:
            if plain == name:
                owned[name] = owned[name] + b", " + value if name in owned else value
            continue
        kept.append((name, value))
    return kept


@functools.lru_cache(maxsize=256)
def header_names(names: tuple[str, ...]) -> frozenset[bytes]:
    """Configured header names (lower-case text) as the bytes uvicorn gives; cached per configuration."""
    return frozenset(name.encode("latin-1") for name in names)


def filter_response_headers(
    raw: tuple[tuple[bytes, bytes], ...], site: str, keep_length: bool = True
) -> list[tuple[bytes, bytes]]:
    """Lower-cased, hop-by-hop-free, serialisable response headers.

    `keep_length=False` drops Content-Length, for 204 and 304 answers: it
    describes a body that is never sent, and uvicorn would wait for it.
    """
    out = _filter_known(raw, keep_length)
    if out is None:
        out = _filter_checked(raw, site, keep_length)
    return out


class _Layout(NamedTuple):
    """What the checks made of one sequence of upstream header names (values play no part)."""

    names: tuple[bytes, ...]  # the kept headers' names, lower-cased, in order
    pick: Callable[[tuple[bytes, ...]], tuple[bytes, ...]]  # their values, out of all values
    connections: tuple[int, ...]  # where the Connection headers are


_LAYOUTS_LIMIT = 256
#: by keep_length: names as received -> layout, for name sequences whose every name is valid.
#: A memo of the name checks only: an upstream sends the same names on every response.
_layouts: dict[bool, dict[tuple[bytes, ...], _Layout]] = {True: {}, False: {}}
#: Connection values that name no header but a hop-by-hop one (dropped anyway)
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"Keep-Alive"})
#: maps exactly the bytes `_BAD_VALUE` matches to a tab (which is allowed), every other byte to itself
_BAD_TO_TAB = bytes(9 if _BAD_VALUE.match(bytes([byte])) else byte for byte in range(256))


def _filter_known(raw: tuple[tuple[bytes, bytes], ...], keep_length: bool) -> list[tuple[bytes, bytes]] | None:
    """`_filter_checked` for the usual response, with no side effects; None when that must run instead.

    Every name must be part of a sequence already checked (the layout), the
    values are checked all at once, and the Connection header, if any, must
    name nothing to drop: anything else (a new name, a bad value, a
    Connection that names headers) goes the checked way, which logs and counts.
    """
    if not raw:
        return None
    names, values = zip(*raw, strict=False)  # every row is a (name, value) pair
    layout = _layouts[keep_length].get(names)
    if layout is None:
        layout = _learn(names, keep_length)
        if layout is None:
            return None
    for index in layout.connections:
        if values[index] not in _PLAIN_CONNECTION:
            return None
    kept = layout.pick(values)
    joined = b"\t".join(kept)
    if joined.translate(_BAD_TO_TAB) != joined:
        return None
    return list(zip(layout.names, kept, strict=False))  # one value per name, by construction


def _learn(raw_names: tuple[bytes, ...], keep_length: bool) -> _Layout | None:
    """The layout of a name sequence whose names are all valid; None otherwise (never memoised)."""
    names: list[bytes] = []
    indexes: list[int] = []
    connections: list[int] = []
    for index, raw_name in enumerate(raw_names):
        name = raw_name.lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                connections.append(index)
            continue
        if not keep_length and name == b"content-length":
            continue
        if _BAD_NAME.search(name) or not name:
            return None
        names.append(name)
        indexes.append(index)
    layout = _Layout(tuple(names), _picker(indexes, len(raw_names)), tuple(connections))
    layouts = _layouts[keep_length]
    if len(layouts) >= _LAYOUTS_LIMIT:
        layouts.clear()
    layouts[raw_names] = layout
    return layout


def _picker(indexes: list[int], count: int) -> Callable[[tuple[bytes, ...]], tuple[bytes, ...]]:
    if indexes == list(range(count)):
        return _same
    if len(indexes) >= 2:
        return operator.itemgetter(*indexes)
    if indexes:
        only = indexes[0]
        return lambda values: (values[only],)
    return lambda values: ()


def _same(values: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return values


def _filter_checked(
    raw: tuple[tuple[bytes, bytes], ...], site: str, keep_length: bool
) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    named: set[bytes] | None = None
    for raw_name, value in raw:
        name = raw_name.lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                named = connection_tokens(value) if named is None else named | connection_tokens(value)
            continue
        if not keep_length and name == b"content-length":
            continue
        if _BAD_NAME.search(name) or not name:
            logger.warning("site %s: dropped upstream response header with an invalid name %r", site, raw_name[:64])
            metrics.inc(metrics.DROPPED_HEADERS, site)
            continue
        if _BAD_VALUE.search(value):
            logger.warning("site %s: dropped upstream response header %s with control characters",
                           site, name.decode("latin-1"))
            metrics.inc(metrics.DROPPED_HEADERS, site)
            if name == b"set-cookie":
                metrics.inc(metrics.MALFORMED_SET_COOKIES, site)
            continue
        out.append((name, value))
    if named:
        out = [(n, v) for n, v in out if n not in named]
    return out
