"""Issue 17: fair use of the worker under slow uploads, upstream statuses that are no HTTP status, and
client-address headers and header bytes on their way upstream. Every test runs a real proxy process
against a real upstream."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Proxy, Upstream, raw_request, recv_head, recv_response, site_toml, status_of


@pytest.fixture
def raw_upstream() -> Iterator[Any]:
    """`start(response, hold=0.2)`: a TCP server answering every request with `response` bytes (or a list of
    pieces, sent apart), then holding the connection open `hold` seconds; returns its port."""
    servers: list[socket.socket] = []

    def start(response: bytes | list[bytes], hold: float = 0.2) -> int:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        servers.append(server)
        pieces = [response] if isinstance(response, bytes) else response

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    recv_head(conn)
                    try:
                        for index, piece in enumerate(pieces):
                            if index:
                                time.sleep(0.05)
                            conn.sendall(piece)
                    except OSError:  # the proxy hung up on what it was sent so far
                        continue
                    time.sleep(hold)

        threading.Thread(target=serve, daemon=True).start()
        return int(server.getsockname()[1])

    yield start
    for server in servers:
        server.close()


# -- item 5: an upstream status that is no final HTTP status ---------------------------------------------

@pytest.mark.parametrize("status_line", [b"HTTP/1.1 600 Beyond", b"HTTP/1.1 099 Below", b"HTTP/1.1 101 Switching"])
def test_an_upstream_status_outside_the_final_range_gets_a_502_page(start_proxy: Any, raw_upstream: Any,
                                                                     status_line: bytes) -> None:
    port = raw_upstream(status_line + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 502
    assert b"text/html" in response and b"could not be reached" in response
    deadline = time.monotonic() + 5
    while "not a final HTTP status" not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"with status {int(status_line.split()[1])}, not a final HTTP status" in proxy.log()
    assert 'kind="status"' in proxy.metrics()


@pytest.mark.parametrize("interim", [b"HTTP/1.1 102 Processing\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"])
def test_an_interim_answer_is_not_forwarded_as_the_final_one(start_proxy: Any, raw_upstream: Any,
                                                            interim: bytes) -> None:
    port = raw_upstream(interim + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nok")


def _wait_for_log(proxy: Proxy, text: str) -> str:
    deadline = time.monotonic() + 5
    while text not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proxy.log()


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@pytest.mark.parametrize("pieces", [
    [b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
    [b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
    [b"ICE/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
    # after an interim answer, and split where the check must carry what it saw from one read to the next
    [b"HTTP/1.1 100 Continue\r\n\r\nRTSP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r", b"\nRT", b"SP/1.0 200 OK\r\n",
     b"Content-Length: 2\r\n\r\nok"],
    [b"HTT", b"P/2", b".0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
], ids=["http2", "rtsp", "ice", "rtsp-after-100", "rtsp-after-103-split", "http2-split"])
def test_a_status_line_that_is_not_http1_gets_a_502_page(start_proxy: Any, raw_upstream: Any,
                                                          pieces: list[bytes]) -> None:
    """aiohttp's parser takes HTTP/2.0 as a version and RTSP/ and ICE/ as HTTP/1.x: the proxy does not."""
    port = raw_upstream(pieces)
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 502
    assert b"could not be reached" in response
    assert "no HTTP/1.x status line" in _wait_for_log(proxy, "no HTTP/1.x status line")
    assert _metric(proxy, "consentproxy_upstream_errors_total", 'kind="protocol",site="main"') == 1


