"""The header deadline on kept-alive connections: one timer per connection, re-armed as requests come."""

from __future__ import annotations

import socket
import time
from typing import Any

from conftest import Upstream, recv_response, site_toml, status_of, trickle_until_cut


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return recv_response(sock)


def test_kept_alive_requests_after_the_first_deadline_are_served(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), limits={"header_timeout": 1, "keepalive_timeout": 10})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        assert status_of(_get(sock, "/one")) == 200
        time.sleep(0.6)
        assert status_of(_get(sock, "/two")) == 200  # the connection's timer is still set for its start
        time.sleep(1.6)  # that timer fired meanwhile, with no header block due
        assert status_of(_get(sock, "/three")) == 200
        time.sleep(1.6)
        assert status_of(_get(sock, "/four")) == 200
    assert [seen.raw_path for seen in upstream.seen] == ["/one", "/two", "/three", "/four"]


def test_a_slow_header_block_on_a_kept_alive_connection_is_cut(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url), limits={"header_timeout": 1, "keepalive_timeout": 10})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        assert status_of(_get(sock, "/first")) == 200
        time.sleep(0.5)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
        answer = trickle_until_cut(sock, 30, 0.2)
        assert answer == b"" or status_of(answer) == 408
    assert [seen.raw_path for seen in upstream.seen] == ["/first"]


def test_expect_continue_and_repeated_host_still_handled(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        assert status_of(recv_response(sock)) == 200
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-A: 1\r\nHost: localhost\r\nX-B: 2\r\nHOST: other\r\n\r\n")
        assert status_of(sock.recv(4096)) == 400
