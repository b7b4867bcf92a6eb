"""Issue 17, on the wire: header caps while reading, strict Host, final refusals, per-address connection cap.

Every test runs a real proxy process and a real upstream and asserts both the answer the client got and
what the upstream saw. None asserts a timing: "within a deadline" is always far above what it takes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from conftest import Upstream, raw_request, recv_response, site_toml, status_of

from consentproxy.proxy.sites import normalise_host

WILD = "wild.test"


def _wild_sites(upstream: Upstream, catch_all: bool) -> str:
    sites = site_toml("wild", upstream.url, hosts=(f"*.{WILD}",))
    sites += site_toml("exact", upstream.url, hosts=("localhost", "site.test", "127.0.0.1", "::1"))
    if catch_all:
        sites += site_toml("rest", upstream.url, hosts=("*",))
    return sites


def _marker(port: int, upstream: Upstream, path: str = "/marker") -> None:
    """A normal request through the proxy: once the upstream has seen it, what came before has arrived too."""
    response = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    assert status_of(response) == 200
    deadline = time.monotonic() + 10
    while path not in [seen.raw_path for seen in upstream.seen] and time.monotonic() < deadline:
        time.sleep(0.05)


def _read_to_close(sock: socket.socket) -> list[bytes]:
    """Every response the proxy sends until it closes, split (each has a Content-Length)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:"))
        responses.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return responses


# -- item 3: Host --------------------------------------------------------------------------------------

BAD_HOSTS = [
    f"evil.com#.{WILD}", f"evil.com/.{WILD}", f"evil.com@a.{WILD}", f"a b.{WILD}", f".{WILD}", f"a..{WILD}",
    f"evil.com?.{WILD}", f"evil.com\\.{WILD}", f"evil.com%2f.{WILD}", f"evil.com,a.{WILD}", f"a.{WILD}:99999",
    f"a.{WILD}:0", f"a.{WILD}:8o", f"a.{WILD}:80:80", "site.test:99999", "[site.test]", "[::1", "[v1.x]",
    "[fe80::1%25eth0]", "site.test.evil.com:80@x", "caf\xe9.site.test", "-", ".", "..", f"*.{WILD}",
]


@pytest.mark.parametrize(("sent", "normal"), [
    (b"Example.NL", b"example.nl"), (b"example.nl.", b"example.nl"), (b"example.nl:0443", b"example.nl:443"),
    (b"example.nl:", b"example.nl"), (b"a_b.example.nl:65535", b"a_b.example.nl:65535"),
    (b"192.0.2.1:8080", b"192.0.2.1:8080"), (b"[2001:DB8:0::1]", b"[2001:db8::1]"), (b"[::1]:80", b"[::1]:80"),
    (b" localhost\t", b"localhost"), (b"x" * 63 + b".nl", b"x" * 63 + b".nl"),
    *[(host.encode("latin-1"), None) for host in BAD_HOSTS],
    (b"", None), (b"x" * 64 + b".nl", None), (b"a." * 127 + b"nl", None), (b"a-.nl", None),
    (b"example.nl:65536", None), (b"example.nl:-1", None), (b"[::1]x", None), (b"[1.2.3.4]", None),
    (b"exa\x00mple.nl", None), (b"example.nl\r\nX-A: b", None),
])
def test_normalise_host(sent: bytes, normal: bytes | None) -> None:
    assert normalise_host(sent) == normal


def test_invalid_host_headers_get_400_and_reach_no_upstream(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(_wild_sites(upstream, catch_all=True))
    for host in BAD_HOSTS:
        request = f"GET /{len(host)} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1")
        response = raw_request(proxy.port, request)
        assert status_of(response) == 400, (host, response[:200])
        assert b"invalid Host header" in response, host
    # the same names in an absolute-form target are refused too
    for host in (f"evil.com@a.{WILD}", f"evil.com#.{WILD}"):
        request = f"GET http://{host}/ HTTP/1.1\r\nHost: a.{WILD}\r\nConnection: close\r\n\r\n".encode()
        assert status_of(raw_request(proxy.port, request)) == 400, host
    _marker(proxy.port, upstream)
    assert [seen.raw_path for seen in upstream.seen] == ["/marker"]


