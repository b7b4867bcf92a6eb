"""Issue 17: one address's burst of connections does not hold up another visitor's (`server/acceptor.py`).

The unit tests drive `FairAcceptor` on a real event loop, with a listening socket whose `accept` is scripted.
The wire test stops a real proxy process, queues a burst of connections from one busy address and then one
from a visitor in its listen queue, lets it go on, and asserts the order in which the site received the
requests: the visitor's among the first, where arrival order (libuv's, before) put it last.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import Upstream, site_toml

from consentproxy.server import acceptor as acceptor_module
from consentproxy.server import protocol
from consentproxy.server.acceptor import DEFERRED_PER_TURN, FairAcceptor

BUSY = "127.0.0.3"
VISITOR = "127.0.0.2"


class ScriptedSocket:
    """A listening socket whose `accept` returns the scripted connections (or raises the scripted errors);
    its file descriptor is a real one that never becomes readable, so the loop never calls the acceptor."""

    def __init__(self, script: list[str | OSError]) -> None:
        self.script = script
        self._quiet, self._other = socket.socketpair()
        self.accepted: list[str] = []

    def fileno(self) -> int:
        return self._quiet.fileno()

    def setblocking(self, flag: bool) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8080)

    def accept(self) -> tuple[str, tuple[str, int]]:
        if not self.script:
            raise BlockingIOError(errno.EAGAIN, "nothing waiting")
        entry = self.script.pop(0)
        if isinstance(entry, OSError):
            raise entry
        self.accepted.append(entry)
        return entry, (entry.split("#")[0], 40000)

    def close(self) -> None:
        self._quiet.close()
        self._other.close()


@contextmanager
def scripted(script: list[str | OSError], greedy: bool) -> Iterator[tuple[FairAcceptor, ScriptedSocket, list[str]]]:
    """An acceptor on a scripted socket whose connections are recorded when handed on, not connected."""
    loop = asyncio.new_event_loop()
    sock = ScriptedSocket(script)
    handed: list[str] = []
    acceptor = FairAcceptor(loop, sock, lambda: asyncio.Protocol(), lambda address: address == BUSY,  # type: ignore[arg-type]
                            greedy=greedy)
    acceptor._hand_on = handed.append  # type: ignore[assignment, method-assign]
    try:
        yield acceptor, sock, handed
    finally:
        acceptor.close()
        loop.close()
        sock.close()


def turns(acceptor: FairAcceptor, count: int) -> None:
    """Run `count` turns of the acceptor's loop (each runs what the previous one scheduled)."""
    loop: asyncio.AbstractEventLoop = acceptor._loop
    for _ in range(count):
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_a_worker_sharing_its_socket_hands_on_one_connection_per_turn() -> None:
    """As libuv does: workers sharing a socket share a burst of keep-alive connections evenly."""
    with scripted([f"{VISITOR}#1", f"{VISITOR}#2", f"{VISITOR}#3"], greedy=False) as (acceptor, sock, handed):
        acceptor._accept()
        assert handed == [f"{VISITOR}#1"] and sock.accepted == [f"{VISITOR}#1"]
        acceptor._accept()
        assert handed == [f"{VISITOR}#1", f"{VISITOR}#2"]


def test_a_worker_alone_on_its_socket_takes_all_that_wait() -> None:
    with scripted([f"{VISITOR}#1", f"{VISITOR}#2", f"{VISITOR}#3"], greedy=True) as (acceptor, _sock, handed):
        acceptor._accept()
        assert handed == [f"{VISITOR}#1", f"{VISITOR}#2", f"{VISITOR}#3"]


@pytest.mark.parametrize("greedy", [True, False], ids=["alone", "sharing"])
def test_a_visitor_behind_a_busy_address_is_handed_on_first(greedy: bool) -> None:
    """The busy address's connections are set aside in the same turn; the visitor's goes on at once, and
    theirs follow DEFERRED_PER_TURN per turn, in the order they came."""
    burst = [f"{BUSY}#{index}" for index in range(40)]
    with scripted([*burst, f"{VISITOR}#1"], greedy=greedy) as (acceptor, sock, handed):
        acceptor._accept()
        assert handed == [f"{VISITOR}#1"]
        assert sock.accepted == [*burst, f"{VISITOR}#1"]
        turns(acceptor, 1)
        assert handed == [f"{VISITOR}#1", *burst[:DEFERRED_PER_TURN]]
        turns(acceptor, 3)
        assert handed == [f"{VISITOR}#1", *burst]


def test_the_queue_of_busy_connections_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond DEFERRED_MAX waiting, a busy address's connections are handed on in arrival order."""
    monkeypatch.setattr(acceptor_module, "DEFERRED_MAX", 2)
    burst = [f"{BUSY}#{index}" for index in range(4)]
    with scripted(list(burst), greedy=True) as (acceptor, _sock, handed):
        acceptor._accept()
        assert handed == burst[2:]
        turns(acceptor, 1)
        assert handed == [*burst[2:], *burst[:2]]


def test_closing_hands_on_the_connections_set_aside() -> None:
    """A draining worker serves what it accepted: other workers go on accepting, the clients are owed an
    answer."""
    burst = [f"{BUSY}#{index}" for index in range(3)]
    with scripted(list(burst), greedy=True) as (acceptor, _sock, handed):
        acceptor._accept()
        assert handed == []
        acceptor.close()
        assert handed == burst