@pytest.mark.parametrize("pieces", [
    [b"HT", b"TP/1.", b"1 2", b"00 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"],
    [b"\r\nHTTP/1.1 10", b"3 Early Hints\r\nLink: </a.css>; rel=preload\r\n", b"\r", b"\n", b"HTTP/1.1 1",
     b"00 Continue\n\nHTTP/1.0 200 OK\r\n", b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"],
], ids=["split", "interims-split"])
def test_http1_status_lines_pass_however_they_are_split(start_proxy: Any, raw_upstream: Any,
                                                        pieces: list[bytes]) -> None:
    port = raw_upstream(pieces)
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200, response
    assert response.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/html; charset=utf-8"])
def test_an_invalid_chunk_size_after_the_head_cuts_the_client_at_once(start_proxy: Any, raw_upstream: Any,
                                                                       content_type: bytes) -> None:
    """The upstream keeps its connection open after the broken chunk: the client's connection is cut at
    once (well within read_timeout), its body never complete, with a log line and a metric. The page
    (`text/html`) goes through the rewriting filter, the text straight through."""
    first = b"<p>" + b"hello " * 200 + b"</p>"
    port = raw_upstream([b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n%x\r\n" % len(first) + first + b"\r\n", b"zz\r\nmore\r\n"], hold=60)
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}", read_timeout=60))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        sock.sendall(b"GET /chunks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # a TimeoutError here: the connection left hanging
            data += chunk
    assert time.monotonic() - started < 20
    assert status_of(data) == 200
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"hello" in body and not body.endswith(b"0\r\n\r\n"), "a cut body must never look complete"
    assert "upstream failed while sending the body" in _wait_for_log(proxy, "while sending the body")
    assert _metric(proxy, "consentproxy_upstream_errors_total", 'kind="body",site="main"') == 1


@pytest.mark.parametrize("codings", [[b"gzip, chunked"], [b"gzip", b"chunked"], [b"gzip"], [b"chunked, gzip"],
                                     [b"identity"]], ids=["gzip-chunked", "two-headers", "gzip-alone",
                                                          "chunked-gzip", "identity"])
def test_a_transfer_coding_other_than_chunked_gets_a_502_page(start_proxy: Any, raw_upstream: Any,
                                                              codings: list[bytes]) -> None:
    """aiohttp only undoes chunked: what is left would be another coding's bytes served as the content (or
    a body framed by the close alone). Decoding them is not supported: 502, a log line and a metric."""
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(gzip.compress(b"ok")), gzip.compress(b"ok"))
    head = b"".join(b"Transfer-Encoding: " + coding + b"\r\n" for coding in codings)
    port = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + head + b"\r\n" + body)
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET /te HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 502
    assert b"could not be reached" in response and b"\x1f\x8b" not in response
    assert "only chunked is taken from upstreams" in _wait_for_log(proxy, "only chunked")
    assert _metric(proxy, "consentproxy_upstream_errors_total", 'kind="protocol",site="main"') == 1


def test_chunked_in_any_case_and_with_empty_list_elements_passes(start_proxy: Any, raw_upstream: Any) -> None:
    port = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: , Chunked\r\n\r\n"
                        b"2\r\nok\r\n0\r\n\r\n")
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
    response = raw_request(proxy.port, b"GET /te HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200
    assert response.endswith(b"2\r\nok\r\n0\r\n\r\n")


# -- item 8 (cache safety): cache directives targeted at a CDN ------------------------------------------------

TARGETED = [(b"cdn-cache-control", b"public, max-age=600"), (b"surrogate-control", b"max-age=600"),
            (b"cloudflare-cdn-cache-control", b"max-age=600"), (b"vercel-cdn-cache-control", b"max-age=600"),
            (b"netlify-cdn-cache-control", b"max-age=600"), (b"x-litespeed-cache-control", b"public,max-age=600"),
            (b"edge-control", b"cache-maxage=600s"), (b"x-accel-expires", b"600")]


def test_marking_a_response_private_drops_the_cache_directives_targeted_at_a_cdn() -> None:
    from consentproxy.cookies.enforcement import mark_private

    headers = [(b"content-type", b"text/html"), *TARGETED, (b"cache-control", b"public, max-age=60"),
               (b"x-cache-control-note", b"kept"), (b"surrogate-key", b"page-1")]
    mark_private(headers)
    assert headers == [(b"content-type", b"text/html"), (b"cache-control", b"private, max-age=60"),
                       (b"x-cache-control-note", b"kept"), (b"surrogate-key", b"page-1"), (b"vary", b"Cookie")]


def test_a_response_made_private_by_a_refused_cookie_loses_its_cdn_directives(start_proxy: Any,
                                                                              raw_upstream: Any) -> None:
    """The cookie step marks a response private when it drops a tracker's Set-Cookie (the page step is
    covered by the adversarial suite); a response that does not depend on consent keeps them."""
    targeted = b"".join(name + b": " + value + b"\r\n" for name, value in TARGETED)
    tracked = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + targeted
                           + b"Set-Cookie: _ga=GA1.1.1.1; Path=/\r\nContent-Length: 2\r\n\r\nok")
    plain = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + targeted
                         + b"Content-Length: 2\r\n\r\nok")
    proxy = start_proxy(site_toml("tracked", f"http://127.0.0.1:{tracked}", hosts=("tracked.test",))
                        + site_toml("plain", f"http://127.0.0.1:{plain}", hosts=("plain.test",)))
    request = b"GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    head = raw_request(proxy.port, request % b"tracked.test").partition(b"\r\n\r\n")[0].lower()
    assert b"set-cookie: _ga" not in head and b"cache-control: private" in head
    assert not any(name + b":" in head for name, _ in TARGETED), head
    head = raw_request(proxy.port, request % b"plain.test").partition(b"\r\n\r\n")[0].lower()
    assert all(name + b": " + value in head for name, value in TARGETED), head
    assert b"private" not in head


