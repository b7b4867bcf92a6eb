"""The proxy core against a real upstream, through a real proxy process."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import (
    Proxy,
    Upstream,
    free_port,
    raw_request,
    recv_head,
    recv_response,
    serve_app,
    site_toml,
    status_of,
    trickle_until_cut,
)


def get_json(url: str, **kwargs: Any) -> dict[str, Any]:
    request = urllib.request.Request(url, **kwargs)
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.fixture
def proxy(start_proxy: Any, upstream: Upstream) -> Proxy:
    result: Proxy = start_proxy(site_toml("main", upstream.url, read_timeout=2, connect_timeout=1,
                                          max_body_bytes="1MB", necessary=("a",)))
    return result


def test_get_passes_method_path_and_query_byte_identical(proxy: Proxy, upstream: Upstream) -> None:
    target = "/a%2Fb/./c/../d;p=1?q=%20x&q=2&empty=&%C3%A9=%e9&plus=a+b"
    response = raw_request(proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                           .encode())
    assert status_of(response) == 200
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["raw_path"] == target
    assert upstream.seen[-1].method == "GET"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])
def test_methods_and_bodies_pass(proxy: Proxy, method: str) -> None:
    body = b"hello world" * 100
    result = get_json(proxy.url + "/m", method=method, data=body, headers={"Content-Type": "text/plain"})
    assert result["method"] == method
    assert result["body_size"] == len(body)
    content_type = [v for k, v in result["headers"] if k.lower() == "content-type"]
    assert content_type == ["text/plain"]


def test_head_204_304(proxy: Proxy) -> None:
    head = raw_request(proxy.port, b"HEAD /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(head) == 200
    headers, _, rest = head.partition(b"\r\n\r\n")
    assert rest == b""
    assert b"content-length:" in headers.lower()
    for code in (204, 304):
        response = raw_request(proxy.port, f"GET /status/{code} HTTP/1.1\r\nHost: localhost\r\n"
                               "Connection: close\r\n\r\n".encode())
        assert status_of(response) == code
        head_part, _, rest = response.partition(b"\r\n\r\n")
        assert rest == b""
        assert b"transfer-encoding" not in head_part.lower()
        assert b'etag: "v1"' in head_part.lower()


def test_hop_by_hop_headers_are_stripped_both_ways(proxy: Proxy, upstream: Upstream) -> None:
    request = (
        b"GET /hop HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Secret-Hop\r\n"
        b"X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
        b"Upgrade: h2c\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n"
        b"X-End-To-End: yes\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
    seen = upstream.seen[-1]
    names = {k.lower() for k, _ in seen.headers}
    for hop in ("x-secret-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                "proxy-connection"):
        assert hop not in names, hop
    assert seen.header("X-End-To-End") == ["yes"]
    response_head = data.split(b"\r\n\r\n")[0].lower()
    for hop in (b"x-hop:", b"keep-alive:", b"proxy-authenticate:", b"trailer:", b"upgrade:"):
        assert hop not in response_head, hop
    assert b"x-end: kept" in response_head
    assert b"set-cookie: a=1; path=/" in response_head


def test_content_length_with_transfer_encoding_is_refused(proxy: Proxy, upstream: Upstream) -> None:
    smuggle = (
        b"POST /smuggle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    response = raw_request(proxy.port, smuggle)
    assert status_of(response) == 400
    assert response.count(b"HTTP/1.1") == 1
    assert upstream.seen == []
    for bad in (
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: localhost\r\n folded: header\r\n\r\n",
    ):
        assert status_of(raw_request(proxy.port, bad)) in (400, 501), bad
    assert upstream.seen == []


def test_chunked_upload_reaches_upstream_with_one_framing(proxy: Proxy, upstream: Upstream) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b"a" * 1000, b"b" * 70000, b"c"))
    request = (b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    response = raw_request(proxy.port, request)
    assert status_of(response) == 200
    result = json.loads(response.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
                        if b"transfer-encoding: chunked" in response.lower() else response.split(b"\r\n\r\n", 1)[1])
    assert result["body_size"] == 71001
    seen = upstream.seen[-1]
    framing = [k.lower() for k, _ in seen.headers if k.lower() in ("content-length", "transfer-encoding")]
    assert len(framing) == 1


def test_unknown_host_gets_421_and_upstream_sees_nothing(proxy: Proxy, upstream: Upstream) -> None:
    response = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 421
    assert b"<!doctype html>" in response
    assert upstream.seen == []


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n", 400),
    (b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
])
def test_never_an_open_proxy(proxy: Proxy, upstream: Upstream, request_bytes: bytes, status: int) -> None:
    assert status_of(raw_request(proxy.port, request_bytes)) == status
    assert upstream.seen == []
    assert "consentproxy_rejected_requests_total" in proxy.metrics()


def test_absolute_form_for_own_host_is_served(proxy: Proxy, upstream: Upstream) -> None:
    response = raw_request(proxy.port, f"GET http://localhost:{proxy.port}/abs?x=1 HTTP/1.1\r\n"
                           f"Host: localhost:{proxy.port}\r\nConnection: close\r\n\r\n".encode())
    assert status_of(response) == 200
    assert upstream.seen[-1].raw_path == "/abs?x=1"


def test_forwarded_headers_from_untrusted_peer(proxy: Proxy, upstream: Upstream) -> None:
    result = get_json(proxy.url + "/fwd", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "spoof.example",
        "Forwarded": "for=203.0.113.9", "Host": "localhost",
    })
    headers = {k.lower(): v for k, v in result["headers"]}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "localhost"
    assert "forwarded" not in headers
    assert headers["via"] == "1.1 consentproxy"
    assert headers["host"] == "localhost"


def test_forwarded_headers_behind_trusted_proxy(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), server={
        "trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"], "access_log": True})
    result = get_json(proxy.url + "/fwd", headers={
        "X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.1.2.3", "X-Forwarded-Proto": "https",
        "Host": "localhost"})
    headers = {k.lower(): v for k, v in result["headers"]}
    assert headers["x-forwarded-for"] == "198.51.100.7, 203.0.113.9, 10.1.2.3, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    deadline = time.monotonic() + 5
    while '"client":"203.0.113.9"' not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in proxy.log().splitlines() if x.startswith("{") and "/fwd" in x]
    assert len(lines) == 1, lines  # one line per request (logging set up twice printed each one twice)
    line = lines[0]
    assert line["client"] == "203.0.113.9"  # the first untrusted address walking from the right
    assert line["status"] == 200 and line["site"] == "main"


def test_upstream_host_modes(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(
        site_toml("a", upstream.url, hosts=("localhost",), upstream_host="upstream")
        + site_toml("b", upstream.url, hosts=("127.0.0.1",), upstream_host="backend.internal")
    )
    by_upstream = get_json(f"http://localhost:{proxy.port}/h")
    assert dict((k.lower(), v) for k, v in by_upstream["headers"])["host"] == f"127.0.0.1:{upstream.port}"
    fixed = get_json(f"http://127.0.0.1:{proxy.port}/h")
    assert dict((k.lower(), v) for k, v in fixed["headers"])["host"] == "backend.internal"


def _raw_upstream(response: bytes) -> tuple[int, Any]:
    """A TCP server that answers every connection with `response` bytes."""
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    import threading

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                recv_head(conn)
                if response:
                    conn.sendall(response)
                else:
                    time.sleep(30)

    threading.Thread(target=serve, daemon=True).start()
    return port, server


def test_upstream_header_with_control_characters_is_dropped(start_proxy: Any) -> None:
    port, server = _raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: bad=a\x01b\r\nX-Good: fine\r\n"
        b"Connection: close\r\n\r\nok")
    try:
        proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
        response = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert status_of(response) == 200
        assert response.endswith(b"\r\n\r\nok")
        assert b"x-good: fine" in response.lower()
        assert b"bad=" not in response
        assert "control characters" in proxy.log()
    finally:
        server.close()


def test_unreachable_upstream_gets_502_page(start_proxy: Any) -> None:
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{free_port()}", connect_timeout=1))
    response = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 502
    assert b"text/html" in response and b"could not be reached" in response
    assert b"127.0.0.1" not in response.split(b"\r\n\r\n", 1)[1]
    assert 'kind="connect"' in proxy.metrics()


def test_stalling_upstream_gets_504_within_timeout(proxy: Proxy, upstream: Upstream) -> None:
    started = time.monotonic()
    response = raw_request(proxy.port, b"GET /stall?seconds=20 HTTP/1.1\r\nHost: localhost\r\n"
                           b"Connection: close\r\n\r\n", timeout=15)
    assert status_of(response) == 504
    assert time.monotonic() - started < 15  # the configured read timeout is 2 s; 20 s would mean no timeout
    assert b"did not answer in time" in response


def test_upstream_closing_mid_body_truncates_the_response(start_proxy: Any) -> None:
    port, server = _raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n")
    try:
        proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{port}"))
        response = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status_of(response) == 200
        assert b"hello" in response
        assert not response.endswith(b"0\r\n\r\n")  # the client must see a truncated body, not a complete one
        assert "Traceback" not in proxy.log()
    finally:
        server.close()


def test_client_disconnect_cancels_upstream_request(proxy: Proxy, upstream: Upstream) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET /stall?seconds=1.8 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        deadline = time.monotonic() + 5
        while not upstream.seen and time.monotonic() < deadline:
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not upstream.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.cancelled == ["/stall?seconds=1.8"]
    assert 'kind="client_disconnect"' in proxy.metrics()
    # the proxy still works afterwards
    assert get_json(proxy.url + "/after")["raw_path"] == "/after"


def test_websocket_echo(proxy: Proxy, upstream: Upstream) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            proxy.url + "/ws?room=1", protocols=("echo.v1",)
        ) as ws:
            assert ws.protocol == "echo.v1"
            await ws.send_str("hallo")
            assert (await ws.receive_str(timeout=5)) == "echo:hallo"
            await ws.send_bytes(b"\x01\x02\x03")
            assert (await ws.receive_bytes(timeout=5)) == b"\x03\x02\x01"
    asyncio.run(run())
    assert upstream.seen[-1].raw_path == "/ws?room=1"


@pytest.mark.parametrize(("policy", "forwarded_for"), [("none", None), ("truncated", "127.0.0.0"),
                                                         ("full", "127.0.0.1")])
def test_a_websocket_handshake_follows_the_sites_forwarding_policy(start_proxy: Any, upstream: Upstream,
                                                                   policy: str, forwarded_for: str | None) -> None:
    """The handshake reaches the site with the same forwarding headers as any request: forward_client_ip
    holds (it sent the full address whatever the site chose), spoofed client-address headers are gone."""
    proxy = start_proxy(site_toml("main", upstream.url, forward_client_ip=policy))

    async def run() -> None:
        headers = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "203.0.113.9", "True-Client-IP": "203.0.113.9"}
        async with aiohttp.ClientSession() as session, session.ws_connect(proxy.url + "/ws", headers=headers) as ws:
            await ws.send_str("x")
            assert (await ws.receive_str(timeout=5)) == "echo:x"
    asyncio.run(run())
    seen = upstream.seen[-1]
    assert seen.raw_path == "/ws"
    assert seen.header("X-Forwarded-For") == ([forwarded_for] if forwarded_for else [])
    assert seen.header("X-Real-IP") == seen.header("True-Client-IP") == []
    assert seen.header("Via") == ["1.1 consentproxy"] and seen.header("X-Forwarded-Proto") == ["http"]


def test_websocket_to_unreachable_upstream_is_refused(start_proxy: Any) -> None:
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{free_port()}", connect_timeout=1))

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(proxy.url + "/ws"):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
    assert asyncio.run(run()) == 502


def test_limits(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, max_body_bytes=1000),
                        limits={"max_header_bytes": 4096, "max_header_count": 20, "max_url_bytes": 512})
    big_header = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    assert status_of(raw_request(proxy.port, big_header)) == 431
    many = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(25)) + b"\r\n"
    assert status_of(raw_request(proxy.port, many)) == 431
    long_url = b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert status_of(raw_request(proxy.port, long_url)) == 414
    body = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
    assert status_of(raw_request(proxy.port, body)) == 413
    chunked = (b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n")
    assert status_of(raw_request(proxy.port, chunked)) == 413
    assert all(seen.raw_path != "/up" or seen.body_size <= 1000 for seen in upstream.seen)
    within = b"POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789"
    assert status_of(raw_request(proxy.port, within)) == 200


def test_slow_loris_is_disconnected(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), limits={"header_timeout": 1})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        answer = trickle_until_cut(sock, 40, 0.25)
        assert time.monotonic() - started < 9
        assert answer == b"" or status_of(answer) == 408
    # and a connection that never sends a byte is closed too
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as idle:
        assert idle.recv(10) == b""
    assert upstream.seen == []


def test_admin_endpoints_only_on_admin_listener(proxy: Proxy, upstream: Upstream) -> None:
    get_json(proxy.url + "/warm")
    with urllib.request.urlopen(proxy.admin_url + "/healthz", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"
    metrics = proxy.metrics()
    assert 'consentproxy_requests_total{site="main",status="200"}' in metrics
    assert "consentproxy_upstream_latency_seconds_bucket" in metrics
    assert "consentproxy_open_connections" in metrics

    def open_connections() -> float:
        line = next(x for x in proxy.metrics().splitlines() if x.startswith("consentproxy_open_connections "))
        return float(line.split()[1])

    idle = open_connections()  # counts the metrics request's own connection
    with socket.create_connection(("127.0.0.1", proxy.port)), socket.create_connection(("127.0.0.1", proxy.port)):
        deadline = time.monotonic() + 5
        while open_connections() < idle + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_connections() == idle + 2
    # /metrics on the proxy port is the site's, not ours
    assert get_json(proxy.url + "/metrics")["raw_path"] == "/metrics"


def test_sighup_reloads_and_refuses_a_broken_config(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, hosts=("localhost",)))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/x", timeout=5)
    assert refused.value.code == 421
    text = proxy.config_path.read_text().replace('hosts = ["localhost"]', 'hosts = ["localhost", "127.0.0.1"]')
    proxy.config_path.write_text(text)
    with socket.create_connection(("127.0.0.1", proxy.port)) as kept:  # an open connection survives the reload
        kept.sendall(b"GET /before HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert recv_response(kept).startswith(b"HTTP/1.1 200")
        proxy.process.send_signal(1)
        deadline = time.monotonic() + 10
        while "configuration reloaded" not in proxy.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get_json(f"http://127.0.0.1:{proxy.port}/y")["raw_path"] == "/y"
        kept.sendall(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert recv_response(kept).startswith(b"HTTP/1.1 200")
    proxy.config_path.write_text(text.replace("upstream =", "upstream = 5 #"))
    proxy.process.send_signal(1)
    deadline = time.monotonic() + 10
    while "reload refused" not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload refused" in proxy.log()
    assert "sites.main.upstream: expected a URL" in proxy.log()
    assert get_json(f"http://127.0.0.1:{proxy.port}/z")["raw_path"] == "/z"
    assert proxy.stop() == 0  # SIGTERM is an orderly stop


def test_workers_serve_and_sigterm_drains_in_flight_requests(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, read_timeout=10), server={"workers": 2})
    pids = set()
    for _ in range(30):
        with urllib.request.urlopen(proxy.admin_url + "/readyz", timeout=5) as response:
            pids.add(json.loads(response.read())["pid"])
    assert len(pids) >= 1
    assert get_json(proxy.url + "/w")["raw_path"] == "/w"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as sock:
        sock.sendall(b"GET /stall?seconds=1.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        deadline = time.monotonic() + 5
        while not any(s.raw_path.startswith("/stall") for s in upstream.seen) and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.process.send_signal(15)
        answer = recv_response(sock)
    assert status_of(answer) == 200 and answer.endswith(b"late")
    assert proxy.stop() == 0


@pytest.fixture(scope="module")
def ending_ws_upstream() -> Iterator[int]:
    """A WebSocket upstream that ends its connections in the ways upstreams do."""

    async def endings(request: web.Request) -> web.StreamResponse:
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        await socket_.send_str("first")
        await socket_.send_str("second")
        if request.query["end"] == "code":
            await socket_.close(code=4001, message=b"room closed")
        else:  # the connection breaks off: no closing frame
            assert request.transport is not None
            request.transport.abort()
        return socket_

    app = web.Application()
    app.router.add_get("/end", endings)
    port = free_port()
    with serve_app(app, port):
        yield port


def _ws_ending(proxy: Proxy, end: str) -> tuple[list[str], int | None]:
    async def run() -> tuple[list[str], int | None]:
        texts = []
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{proxy.url}/end?end={end}") as ws:
            async for message in ws:
                texts.append(message.data)
            return texts, ws.close_code
    return asyncio.run(run())


def test_a_websocket_upstream_that_breaks_off_is_never_a_normal_closure(start_proxy: Any,
                                                                         ending_ws_upstream: int) -> None:
    proxy = start_proxy(site_toml("main", f"http://127.0.0.1:{ending_ws_upstream}"))
    assert _ws_ending(proxy, "code") == (["first", "second"], 4001)  # the upstream's own code, passed on
    assert _ws_ending(proxy, "abort") == (["first", "second"], 1014)  # "bad gateway", not 1000
    assert 'consentproxy_upstream_errors_total{kind="websocket_broke_off",site="main"} 1.0' in proxy.metrics()
    assert "broke off without a closing handshake" in proxy.log()