def test_a_connection_gone_before_it_was_taken_is_skipped() -> None:
    aborted = OSError(errno.ECONNABORTED, "Software caused connection abort")
    with scripted([aborted, f"{VISITOR}#1"], greedy=False) as (acceptor, _sock, handed):
        acceptor._accept()
        assert handed == [f"{VISITOR}#1"]


def test_out_of_file_descriptors_pauses_accepting_and_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(acceptor_module, "PAUSE_ON_EXHAUSTION", 0.01)
    exhausted = OSError(errno.EMFILE, "Too many open files")
    with scripted([exhausted, exhausted, f"{VISITOR}#1"], greedy=False) as (acceptor, _sock, handed):
        loop = acceptor._loop
        with caplog.at_level(logging.ERROR, logger="consentproxy.server"):
            acceptor._accept()
            assert handed == []
            assert loop.remove_reader(acceptor._sock.fileno()) is False  # paused: no reader left to remove
            loop.run_until_complete(asyncio.sleep(0.05))
            assert loop.remove_reader(acceptor._sock.fileno()) is True  # resumed
            loop.add_reader(acceptor._sock.fileno(), acceptor._accept)
            acceptor._accept()  # the second EMFILE: paused again, not logged again
            loop.run_until_complete(asyncio.sleep(0.05))
            acceptor._accept()
        assert handed == [f"{VISITOR}#1"]
        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 1 and "Too many open files" in lines[0] and "LimitNOFILE" in lines[0], lines


def test_an_address_is_busy_beyond_its_connections_in_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    counts: dict[str, int] = {"192.0.2.1": protocol.BUSY_CONNECTIONS, "192.0.2.2": protocol.BUSY_CONNECTIONS + 1,
                              "2001:db8:1:2::/64": protocol.BUSY_CONNECTIONS + 1}
    monkeypatch.setattr(protocol, "_open_by_address", counts)
    assert not protocol.is_busy("192.0.2.1")
    assert protocol.is_busy("192.0.2.2")
    assert protocol.is_busy("2001:db8:1:2::99")  # an IPv6 client counts by its /64
    assert not protocol.is_busy("192.0.2.3")


class FakeConnection:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_connection_is_taken_over_without_a_task() -> None:
    """`_step` runs the coroutine that makes the transport through every wait, futures and bare yields."""
    events: list[str] = []

    async def take_over() -> None:
        events.append("transport made")
        await asyncio.sleep(0)  # a bare yield
        await waiter
        events.append("done")

    loop = asyncio.new_event_loop()
    try:
        waiter = loop.create_future()
        conn = FakeConnection()
        acceptor_module._step(loop, take_over(), conn)  # type: ignore[arg-type]
        assert events == ["transport made"]
        loop.call_soon(waiter.set_result, None)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert events == ["transport made", "done"] and not conn.closed
    finally:
        loop.close()


def test_a_connection_reset_before_it_was_taken_is_closed_quietly(caplog: pytest.LogCaptureFixture) -> None:
    async def reset() -> None:
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    async def broken() -> None:
        raise RuntimeError("a bug")

    loop = asyncio.new_event_loop()
    try:
        quiet, loud = FakeConnection(), FakeConnection()
        with caplog.at_level(logging.ERROR, logger="consentproxy.server"):
            acceptor_module._step(loop, reset(), quiet)  # type: ignore[arg-type]
            acceptor_module._step(loop, broken(), loud)  # type: ignore[arg-type]
    finally:
        loop.close()
    assert quiet.closed and loud.closed
    assert [record.exc_info[1].args for record in caplog.records if record.exc_info] == [("a bug",)]


# -- through a real proxy process ---------------------------------------------------------------------------

def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_visitor_queued_behind_a_burst_from_a_busy_address_reaches_the_site_among_the_first(
        start_proxy: Callable[..., Any], upstream: Upstream) -> None:
    """An address holds 40 kept-alive connections (busy); the proxy is stopped while that address queues 200
    more, each with a request, and then a visitor queues one; let go on, the proxy hands the visitor's
    request to the site among the first, not after the 200. (Workers sharing a socket: the unit tests above;
    the effect on latency: the soak's slow-client run, `tests/adversarial/test_slow_clients.py`.)"""
    held_count, burst_count = 40, 200
    proxy = start_proxy(site_toml("main", upstream.url, hosts=("localhost",)),
                        limits={"max_connections_per_client": 1000, "max_requests_per_client": 1000})
    held = [_connect(proxy.port, BUSY) for _ in range(held_count)]
    burst: list[socket.socket] = []
    try:
        for index, sock in enumerate(held):  # answered: each is accepted and counted against the address
            sock.sendall(f"GET /held/{index} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        proxy.process.send_signal(signal.SIGSTOP)
        try:
            for index in range(burst_count):
                sock = _connect(proxy.port, BUSY)
                sock.sendall(f"GET /burst/{index} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                burst.append(sock)
            visitor = _connect(proxy.port, VISITOR)
            burst.append(visitor)
            visitor.sendall(b"GET /visitor HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        finally:
            proxy.process.send_signal(signal.SIGCONT)
        answers = [_answer(sock) for sock in burst]
    finally:
        for sock in held + burst:
            sock.close()
    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"200"] * (burst_count + 1)
    order = [seen.raw_path for seen in upstream.seen if seen.raw_path.startswith(("/burst/", "/visitor"))]
    assert sorted(order) == sorted([*(f"/burst/{index}" for index in range(burst_count)), "/visitor"])
    # in arrival order it would be the last; set aside, the burst goes on DEFERRED_PER_TURN per turn
    assert order.index("/visitor") < 3 * DEFERRED_PER_TURN, order.index("/visitor")