# -- item 6: client-address headers, and header bytes as they came ----------------------------------------

SPOOFED = [
    (b"X-Real-IP", b"203.0.113.66"), (b"True-Client-IP", b"203.0.113.66"), (b"CF-Connecting-IP", b"203.0.113.66"),
    (b"X-Client-IP", b"203.0.113.66"), (b"X-Cluster-Client-IP", b"203.0.113.66"), (b"Client-IP", b"203.0.113.66"),
    (b"Fastly-Client-IP", b"203.0.113.66"), (b"X-Original-Forwarded-For", b"203.0.113.66"),
    (b"X-Forwarded-Port", b"443"), (b"X_Forwarded_For", b"203.0.113.66"), (b"X_Real_IP", b"203.0.113.66"),
    (b"X-Visitor-IP", b"203.0.113.66"), (b"X_Visitor_IP", b"203.0.113.66"), (b"X-Forwarded-For", b"203.0.113.66"),
    (b"Forwarded", b"for=203.0.113.66"),
]


def _send_headers(port: int, headers: list[tuple[bytes, bytes]], path: bytes = b"/who") -> bytes:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return raw_request(port, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + head
                       + b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("configured", [False, True])
def test_client_address_headers_from_an_untrusted_peer_never_reach_the_site(start_proxy: Any, upstream: Upstream,
                                                                            configured: bool) -> None:
    """The built-in list, and (`configured`) one more header the site names."""
    extra = {"client_address_headers": ["X-Visitor-IP"]} if configured else {}
    proxy = start_proxy(site_toml("main", upstream.url, **extra))
    sent = SPOOFED if configured else [row for row in SPOOFED if b"Visitor" not in row[0]]
    response = _send_headers(proxy.port, [*sent, (b"X-Kept", b"yes")])
    assert status_of(response) == 200
    seen = upstream.seen[-1]
    assert not any("203.0.113.66" in value for _, value in seen.headers), seen.headers
    assert seen.header("x-forwarded-port") == []
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("x-kept") == ["yes"]


def test_a_trusted_proxy_passes_only_the_client_address_headers_the_site_names(start_proxy: Any,
                                                                              upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, client_address_headers=["X-Visitor-IP"],
                                  pass_client_headers=["X-Real-IP", "X-Visitor-IP"]),
                        server={"trusted_proxies": ["127.0.0.1/32"]})
    response = _send_headers(proxy.port, SPOOFED)
    assert status_of(response) == 200
    seen = upstream.seen[-1]
    assert seen.header("x-real-ip") == ["203.0.113.66"]
    assert seen.header("x-visitor-ip") == ["203.0.113.66"]
    for name in (b"True-Client-IP", b"CF-Connecting-IP", b"X-Client-IP", b"Client-IP", b"X-Forwarded-Port",
                 b"X_Forwarded_For", b"X_Real_IP", b"X_Visitor_IP"):
        assert seen.header(name.decode()) == [], name
    assert seen.header("x-forwarded-for") == ["203.0.113.66, 127.0.0.1"]  # the chain, as before


