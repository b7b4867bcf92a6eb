"""Malformed upstream responses: statuses out of range or no status line, bad header lines, broken framing,
bodies that do not decode, connections cut mid-body. The client gets a 502 page before anything was sent,
or a visibly cut connection (a head whose body never completes), never a clean end of a short body; and
the site received the request exactly once (never retried)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import brotli
import pytest
import zstandard
from conftest import Proxy, site_toml

from .recorder import Canned, Recorder
from .wire import Reply, exchange, get

pytestmark = pytest.mark.attack("malformed upstream responses")

PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>" + b"page text " * 400 + b"</p></body></html>"
HTML = b"Content-Type: text/html; charset=utf-8\r\n"
TEXT = b"Content-Type: text/plain\r\n"


def _length(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n" % len(body)


def ok(head_extra: bytes = TEXT, body: bytes = b"hello") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + head_extra + _length(body) + b"\r\n" + body


@dataclass(frozen=True)
class Case:
    response: bytes
    #: "502": a 502 page, whole; "cut": a 200 head whose body never completes, then the close;
    #: bytes: a 200 with exactly this body
    outcome: str | bytes
    pieces: tuple[int, ...] = ()
    bug: str = ""
    #: a header the client must get, with this value
    header: tuple[bytes, bytes] | None = None
    #: POST: a request the proxy must never send twice (aiohttp retries only idempotent ones); GET for the
    #: pages the proxy rewrites (it rewrites the answers to GET)
    method: str = "POST"


GZ_PAGE = gzip.compress(PAGE)
BR_CUT = brotli.compress(PAGE)[:-10]
ZSTD_CUT = zstandard.compress(PAGE)[:-10]
RAW_DEFLATE = zlib.compress(PAGE)[2:-4]
CASES: dict[str, Case] = {
    # -- the status line
    "status-600": Case(b"HTTP/1.1 600 Beyond\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-099": Case(b"HTTP/1.1 099 Below\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-000": Case(b"HTTP/1.1 000 Zero\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-1000": Case(b"HTTP/1.1 1000 Four\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-letters": Case(b"HTTP/1.1 2OO OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-two-digits": Case(b"HTTP/1.1 20 OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-negative": Case(b"HTTP/1.1 -200 OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "status-101-unasked": Case(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
                               "502"),
    "no-status-line": Case(b"hello world\r\n\r\n", "502"),
    "http09-body-only": Case(b"ok", "502"),
    "binary-garbage": Case(b"\x00\x01\x02\x03\xff\xfe\r\n\r\n", "502"),
    "empty-then-close": Case(b"", "502"),
    "head-cut": Case(b"HTTP/1.1 200 OK\r\nContent-Len", "502"),
    "version-lower": Case(b"http/1.1 200 OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "version-2": Case(b"HTTP/2.0 200 OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "version-rtsp": Case(b"RTSP/1.0 200 OK\r\n" + _length(b"ok") + b"\r\nok", "502"),
    "interim-100": Case(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), b"hello"),
    "interim-103": Case(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok(), b"hello"),
    "interim-many": Case(b"HTTP/1.1 100 Continue\r\n\r\n" * 20 + ok(), b"hello"),
    # -- header lines
    "header-no-colon": Case(b"HTTP/1.1 200 OK\r\nNoColon\r\n" + TEXT + _length(b"ok") + b"\r\nok", "502"),
    "header-space-in-name": Case(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n" + TEXT + _length(b"ok") + b"\r\nok", "502"),
    "header-space-before-colon": Case(b"HTTP/1.1 200 OK\r\nX-A : x\r\n" + TEXT + _length(b"ok") + b"\r\nok", "502"),
    "header-nul-value": Case(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n" + TEXT + _length(b"ok") + b"\r\nok", "502"),
    "header-cr-injection": Case(b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\n" + TEXT + _length(b"ok")
                                + b"\r\nok", "502"),
    "header-huge": Case(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 100_000 + b"\r\n" + TEXT + _length(b"ok") + b"\r\nok",
                        "502"),
    "header-many": Case(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + TEXT
                        + _length(b"ok") + b"\r\nok", "502"),
    # RFC 9112 5.2: a proxy replaces an obs-fold of a response with SP (or answers 502)
    "header-obs-fold": Case(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n" + TEXT + _length(b"ok") + b"\r\nok", b"ok",
                            header=(b"x-a", b"a b")),
    # RFC 9112 2.2: a recipient MAY take a bare LF as a line end
    "bare-lf": Case(b"HTTP/1.1 200 OK\n" + TEXT.replace(b"\r\n", b"\n") + b"Content-Length: 2\n\nok", b"ok"),
    # -- framing
    "cl-longer-than-body": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 1000\r\n\r\n" + b"x" * 500, "cut",
                                pieces=(200,)),
    "cl-twice-different": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
                               "502"),
    "cl-letters": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: two\r\n\r\nok", "502"),
    "cl-negative": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: -2\r\n\r\nok", "502"),
    "cl-plus": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: +2\r\n\r\nok", "502"),
    "cl-and-chunked": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\nok\r\n0\r\n\r\n", "502"),
    "chunked-bad-size": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                             "cut", pieces=(80,)),
    "chunked-bad-size-at-once": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n"
                                     b"5\r\nhello\r\nzz\r\n", "502"),
    "chunked-cut-in-chunk": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n"
                                 b"5\r\nhello\r\n100\r\n" + b"y" * 50, "cut", pieces=(80,)),
    "chunked-no-last-chunk": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                                  "cut", pieces=(80,)),
    "chunked-extension": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n"
                              b"5;a=b\r\nhello\r\n0\r\n\r\n", b"hello"),
    "chunked-trailer": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", b"hello"),
    "te-gzip-chunked": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                            + b"%x\r\n" % len(gzip.compress(b"ok")) + gzip.compress(b"ok") + b"\r\n0\r\n\r\n", "502"),
    "close-delimited": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"\r\nhello world", b"hello world"),
    # -- content codings of a page the proxy rewrites
    "gzip-garbage-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: gzip\r\n" + _length(b"not gzip")
                              + b"\r\nnot gzip", "502", method="GET"),
    "gzip-truncated-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: gzip\r\n"
                                + _length(GZ_PAGE[:-20]) + b"\r\n" + GZ_PAGE[:-20], "502", method="GET"),
    "deflate-garbage-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: deflate\r\n"
                                 + _length(b"garbage!") + b"\r\ngarbage!", "502", method="GET"),
    "br-garbage-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: br\r\n" + _length(b"garbage!")
                            + b"\r\ngarbage!", "502", method="GET"),
    "zstd-garbage-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: zstd\r\n" + _length(b"garbage!")
                              + b"\r\ngarbage!", "502", method="GET"),
    "br-truncated-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: br\r\n"
                              + _length(BR_CUT) + b"\r\n" + BR_CUT, "502", method="GET"),
    "zstd-truncated-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: zstd\r\n"
                                + _length(ZSTD_CUT) + b"\r\n" + ZSTD_CUT,
                                "502", method="GET"),
    "gzip-page-cut-mid-body": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: gzip\r\nTransfer-Encoding: "
                                   b"chunked\r\n\r\n" + b"%x\r\n" % (len(GZ_PAGE) // 2) + GZ_PAGE[:len(GZ_PAGE) // 2]
                                   + b"\r\n", "cut", pieces=(120,), method="GET"),
    "page-cut-mid-body": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Length: %d\r\n\r\n" % (len(PAGE) * 2) + PAGE,
                              "cut", pieces=(150,), method="GET"),
    "page-chunked-cut": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Transfer-Encoding: chunked\r\n\r\n"
                             + b"%x\r\n" % len(PAGE) + PAGE + b"\r\n", "cut", pieces=(150,), method="GET"),
    "gzip-text-passes-untouched": Case(b"HTTP/1.1 200 OK\r\n" + TEXT + b"Content-Encoding: gzip\r\n"
                                       + _length(b"not gzip") + b"\r\nnot gzip", b"not gzip"),
    "deflate-raw-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: deflate\r\n"
                             + _length(RAW_DEFLATE) + b"\r\n" + RAW_DEFLATE, "page", method="GET"),
    "unknown-coding-page": Case(b"HTTP/1.1 200 OK\r\n" + HTML + b"Content-Encoding: x-unknown\r\n"
                                + _length(b"opaque") + b"\r\nopaque", b"opaque", method="GET"),
}


@pytest.fixture(scope="module")
def proxy(proxies: Callable[..., Proxy], recorder: Recorder) -> Proxy:
    for name, case in CASES.items():
        recorder.canned[name] = Canned(case.response, close=True, pieces=case.pieces)
    recorder.canned["cl-shorter-keepalive"] = Canned(ok(body=b"hello") + b"HTTP/1.1 200 OK\r\nContent-Length: 5"
                                                     b"\r\n\r\nEVIL!", close=False)
    site = site_toml("main", f"http://127.0.0.1:{recorder.port}", hosts=("localhost",), read_timeout=2)
    return proxies(site, limits={"max_connections_per_client": 0, "max_requests_per_client": 0})


def _params() -> list[object]:
    return [pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [])
            for name, case in CASES.items()]


def check_outcome(reply: Reply, outcome: str | bytes) -> None:
    if outcome == "502":
        assert reply.statuses == [502], reply.raw[:400]
        assert reply.responses[0].complete and b"could not be reached" in reply.responses[0].body
    elif outcome == "cut":
        assert reply.closed
        assert len(reply.responses) == 1, reply.raw[:400]
        assert reply.statuses == [200]
        assert not reply.responses[0].complete, "a short body must never look complete"
    elif outcome == "page":  # a page the proxy rewrote: whole, with the page's text in it
        assert reply.statuses == [200]
        assert reply.responses[0].complete and b"page text" in reply.responses[0].body
    else:
        assert reply.statuses == [200], reply.raw[:400]
        assert reply.responses[0].complete and reply.responses[0].body == outcome


@pytest.mark.parametrize("name", _params())
def test_a_malformed_upstream_response(proxy: Proxy, recorder: Recorder, name: str) -> None:
    case = CASES[name]
    token = f"u{list(CASES).index(name):06d}"
    body = b"x=1" if case.method == "POST" else b""
    reply = exchange(proxy.port, f"{case.method} /canned/{name}/{token} HTTP/1.1\r\nHost: localhost\r\n"
                                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body,
                     timeout=6)
    check_outcome(reply, case.outcome)
    if case.header is not None:
        assert reply.responses[0].header(case.header[0]) == [case.header[1]]
    assert all(b"evil=1" not in value for _, value in reply.responses[0].headers) if reply.responses else True
    # the site got the request once, whole
    assert [(request.method, request.body) for request in recorder.seen(token)] == [(case.method.encode(), body)]
    # and the proxy still serves the next request normally
    assert get(proxy.port, f"/after/{token}").statuses == [200]


def test_extra_bytes_after_a_response_never_answer_another_request(proxy: Proxy, recorder: Recorder) -> None:
    """An upstream sends more than its Content-Length on a kept-alive connection: the extra bytes are never
    taken as the answer to the next request sent on that connection (response queue poisoning)."""
    reply = get(proxy.port, "/canned/cl-shorter-keepalive/k0")
    assert reply.statuses == [200] and reply.responses[0].body == b"hello"
    for index in range(8):
        follow = get(proxy.port, f"/follow/k{index}")
        assert follow.statuses == [200], follow.raw[:300]
        assert follow.responses[0].body == f"ok GET /follow/k{index} 0".encode()
