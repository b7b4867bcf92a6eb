"""HTML rewriting through a real proxy process, against a real upstream that misbehaves in every way it may.

Compressed bodies although identity was asked for, charsets other than
UTF-8 (declared late or not at all), Content-Security-Policy in headers and
`<meta>`, caching headers, and non-HTML responses that must pass untouched.
"""

from __future__ import annotations

import gzip
import http.client
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import pytest
import zstandard
from aiohttp import web
from conftest import Proxy, free_port, mint, recv_head, serve_app, site_toml

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Shop · café</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST1"></script>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}
gtag('js', new Date()); gtag('config', 'G-TEST1');</script>
<script src="/app.js"></script>
</head><body><h1>Crème brûlée</h1>
<iframe src="https://www.youtube.com/embed/abc123" width="560" height="315"></iframe>
<noscript><img height="1" width="1" src="https://www.facebook.com/tr?id=42&amp;ev=PageView&amp;noscript=1"></noscript>
</body></html>
"""
CODERS = {"gzip": gzip.compress, "br": brotli.compress, "zstd": zstandard.compress, "deflate": zlib.compress}
DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress, "zstd": lambda d: zstandard.ZstdDecompressor()
            .decompressobj().decompress(d), "deflate": zlib.decompress}


class Pages:
    """The upstream: records the request headers it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/page", self.page)
        app.router.add_get("/data.json", self.json)
        app.router.add_get("/latin1", self.latin1)
        app.router.add_get("/late-charset", self.late_charset)
        return app

    async def page(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        body = PAGE.encode()
        headers = {"Content-Type": "text/html; charset=utf-8", "ETag": '"v1"',
                   "Cache-Control": "public, max-age=600"}
        coding = request.query.get("coding")
        if coding:
            body = CODERS[coding](body)
            headers["Content-Encoding"] = coding
        for name in ("csp", "csp-ro"):
            if name in request.query:
                key = "Content-Security-Policy" + ("-Report-Only" if name == "csp-ro" else "")
                headers[key] = request.query[name]
        if "meta-csp" in request.query:
            meta = f'<meta http-equiv="Content-Security-Policy" content="{request.query["meta-csp"]}">'
            body = body.replace(b"<title>", meta.encode() + b"<title>")
        return web.Response(body=body, headers=headers)

    async def json(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        body = b'{"html": "<script src=\\"https://www.googletagmanager.com/gtag/js\\"></script>"}'
        return web.Response(body=body, content_type="application/json", headers={"ETag": '"j1"'})

    async def latin1(self, request: web.Request) -> web.Response:
        body = ("<!doctype html><html lang=nl><head><title>Caf\xe9</title>"
                "<script>gtag('config', 'G-CAFE'); var naam = 'Jos\xe9';</script></head>"
                "<body><p>Cr\xe8me br\xfbl\xe9e \u20ac 5</p></body></html>").encode("windows-1252")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=windows-1252"})

    async def late_charset(self, request: web.Request) -> web.Response:
        filler = "<!-- " + "x" * 1200 + " -->"
        body = (f"<!doctype html><html><head>{filler}<meta charset=windows-1252><title>Caf\xe9</title></head>"
                "<body><script>fbq('init', '1'); var s = 'na\xefve';</script><p>\xe0 la carte</p></body></html>"
                ).encode("windows-1252")
        return web.Response(body=body, headers={"Content-Type": "text/html"})


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[Pages, int]]:
    state = Pages()
    port = free_port()
    with serve_app(state.app(), port):
        yield state, port


@pytest.fixture
def proxy(start_proxy: Any, pages: tuple[Pages, int]) -> Proxy:
    # discovery on every page view, not 5 % at random: each run sees its policy beside the site's own
    result: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{pages[1]}", discovery_sample=1.0))
    return result


def get(proxy: Proxy, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request(method, path, headers={"Host": "localhost", "Accept": "text/html", **(headers or {})})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    # the first of a repeated header: the site's own policy comes before the Report-Only one discovery appends
    # to a sampled page view
    first: dict[str, str] = {}
    for name, value in response.getheaders():
        first.setdefault(name.lower(), value)
    return response.status, first, body


def test_a_page_gets_the_banner_and_its_trackers_blocked(proxy: Proxy, pages: tuple[Pages, int]) -> None:
    status, headers, body = get(proxy, "/page", {"Accept-Encoding": "gzip", "If-None-Match": '"v1"'})
    assert status == 200
    seen = pages[0].seen[-1]
    assert seen["Accept-Encoding"] == "identity"  # we asked for a body we can rewrite
    assert "If-None-Match" not in seen  # the browser's copy shows an older consent state
    html = DECODERS["gzip"](body).decode()
    assert headers["content-encoding"] == "gzip"
    assert headers.get("content-length", str(len(body))) == str(len(body))  # recomputed, or chunked
    assert "etag" not in headers
    assert headers["cache-control"].startswith("private") and "public" not in headers["cache-control"]
    assert "Cookie" in headers["vary"] and "Accept-Encoding" in headers["vary"]
    assert '<section id="cp-banner"' in html and html.index('id="cp-root"') > html.index("<body>")
    assert 'data-cp-src="https://www.googletagmanager.com/gtag/js?id=G-TEST1"' in html
    assert ' src="https://www.googletagmanager.com' not in html
    assert "gtag('config', 'G-TEST1')" in html and 'type="text/plain" data-cp-blocked="statistics"' in html
    assert '<script src="/app.js"></script>' in html  # the site's own script is untouched
    assert 'data-cp-src="https://www.youtube.com/embed/abc123"' in html and 'class="cp-embed' in html
    assert 'data-cp-src="https://www.facebook.com/tr?id=42' in html
    # the Consent Mode default comes before the page's first script
    assert html.index("g('consent','default'") < html.index("googletagmanager.com/gtag/js")
    assert "Crème brûlée" in html
    metrics = proxy.metrics()
    assert 'consentproxy_elements_blocked_total{category="statistics",kind="script-src",site="shop"}' in metrics


def test_with_consent_to_everything_the_page_is_the_upstreams_plus_the_reopen_control(proxy: Proxy) -> None:
    cookie = mint(proxy, {"preferences", "statistics", "marketing"})
    _, _, body = get(proxy, "/page", {"Cookie": f"cp_consent={cookie}"})
    html = body.decode()
    assert 'id="cp-banner"' not in html and 'id="cp-reopen"' in html
    assert '<script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST1"></script>' in html
    assert "data-cp-blocked" not in html
    assert "g('consent','update',{analytics_storage:'granted'" in html


@pytest.mark.parametrize("coding", sorted(CODERS))
def test_compressed_upstream_bodies_are_decoded_rewritten_and_encoded_again(proxy: Proxy, coding: str) -> None:
    get(proxy, f"/page?coding={coding}")  # a first view teaches the vendors it holds: later ones list them
    _, headers, plain = get(proxy, f"/page?coding={coding}")
    assert "content-encoding" not in headers  # the client accepts no coding
    assert b'data-cp-blocked="statistics"' in plain and b"Cr\xc3\xa8me" in plain
    accept = "gzip" if coding == "deflate" else coding
    _, headers, encoded = get(proxy, f"/page?coding={coding}", {"Accept-Encoding": accept})
    assert headers["content-encoding"] == accept
    assert _unstamped(DECODERS[accept](encoded)) == _unstamped(plain)


def _unstamped(page: bytes) -> bytes:
    """Without the per-response stamp, the only part of two rewrites of one page that differs."""
    return re.sub(rb'data-cp-stamp="[^"]+"', b"", page)


def test_other_content_types_pass_untouched(proxy: Proxy, pages: tuple[Pages, int]) -> None:
    _, headers, body = get(proxy, "/data.json", {"Accept": "application/json", "Accept-Encoding": "br"})
    assert pages[0].seen[-1]["Accept-Encoding"] == "br"  # not a page: the client's own header goes on
    assert body.startswith(b'{"html": "<script src=\\"https://www.googletagmanager.com')
    assert headers["etag"] == '"j1"' and headers["content-length"] == str(len(body))
    _, headers, body = get(proxy, "/data.json", {"Accept": "*/*"})
    assert b"cp-root" not in body and headers["etag"] == '"j1"'


def test_a_windows_1252_page_keeps_every_byte(proxy: Proxy) -> None:
    _, _, body = get(proxy, "/latin1")
    assert b"Cr\xe8me br\xfbl\xe9e \x80 5" in body and b"Caf\xe9" in body
    assert b"var naam = 'Jos\xe9';" in body and b'data-cp-blocked="statistics"' in body
    assert b"\xef\xbf\xbd" not in body and b"\xc3" not in body  # nothing decoded as UTF-8
    assert b"Alles accepteren" in body  # the page says lang=nl; injected text is ASCII


def test_a_late_meta_charset_keeps_every_byte(proxy: Proxy) -> None:
    _, _, body = get(proxy, "/late-charset")
    assert b"var s = 'na\xefve';" in body and b"\xe0 la carte" in body and b"\xef\xbf\xbd" not in body
    assert b'data-cp-blocked="marketing"' in body


def _nonces(html: str) -> set[str]:
    """The nonces on what we injected: the Consent Mode script and the banner's script and stylesheet."""
    found = set()
    patterns = (r'<script nonce="([^"]+)">window\.dataLayer', r'<script src="/_consent/[^"]+" defer nonce="([^"]+)"')
    for pattern in patterns:
        found |= set(re.findall(pattern, html))
    return found


def test_csp_nonce_is_reused(proxy: Proxy) -> None:
    policy = "script-src 'nonce-r4nd0m' 'strict-dynamic'; object-src 'none'"
    _, headers, body = get(proxy, "/page?" + _query(csp=policy))
    assert headers["content-security-policy"] == policy
    assert _nonces(body.decode()) == {"r4nd0m"}


@pytest.mark.parametrize("header", ["csp", "csp-ro"])
def test_csp_with_hashes_gets_a_nonce_of_ours(proxy: Proxy, header: str) -> None:
    policy = "script-src 'sha256-abc=' 'strict-dynamic'; style-src 'self'"
    _, headers, body = get(proxy, "/page?" + _query(**{header: policy}))
    name = "content-security-policy" + ("-report-only" if header == "csp-ro" else "")
    nonces = _nonces(body.decode())
    assert len(nonces) == 1
    nonce = nonces.pop()
    assert headers[name] == f"script-src 'sha256-abc=' 'strict-dynamic' 'nonce-{nonce}'; style-src 'self'"
    _, _, again = get(proxy, "/page?" + _query(**{header: policy}))
    assert _nonces(again.decode()) != {nonce}  # fresh per response


def test_csp_without_nonce_or_inline_is_left_alone_and_consent_mode_loads_externally(proxy: Proxy) -> None:
    policy = "default-src 'self'"
    _, headers, body = get(proxy, "/page?" + _query(csp=policy))
    html = body.decode()
    assert headers["content-security-policy"] == policy
    assert "unsafe-inline" not in html and "nonce" not in html
    match = re.search(r'<script src="(/_consent/consent-mode\.js\?g=none)"></script>', html)
    assert match is not None
    status, headers, script = get(proxy, match.group(1), {"Accept": "*/*"})
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"g('consent','default'" in script


def test_meta_csp_nonce_is_reused(proxy: Proxy) -> None:
    _, _, body = get(proxy, "/page?" + _query(**{"meta-csp": "script-src 'nonce-m3ta'"}))
    assert _nonces(body.decode()) == {"m3ta"}


def test_banner_assets_are_served_immutable(proxy: Proxy) -> None:
    _, _, body = get(proxy, "/page")
    html = body.decode()
    for url in re.findall(r'(?:href|src)="(/_consent/banner\.[0-9a-f]{12}\.(?:js|css))"', html):
        status, headers, asset = get(proxy, url, {"Accept": "*/*", "Accept-Encoding": "br"})
        assert status == 200 and headers["cache-control"] == "public, max-age=31536000, immutable"
        assert headers["content-encoding"] == "br" and brotli.decompress(asset)
        status, headers, empty = get(proxy, url, method="HEAD")
        assert status == 200 and empty == b"" and int(headers["content-length"]) > 0
    assert get(proxy, "/_consent/banner.000000000000.js")[0] == 404
    assert get(proxy, "/_consent/nothing")[0] == 404


def _query(**values: str) -> str:
    from urllib.parse import urlencode
    return urlencode(values)


class RawUpstream:
    """An upstream that writes each response exactly as given: in one write, or in parts with a pause between
    (a page still arriving when the proxy has its headers)."""

    def __init__(self) -> None:
        self.responses: dict[str, list[bytes]] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = recv_head(conn)
            if b"\r\n\r\n" not in head:
                return
            path = head.split(b" ", 2)[1].decode()
            for index, part in enumerate(self.responses.get(path, [b"HTTP/1.1 404 Not Found\r\n\r\n"])):
                if index:
                    time.sleep(0.3)
                conn.sendall(part)

    def add(self, path: str, body: bytes, parts: int = 1, coding: str | None = None) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                + (f"Content-Encoding: {coding}\r\n" if coding else "") + "Connection: close\r\n\r\n").encode()
        cut = len(body) // 2
        self.responses[path] = [head + body] if parts == 1 else [head + body[:cut], body[cut:]]


def _encoded(page: bytes) -> dict[str, bytes]:
    return {"gzip": gzip.compress(page), "deflate": zlib.compress(page), "br": brotli.compress(page),
            "zstd": zstandard.ZstdCompressor().compress(page)}


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    page = PAGE.encode()
    upstream.add("/at-once", page)
    upstream.add("/in-parts", page, parts=2)
    zipped = gzip.compress(page)
    upstream.add("/bad-gzip", b"\x1f\x8b\x08\x00 this is no gzip stream at all", coding="gzip")
    upstream.add("/breaks-off", zipped[:len(zipped) // 2] + b"garbage" * 40, parts=2, coding="gzip")
    for coding, encoded in _encoded(page).items():
        # a valid stream minus its end: every byte decodes, yet the page is not all there
        upstream.add(f"/short-{coding}", encoded[:-20], coding=coding)
        upstream.add(f"/short-{coding}-in-parts", encoded[:-20], parts=2, coding=coding)
    yield upstream
    upstream.sock.close()


@pytest.fixture
def raw_proxy(start_proxy: Any, raw_upstream: RawUpstream) -> Proxy:
    result: Proxy = start_proxy(site_toml("raw", f"http://127.0.0.1:{raw_upstream.port}"))
    return result


def _raw_get(proxy: Proxy, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", path, headers={"Host": "localhost", "Accept": "text/html"})
    return connection.getresponse()


def test_a_page_that_came_at_once_goes_out_whole_with_its_length(raw_proxy: Proxy) -> None:
    response = _raw_get(raw_proxy, "/at-once")
    body = response.read()
    assert response.status == 200 and response.getheader("Transfer-Encoding") is None
    assert response.getheader("Content-Length") == str(len(body))
    assert b'id="cp-banner"' in body and b'data-cp-src="https://www.googletagmanager.com/gtag/js?id=G-TEST1"' in body


def test_a_page_still_arriving_is_rewritten_as_it_streams(raw_proxy: Proxy) -> None:
    _raw_get(raw_proxy, "/at-once").read()  # a first view teaches the vendors it holds: later ones list them
    response = _raw_get(raw_proxy, "/in-parts")
    body = response.read()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    whole = _raw_get(raw_proxy, "/at-once").read()
    assert _unstamped(body) == _unstamped(whole)


def test_a_body_that_does_not_decode_gets_a_502_when_it_came_at_once(raw_proxy: Proxy) -> None:
    response = _raw_get(raw_proxy, "/bad-gzip")
    body = response.read()
    assert response.status == 502 and b"this is no gzip" not in body
    assert 'consentproxy_pages_rewritten_total{outcome="failed",site="raw"} 1.0' in raw_proxy.metrics()


def test_a_body_that_stops_decoding_mid_stream_cuts_the_connection(raw_proxy: Proxy) -> None:
    response = _raw_get(raw_proxy, "/breaks-off")
    assert response.status == 200  # the response had started: the client must see it end short
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_valid_compressed_stream_without_its_end_is_never_a_complete_page(raw_proxy: Proxy, coding: str) -> None:
    # came at once: the decoder never saw the stream end, so nothing was sent yet: a 502
    response = _raw_get(raw_proxy, f"/short-{coding}")
    assert response.status == 502, response.read()[-200:]
    response.read()
    # still arriving: the response had started, so the client must see it end short
    response = _raw_get(raw_proxy, f"/short-{coding}-in-parts")
    assert response.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()
    metrics = raw_proxy.metrics()
    assert 'consentproxy_upstream_errors_total{kind="undecodable",site="raw"} 2.0' in metrics
    assert "stream ends early" in raw_proxy.log()