def test_pass_client_headers_needs_full_addresses_and_a_client_address_header() -> None:
    from pathlib import Path

    from consentproxy.config.loader import ConfigError, config_from_dict

    site = {"hosts": ["a.test"], "upstream": "http://127.0.0.1:1", "forward_client_ip": "truncated",
            "pass_client_headers": ["X-Real-IP", "X-Session"]}
    with pytest.raises(ConfigError) as refused:
        config_from_dict({"sites": {"a": site}}, "c.toml", Path("."))
    text = str(refused.value)
    assert "X-Session".lower() in text and "no client-address header" in text
    assert "forward_client_ip" in text


def test_header_bytes_reach_the_site_byte_identical(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, necessary=("PHPSESSID",)))
    values = [(b"Cookie", b"PHPSESSID=caf\xe9"), (b"X-Latin", b"\x80\xa0\xff end"),
              (b"X-Utf8", b"caf\xc3\xa9 \xe2\x82\xac"), (b"X-Mixed", b"\xc3\xa9\xe9\xc3")]
    response = _send_headers(proxy.port, values)
    assert status_of(response) == 200
    seen = upstream.seen[-1]  # the test upstream records raw header bytes as latin-1 text
    for name, value in values:
        assert [v.encode("latin-1") for v in seen.header(name.decode())] == [value], name


# -- item 1: fair use of the worker ---------------------------------------------------------------------

def _metric(proxy: Proxy, name: str, labels: str) -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in proxy.metrics().splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_for(check: Any, what: str, timeout: float = 30) -> None:
    """Poll until `check()` holds: a condition to synchronise on, never a timing to assert."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _start_upload(port: int, path: str, declared: int, first: bytes, source: str = "127.0.0.1",
                  headers: bytes = b"") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n".encode() + headers
                 + b"\r\n" + first)
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the reply on `sock`, and the whole reply (read until the proxy closes)."""
    data = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    return status_of(data), data


@pytest.mark.parametrize("other_client", ["address", "forwarded"])
def test_slow_uploads_from_one_client_starve_nobody(start_proxy: Any, upstream: Upstream, other_client: str) -> None:
    """60 uploads that stall after their first byte, from one client: the site's pool (4 connections here) is
    not theirs to hold, another client's GET is answered while they wait, the client gets 429 beyond its
    20 requests in flight, and each stalled upload gets 408 at its deadline without reaching the site.

    The other client is another source address, or (`forwarded`) another address named by a trusted proxy.
    """
    server: dict[str, Any] = {"upstream_connections": 4}
    if other_client == "forwarded":
        server["trusted_proxies"] = ["127.0.0.1/32"]
    proxy = start_proxy(site_toml("main", upstream.url, body_grace=8, body_min_rate=100, body_timeout=10),
                        server=server, limits={"max_requests_per_client": 20})
    source, spoofer = ("127.0.0.2", b"") if other_client == "address" else ("127.0.0.1",
                                                                           b"X-Forwarded-For: 198.51.100.1\r\n")
    uploads = [_start_upload(proxy.port, f"/slow/{index}", 1000, b"x", source, spoofer) for index in range(60)]
    try:
        _wait_for(lambda: _metric(proxy, "consentproxy_limited_requests_total", 'limit="client_requests"') >= 40,
                  "40 uploads over the client's limit refused")
        other = b"X-Forwarded-For: 198.51.100.2\r\n" if other_client == "forwarded" else b""
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=8) as sock:  # the body deadline
            sock.sendall(b"GET /page HTTP/1.1\r\nHost: localhost\r\n" + other + b"Connection: close\r\n\r\n")
            assert status_of(recv_head(sock)) == 200
        assert not any(seen.raw_path.startswith("/slow/") for seen in upstream.seen)
        answers = [_answer(sock) for sock in uploads]
    finally:
        for sock in uploads:
            sock.close()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [408] * 20 + [429] * 40
    assert all(b"retry-after: 1" in reply.lower() for status, reply in answers if status == 429)
    assert not any(seen.raw_path.startswith("/slow/") for seen in upstream.seen)  # nothing half-sent upstream
    assert _metric(proxy, "consentproxy_limited_requests_total", 'limit="body_deadline"') == 20
    log = proxy.log()
    assert "max_requests_per_client" in log and "request body from" in log and "too slow" in log


