"""Issue 17: one client's thousands of connections cannot hold the event loop (`server/fairness.py`).

The unit tests drive `Batches` on a real event loop. The wire test runs a real proxy process: one client with
128 connections, each request trickled in three pieces, has every request answered whole, with and without a
body.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from conftest import Upstream, site_toml

from consentproxy.server.fairness import Batches


def test_batches_let_other_callbacks_run_between_batches() -> None:
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batches: Batches[int] = Batches(lambda item: order.append(f"item {item}"), per_turn=4)
        for item in range(10):
            batches.add(loop, item)
        loop.call_soon(order.append, "other")  # queued after the first batch was scheduled
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert order.index("other") == 4, order  # after one batch, before the second
    assert [entry for entry in order if entry != "other"] == [f"item {i}" for i in range(10)]


def test_a_loop_closed_with_a_batch_pending_does_not_stop_the_next_loop() -> None:
    done: list[int] = []
    batches: Batches[int] = Batches(done.append, per_turn=1)

    closed = asyncio.new_event_loop()
    batches.add(closed, 1)  # scheduled there, and the loop closes before it ever runs
    closed.close()

    async def add_and_wait(item: int) -> None:
        batches.add(asyncio.get_running_loop(), item)
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(add_and_wait(2))
    assert 2 in done


def test_a_failing_item_does_not_stop_the_others() -> None:
    done: list[int] = []

    def work(item: int) -> None:
        if item == 2:
            raise RuntimeError("boom")
        done.append(item)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batches: Batches[int] = Batches(work, per_turn=2)
        for item in range(5):
            batches.add(loop, item)
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert done == [0, 1, 3, 4]


def test_run_all_does_every_queued_item_at_once() -> None:
    done: list[int] = []

    def work(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        done.append(item)

    loop = asyncio.new_event_loop()
    try:
        batches: Batches[int] = Batches(work, per_turn=1)
        for item in range(4):
            batches.add(loop, item)
        assert len(batches) == 4
        batches.run_all()
        assert done == [0, 2, 3] and len(batches) == 0
    finally:
        loop.close()


def _trickled_request(port: int, index: int, body: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if body:
        head = f"POST /busy/{index} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    else:
        head = f"GET /busy/{index} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    sock.sendall(head[:10].encode())
    return sock


def test_a_busy_clients_trickled_requests_are_all_answered_whole(start_proxy: Any, upstream: Upstream) -> None:
    """128 connections from one address, each request sent in three pieces with pauses between: every request
    reaches the upstream whole and is answered 200."""
    count = 128
    proxy = start_proxy(site_toml("main", upstream.url, hosts=("localhost",)),
                        limits={"max_connections_per_client": count + 10, "max_requests_per_client": count + 10})
    socks = [_trickled_request(proxy.port, index, body=index % 2 == 1) for index in range(count)]
    try:
        time.sleep(0.2)
        for index, sock in enumerate(socks):
            rest = (f"POST /busy/{index} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close"
                    f"\r\n\r\n" if index % 2 else
                    f"GET /busy/{index} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")[10:]
            sock.sendall(rest[:-4].encode())
        time.sleep(0.2)
        for index, sock in enumerate(socks):
            sock.sendall(b"\r\n\r\n" + (b"0123456789" if index % 2 else b""))
        statuses = []
        for sock in socks:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            statuses.append(data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else data[:40])
    finally:
        for sock in socks:
            sock.close()
    assert statuses == [b"200"] * count
    seen = {request.raw_path: request for request in upstream.seen if request.raw_path.startswith("/busy/")}
    assert sorted(seen) == sorted(f"/busy/{index}" for index in range(count))
    assert all(seen[f"/busy/{index}"].body_size == 10 for index in range(1, count, 2))