def test_the_upstream_gets_the_normal_host(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(_wild_sites(upstream, catch_all=False))
    cases = {
        f"Shop.{WILD.upper()}.": f"shop.{WILD}",  # lower case, no trailing dot
        "SITE.test:0080": "site.test:80",  # the port as a number
        "site.test:": "site.test",  # an empty port is no port
        "[0:0::1]:81": "[::1]:81",
        "localhost \t": "localhost",
    }
    for index, (sent, expected) in enumerate(cases.items()):
        request = f"GET /n{index} HTTP/1.1\r\nHost: {sent}\r\nConnection: close\r\n\r\n".encode()
        assert status_of(raw_request(proxy.port, request)) == 200, sent
        seen = upstream.seen[-1]
        assert seen.raw_path == f"/n{index}"
        assert seen.header("host") == [expected], sent
        assert seen.header("x-forwarded-host") == [expected], sent


def test_wildcards_match_whole_labels_only(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(_wild_sites(upstream, catch_all=False))

    def status(host: str) -> int:
        return status_of(raw_request(proxy.port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                                                  .encode()))

    assert status(f"a.{WILD}") == 200
    assert status(f"a.b.{WILD}:8080") == 200
    assert status(f"bad{WILD}") == 421
    assert status(WILD) == 421
    assert status(f"{WILD}.evil.com") == 421


# -- item 4: a refusal is final ----------------------------------------------------------------------------

def test_an_unsupported_upgrade_is_refused_and_never_forwarded(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    _marker(proxy.port, upstream, "/warm")  # a pooled upstream connection: a started request would reach it
    for attempt in range(20):
        response = raw_request(proxy.port, f"GET /up{attempt} HTTP/1.1\r\nHost: localhost\r\nUpgrade: foo\r\n"
                                           "Connection: Upgrade\r\n\r\n".encode())
        assert status_of(response) == 400
        assert b"unsupported upgrade" in response
    _marker(proxy.port, upstream)
    assert [seen.raw_path for seen in upstream.seen] == ["/warm", "/marker"]


def test_pipelined_requests_before_an_unframeable_one_are_answered_first(start_proxy: Any,
                                                                         upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhelloJUNK\r\n\r\n")
        first, second = _read_to_close(sock)  # two answers, then the connection closes
        assert status_of(first) == 200, first[:200]
        assert b'"body_size": 5' in first
        assert status_of(second) == 400
    assert [(seen.method, seen.raw_path) for seen in upstream.seen] == [("POST", "/post")]


def test_a_refused_pipelined_request_is_answered_in_order_and_never_forwarded(start_proxy: Any,
                                                                              upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /stall?seconds=0.5 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /evil HTTP/1.1\r\nHost: evil.com@localhost\r\n\r\n"
                     b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first, second, third = _read_to_close(sock)
        assert first.endswith(b"late")
        assert status_of(second) == 200 and b'"/a"' in second
        assert status_of(third) == 400 and b"invalid Host header" in third
    assert [seen.raw_path for seen in upstream.seen] == ["/stall?seconds=0.5", "/a"]


def test_a_broken_chunked_body_ends_its_request(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"POST /broken HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\nZZ\r\n")
        assert [status_of(response) for response in _read_to_close(sock)] == [200, 400]
    _marker(proxy.port, upstream)
    # /broken was still queued behind /first when its body broke: it never started
    assert [seen.raw_path for seen in upstream.seen] == ["/first", "/marker"]


@pytest.mark.parametrize("line", [
    b"GET /refused",  # no version: llhttp takes it as HTTP/0.9 and parses the header lines after it
    b"GET /refused HTTP/0.9",
    b"GET /refused HTTP/2.0",  # llhttp passes it; an HTTP/1 request line is not HTTP/2 (400, not 505)
    b"GET /refused HTTP/3.0",
    b"GET /refused HTTP/1.2",
])
def test_a_request_line_of_another_version_than_1_0_or_1_1_is_refused(start_proxy: Any, upstream: Upstream,
                                                                      line: bytes) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     + line + b"\r\nHost: localhost\r\n\r\n"
                     + b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first, refusal = _read_to_close(sock)  # the request before it answered, then the refusal, then close
        assert status_of(first) == 200
        assert status_of(refusal) == 400, refusal[:200]
        assert b"connection: close" in refusal.lower()
    _marker(proxy.port, upstream)
    assert [seen.raw_path for seen in upstream.seen] == ["/first", "/marker"]


def test_the_supported_versions_are_served(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    for version in ("1.0", "1.1"):
        response = raw_request(proxy.port, f"GET /v{version} HTTP/{version}\r\nHost: localhost\r\n"
                                           "Connection: close\r\n\r\n".encode())
        assert status_of(response) == 200, (version, response[:200])
    assert [seen.raw_path for seen in upstream.seen] == ["/v1.0", "/v1.1"]


def test_an_absolute_form_target_of_another_scheme_than_http_is_refused(start_proxy: Any,
                                                                        upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    for scheme in ("ftp", "FTP", "ws", "wss", "gopher", "httpx", "file", "h"):
        response = raw_request(proxy.port, f"GET {scheme}://localhost/{scheme} HTTP/1.1\r\nHost: localhost\r\n"
                                           "Connection: close\r\n\r\n".encode())
        assert status_of(response) == 400, (scheme, response[:200])
    # schemes are case-insensitive (RFC 3986 3.1): HTTP:// is http://
    for scheme in ("http", "HTTP", "https", "HttpS"):
        response = raw_request(proxy.port, f"GET {scheme}://localhost/ok-{scheme} HTTP/1.1\r\nHost: localhost\r\n"
                                           "Connection: close\r\n\r\n".encode())
        assert status_of(response) == 200, (scheme, response[:200])
    assert [seen.raw_path for seen in upstream.seen] == ["/ok-http", "/ok-HTTP", "/ok-https", "/ok-HttpS"]


# -- item 2: header caps while reading -------------------------------------------------------------------

def _send_until_answered(sock: socket.socket, head: bytes, filler: bytes, limit: int) -> bytes:
    """Send `head`, then `filler` in 1 KB pieces, never ending the line, until the proxy answers or `limit`
    bytes went; what it answered."""
    sock.sendall(head)
    sent = 0
    sock.settimeout(0.05)
    answer = b""
    while sent < limit:
        try:
            sock.sendall(filler * (1024 // len(filler)))
        except OSError:
            break
        sent += 1024
        try:
            answer = sock.recv(4096)
            break
        except TimeoutError:
            continue
        except OSError:
            break
    sock.settimeout(10)
    try:
        return answer or sock.recv(4096)
    except OSError:
        return answer


@pytest.mark.parametrize(("head", "filler"), [
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ", b"a"),  # a value that never ends
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-", b"b"),  # a name that never ends
    (b"GET / HTTP/1.1\r\nHost: localhost\r\n", b"X-H: v\r\n"),  # a block that never ends
])
def test_an_endless_header_gets_431_at_the_cap(start_proxy: Any, upstream: Upstream, head: bytes,
                                               filler: bytes) -> None:
    # a header deadline far away: the answer must be the cap's, not the deadline's 408
    proxy = start_proxy(site_toml("main", upstream.url),
                        limits={"max_header_bytes": 8192, "max_header_count": 10000, "header_timeout": 120})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        answer = _send_until_answered(sock, head, filler, 4 * 1024 * 1024)
    assert status_of(answer) == 431, answer[:200]
    assert upstream.seen == []


def test_a_client_that_sends_on_without_reading_still_gets_its_431(start_proxy: Any, upstream: Upstream) -> None:
    """The proxy answers while the client still sends. Had it closed with the client's bytes unread in its
    socket, the kernel would reset the connection, and the client could lose the 431 (bench_starvation.py
    lost it on about half of its connections). It ends its side and reads and drops them a while instead."""
    proxy = start_proxy(site_toml("main", upstream.url), limits={"max_header_bytes": 8192})

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        answer = asyncio.ensure_future(reader.read(64))
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            for _ in range(256):  # 1 MiB in 4 KiB pieces, never a line end, until the answer is here
                if answer.done():
                    break
                writer.write(b"v" * 4096)
                await writer.drain()
                await asyncio.sleep(0)
        except OSError:
            pass
        try:
            return (await asyncio.wait_for(answer, 10))[:12].decode("latin-1")
        except OSError as exc:
            return type(exc).__name__
        finally:
            writer.close()

    async def many() -> list[str]:
        return [await one() for _ in range(20)]

    assert asyncio.run(many()) == ["HTTP/1.1 431"] * 20
    assert upstream.seen == []


def test_a_head_just_under_the_cap_in_small_pieces_is_served(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), limits={"max_header_bytes": 4096})
    request = b"GET /" + b"p" * 3000 + b" HTTP/1.1\r\nHost: localhost\r\nX-Fill: " + b"f" * 3900 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        for start in range(0, len(request), 100):
            sock.sendall(request[start:start + 100])
        assert status_of(recv_response(sock)) == 200
        # pipelined after a body, in one write: the next head is counted from its own start
        sock.sendall(b"POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000
                     + b"GET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Fill: " + b"f" * 3880
                     + b"\r\n\r\n")
        assert [status_of(response) for response in _read_to_close(sock)] == [200, 200]
    assert [seen.raw_path for seen in upstream.seen][1:] == ["/body", "/next"]


def test_many_pipelined_heads_in_one_read_are_each_counted_from_their_start(start_proxy: Any,
                                                                            upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), limits={"max_header_bytes": 1024})
    heads = [f"GET /p{index} HTTP/1.1\r\nHost: localhost\r\nX-Fill: {'f' * 200}\r\n\r\n" for index in range(40)]
    heads[-1] = heads[-1].replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall("".join(heads).encode())  # 10 KB: ten times the cap, in one write
        assert [status_of(response) for response in _read_to_close(sock)] == [200] * 40
    assert [seen.raw_path for seen in upstream.seen] == [f"/p{index}" for index in range(40)]


# -- item 1 (part): connections per client address -----------------------------------------------------

def test_connections_per_client_address_are_capped(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url),
                        limits={"max_connections_per_client": 3, "keepalive_timeout": 120})
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(3)]
    try:
        for sock in held:  # each is answered, so each is open and counted
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(recv_response(sock)) == 200
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as extra:
            refused = recv_response(extra)
            assert status_of(refused) == 503 and b"too many connections" in refused
            assert extra.recv(4096) == b""
        assert 'consentproxy_refused_connections_total{reason="per_client_limit"} 1.0' in proxy.metrics()
        assert "refusing connections from 127.0.0.1" in proxy.log()
    finally:
        held.pop().close()
    # a closed connection frees its place (the proxy learns of the close a moment later)
    deadline = time.monotonic() + 10
    while True:
        response = raw_request(proxy.port, b"GET /again HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        if status_of(response) == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status_of(response) == 200
    for sock in held:
        sock.close()
    assert "/again" in [seen.raw_path for seen in upstream.seen]


# -- item 7: the consent API's Origin and its single headers --------------------------------------------------

def _decide(port: int, headers: list[tuple[str, str]], host: str = "") -> tuple[int, bytes]:
    body = b'{"action": "accept_all"}'
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = (f"POST /_consent HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n{lines}"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    response = raw_request(port, request)
    return status_of(response), response.partition(b"\r\n\r\n")[2]


def test_the_consent_api_compares_scheme_host_and_port_of_the_origin(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("kade", upstream.url))
    port = proxy.port
    json = ("Content-Type", "application/json")
    assert _decide(port, [json, ("Origin", f"http://127.0.0.1:{port}")])[0] == 200
    assert _decide(port, [json, ("Origin", f"HTTP://127.0.0.1:{port}")])[0] == 200
    for origin in (f"https://127.0.0.1:{port}", "http://127.0.0.1", f"http://127.0.0.1:{port}/x",
                   f"http://127.0.0.2:{port}", f"http://127.0.0.1:0{port}0", "null"):
        status, body = _decide(port, [json, ("Origin", origin)])
        assert (status, b"cross_site" in body) == (403, True), origin
    # the default port of the scheme is the port of an Origin without one
    assert _decide(port, [json, ("Origin", "http://localhost")], host="localhost:80")[0] == 200
    assert _decide(port, [json, ("Origin", "https://localhost")], host="localhost:80")[0] == 403


def test_the_consent_api_takes_the_scheme_a_trusted_proxy_forwarded(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("kade", upstream.url), server={"trusted_proxies": ["127.0.0.1/32"]})
    port = proxy.port
    forwarded = [("Content-Type", "application/json"), ("X-Forwarded-Proto", "https")]
    assert _decide(port, [*forwarded, ("Origin", f"https://127.0.0.1:{port}")])[0] == 200
    assert _decide(port, [*forwarded, ("Origin", f"http://127.0.0.1:{port}")])[0] == 403


REPEATED = [
    [("Origin", "https://evil.example"), ("Origin", "http://127.0.0.1:{port}")],
    [("Origin", "http://127.0.0.1:{port}"), ("Origin", "https://evil.example")],
    [("Content-Type", "text/plain"), ("Content-Type", "application/json")],
    [("Content-Type", "application/json"), ("Content-Type", "application/json")],
    [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "same-origin")],
]


def test_the_consent_api_refuses_a_repeated_origin_content_type_or_fetch_site(start_proxy: Any,
                                                                              upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("kade", upstream.url))
    for headers in REPEATED:
        sent = [(name, value.format(port=proxy.port)) for name, value in headers]
        if not any(name == "Content-Type" for name, _ in sent):
            sent.append(("Content-Type", "application/json"))
        status, body = _decide(proxy.port, sent)
        assert (status, b"duplicate_header" in body) == (400, True), (headers, body)
    assert upstream.seen == []