def test_a_streamed_upload_that_stalls_is_cut_off_upstream_and_answered_408(start_proxy: Any) -> None:
    """A body larger than body_buffer_bytes streams upstream as it comes; when it stalls, its deadline aborts
    the upstream request (the site's connection ends before the body is complete) and the client gets 408
    and the connection closed."""
    received: list[int] = []  # what the site had of the body when its connection ended
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def site() -> None:
        conn, _ = server.accept()
        with conn:
            head = recv_head(conn)
            total = len(head.partition(b"\r\n\r\n")[2])
            try:
                while chunk := conn.recv(65536):
                    total += len(chunk)
            except OSError:
                pass
            received.append(total)

    threading.Thread(target=site, daemon=True).start()
    try:
        proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{server.getsockname()[1]}", body_grace=2,
                                      body_min_rate=1000, body_timeout=30), limits={"body_buffer_bytes": 1024})
        sock = _start_upload(proxy.port, "/big", 10_000_000, b"y" * 4000)
        status, reply = _answer(sock)
        assert status == 408
        assert b"connection: close" in reply.lower()
        _wait_for(lambda: received, "the site's connection ended")
        assert 0 < received[0] < 10_000_000
        assert "request body from" in proxy.log()
    finally:
        server.close()


def test_the_buffer_budget_makes_further_bodies_stream(start_proxy: Any, upstream: Upstream) -> None:
    """Bodies are held whole until complete, within the worker's max_buffered_bytes; the next one that does
    not fit streams upstream at once (a metric and a log line), and every one arrives whole."""
    proxy = start_proxy(site_toml("main", upstream.url), limits={"body_buffer_bytes": 2000,
                                                                 "max_buffered_bytes": 2000})
    held = [_start_upload(proxy.port, f"/held/{index}", 1500, b"h" * 900) for index in range(2)]
    _wait_for(lambda: _metric(proxy, "consentproxy_buffered_body_bytes", "") >= 1800
              or _metric(proxy, "consentproxy_limited_requests_total", 'limit="buffer_budget"') >= 1,
              "two bodies buffered")
    streamed = _start_upload(proxy.port, "/streamed", 1500, b"s" * 900)
    _wait_for(lambda: any(seen.raw_path == "/streamed" for seen in upstream.seen), "the third body streaming")
    assert not any(seen.raw_path.startswith("/held/") for seen in upstream.seen)
    for sock in [*held, streamed]:
        sock.sendall(b"z" * 600)
    for sock in [*held, streamed]:
        status, reply = _answer_one(sock)
        assert status == 200
        assert b'"body_size": 1500' in reply
    assert _metric(proxy, "consentproxy_limited_requests_total", 'limit="buffer_budget"') >= 1
    assert "max_buffered_bytes" in proxy.log()


def _answer_one(sock: socket.socket) -> tuple[int, bytes]:
    with sock:
        reply = recv_response(sock)
    return status_of(reply), reply


def test_a_client_counts_by_its_ipv4_address_or_ipv6_64() -> None:
    from consentproxy.proxy.limits import ClientSlots, client_key

    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"
    slots = ClientSlots(2)
    keys = [slots.acquire("2001:db8:1:2::1"), slots.acquire("2001:db8:1:2::2")]
    assert None not in keys and slots.acquire("2001:db8:1:2::3") is None
    assert slots.acquire("2001:db8:1:3::1") is not None
    slots.release(keys[0] or "")
    assert slots.acquire("2001:db8:1:2::3") is not None


def test_a_chunked_upload_that_stalls_gets_408_and_never_reaches_the_site(start_proxy: Any,
                                                                           upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, body_grace=1, body_min_rate=1000, body_timeout=30))
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    sock.sendall(b"POST /chunked-stall HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n")
    status, reply = _answer(sock)
    assert status == 408
    assert b"connection: close" in reply.lower()
    assert not any(seen.raw_path == "/chunked-stall" for seen in upstream.seen)
    assert _metric(proxy, "consentproxy_limited_requests_total", 'limit="body_deadline"') == 1
