"""Issue 17: fair use of the worker under slow uploads, upstream statuses that are no HTTP status, and
client-address headers and header bytes on their way upstream. Every test runs a real proxy process
against a real upstream."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import raw_request, recv_head, site_toml, status_of


@pytest.fixture
def raw_upstream() -> Iterator[Any]:
    """`start(response)`: a TCP server answering every request with `response` bytes; yields its port."""
    servers: list[socket.socket] = []

    def start(response: bytes) -> int:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    recv_head(conn)
                    conn.sendall(response)
                    time.sleep(0.2)

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
