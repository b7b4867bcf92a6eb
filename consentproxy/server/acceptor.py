"""Accepting connections fairly between client addresses.

libuv (under uvloop) accepts one connection per turn of the event loop
(libuv/libuv#3696), in arrival order. When one address opens a thousand
connections at once, a visitor's connection that arrives just after them
waits until all of them were accepted, and every turn of the loop on the way
also serves what the earlier ones sent: measured, 50-120 ms for a page that
takes 1 ms otherwise.

`FairAcceptor` takes the listening socket over from uvloop's server and
accepts itself. A connection from an address that already holds many in this
worker (`busy`) waits in a queue of its own and is handed to the event loop
a few per turn; any other is handed on at once. So a visitor waits for the
accept calls of the connections ahead of it, not for their work. The queue
is bounded; when it is full, connections are handed on in arrival order, as
before.

A worker alone on its socket accepts all it can in one turn (fewer turns:
cheaper, when every request comes on a new connection). Workers sharing a
socket take one connection each per turn that they hand on, as libuv does,
so that they share the connections evenly (one greedy worker would take a
whole burst of keep-alive connections and leave the other idle).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from consentproxy.observability import metrics
from consentproxy.server.fairness import Batches

logger = logging.getLogger("consentproxy.server")

#: how many connections one turn of the event loop accepts at most
ACCEPTS_PER_TURN = 256
#: how many connections of busy addresses one turn hands on
DEFERRED_PER_TURN = 16
#: connections of busy addresses accepted and waiting, at most; beyond, they are handed on at once
DEFERRED_MAX = 4096
#: how long accepting pauses when the process is out of file descriptors or memory for one more
PAUSE_ON_EXHAUSTION = 0.1
#: the log line for that comes at most this often
_EXHAUSTION_LOG_INTERVAL = 10.0
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class FairAcceptor:
    """Accepts on `sock` for `protocol_factory`, which gets each connection as uvloop's server would give it.

    `busy(address)`: whether a connection from this client address waits its turn (None: none waits).
    `greedy`: accept all that are waiting in one turn (the worker is alone on the socket). Duck-types the
    part of an asyncio Server that uvicorn uses (`close`, `wait_closed`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol], busy: Callable[[str], bool] | None,
                 greedy: bool) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._busy = busy
        self._greedy = greedy
        self._deferred: Batches[socket.socket] = Batches(lambda conn: self._hand_on(conn), DEFERRED_PER_TURN)
        self._closed = False
        self._logged_exhaustion = -_EXHAUSTION_LOG_INTERVAL
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        busy = self._busy
        deferred = self._deferred
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(exc)
                    return
                continue  # the client went away before it was taken (ECONNABORTED, a protocol error)
            if busy is not None and len(deferred) < DEFERRED_MAX and busy(address[0]):
                deferred.add(self._loop, conn)
                metrics.DEFERRED_CONNECTIONS.inc()
                continue
            self._hand_on(conn)
            if not self._greedy:
                return

    def _pause(self, exc: OSError) -> None:
        """Out of file descriptors (or memory): stop accepting for a moment rather than spin on the error."""
        now = time.monotonic()
        if now - self._logged_exhaustion >= _EXHAUSTION_LOG_INTERVAL:
            self._logged_exhaustion = now
            logger.error("cannot accept connections on %s: %s; pausing %.1f s at a time (raise the open files "
                         "limit, LimitNOFILE in systemd, if this is not an attack)",
                         self._sock.getsockname(), exc.strerror, PAUSE_ON_EXHAUSTION)
        self._loop.remove_reader(self._sock.fileno())
        self._loop.call_later(PAUSE_ON_EXHAUSTION, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _hand_on(self, conn: socket.socket) -> None:
        _step(self._loop, self._loop.connect_accepted_socket(self._factory, conn), conn)

    def close(self) -> None:
        """Accept no more. Connections already accepted are served (the worker drains them), not dropped:
        other workers may go on accepting on the same socket, and those clients are owed an answer."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._deferred.run_all()

    async def wait_closed(self) -> None:
        """Nothing to wait for: `close` stops at once (uvicorn waits for the connections itself)."""


def _step(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, object], conn: socket.socket) -> None:
    """Run `connect_accepted_socket` to its end without a Task, stepping it whenever what it waits for is done.

    It creates the transport at once and then only waits for `connection_made`; a Task per connection
    cost 7 µs more (3 % of a request that comes on a new connection, measured with two workers).
    """
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    except Exception as exc:
        conn.close()  # a no-op if the transport took the socket (it detaches it when it closes)
        if not isinstance(exc, OSError):  # OSError: the client reset the connection before it was taken
            logger.error("could not take an accepted connection", exc_info=exc)
        return
    if isinstance(waited, asyncio.Future):
        waited.add_done_callback(lambda _: _step(loop, coro, conn))
    else:  # a bare yield: go on at the next turn
        loop.call_soon(_step, loop, coro, conn)
