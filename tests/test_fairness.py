"""Issue 17: one client's thousands of connections cannot hold the event loop (`server/fairness.py`).

The unit tests drive the two tools on a real event loop with stand-in connections and check the bounds they
promise (work per turn, readers at once, everyone's turn comes). The wire test runs a real proxy process:
a client over the busy threshold, whose connections are read in turns, still has every request answered
whole, trickled or not, with and without a body.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, ClassVar

from conftest import Upstream, site_toml

from consentproxy.server.fairness import Batches, ReadTurns
from consentproxy.server.protocol import BUSY_CLIENT_CONNECTIONS


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


class _Reader:
    """A stand-in connection: reading or paused, busy or not, counting its turns."""

    readable: ClassVar[set[_Reader]] = set()
    most_at_once = 0

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.busy = True
        self.turns = 0
        _Reader.readable.add(self)

    def turn_ended(self) -> bool:
        if not self.busy:
            return False
        _Reader.readable.discard(self)
        return True

    def turn_begins(self) -> None:
        self.turns += 1
        _Reader.readable.add(self)
        _Reader.most_at_once = max(_Reader.most_at_once, len(_Reader.readable))


def test_read_turns_keep_a_few_readers_at_once_and_give_everyone_a_turn() -> None:
    readers: list[_Reader] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        turns = ReadTurns(per_turn=8, interval=0.001)
        readers.extend(_Reader(loop) for _ in range(100))
        for reader in readers:
            turns.join(reader)
            turns.join(reader)  # joining twice changes nothing
        assert _Reader.readable == set() and len(turns) == 100
        while min(reader.turns for reader in readers) < 2:
            await asyncio.sleep(0.001)
        assert _Reader.most_at_once <= 8  # while the client is busy
        for reader in readers:  # the client closed most of its connections: its readers leave at their turn
            reader.busy = False
        while len(turns):
            await asyncio.sleep(0.001)

    asyncio.run(main())
    assert _Reader.readable == set(readers)  # every reader left reading


def _trickled_request(port: int, index: int, body: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if body:
        head = f"POST /busy/{index} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    else:
        head = f"GET /busy/{index} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    sock.sendall(head[:10].encode())
    return sock


def test_a_busy_clients_trickled_requests_are_all_answered_whole(start_proxy: Any, upstream: Upstream) -> None:
    """Twice the busy threshold from one address, each request sent in three pieces with pauses between
    (so their reads come in turns): every request reaches the upstream whole and is answered 200."""
    count = BUSY_CLIENT_CONNECTIONS * 2
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
