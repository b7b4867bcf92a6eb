"""Many slow clients in a process of their own, so that a normal client measured in the test process shares
no interpreter with them: `python -m adversarial.swarm PORT UPLOADS HEADERS SECONDS` (from tests/) keeps
UPLOADS connections that each send `POST` with `Content-Length: 1000` and then a byte every half second, and
HEADERS connections that each send a request head a byte every half second, open for SECONDS: a connection
the proxy answers or closes is opened anew at the next half second, as a persistent attacker does.

Prints `ready` once all are open, `over` when SECONDS have passed (no more are opened), then, when the proxy
has answered or closed every one, a JSON line {"uploads": {status: count}, "headers": {...}, "rounds": n}
(status 0: closed without a word; -1: still open after the deadline)."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
import time
from collections import Counter

UPLOAD = b"POST /together-upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nx"
HEADER = b"GET /together-headers HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
FIRST = {"uploads": UPLOAD, "headers": HEADER}
PAUSE = 0.5
#: how long after SECONDS the last connections may take to be answered
DEADLINE = 60.0


class Swarm:
    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.kinds: dict[socket.socket, str] = {}
        self.received: dict[socket.socket, bytes] = {}
        self.result: dict[str, Counter[int]] = {"uploads": Counter(), "headers": Counter()}
        self.rounds = 0

    def open(self, kind: str) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(FIRST[kind])
        sock.setblocking(False)
        self.kinds[sock] = kind
        self.received[sock] = b""
        self.selector.register(sock, selectors.EVENT_READ)

    def close(self, sock: socket.socket, status: int) -> str:
        kind = self.kinds.pop(sock)
        data = self.received.pop(sock)
        if status == 0 and data.startswith(b"HTTP/1.1 "):
            status = int(data.split(b" ", 2)[1])
        self.result[kind][status] += 1
        with contextlib.suppress(KeyError):
            self.selector.unregister(sock)
        sock.close()
        return kind

    def run(self, uploads: int, headers: int, seconds: float) -> None:
        for kind, count in (("uploads", uploads), ("headers", headers)):
            for _ in range(count):
                self.open(kind)
        print("ready", flush=True)
        over = time.monotonic() + seconds
        next_byte = time.monotonic() + PAUSE
        reopen: list[str] = []
        announced = False
        while self.kinds or (reopen and not announced):
            now = time.monotonic()
            if now >= over and not announced:
                announced, reopen = True, []
                end = now + DEADLINE
                print("over", flush=True)
            if announced and now >= end:
                break
            for key, _ in self.selector.select(timeout=max(0.0, next_byte - now)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    self.received[sock] += chunk
                else:
                    kind = self.close(sock, 0)
                    if not announced:
                        reopen.append(kind)
            if time.monotonic() >= next_byte:
                next_byte += PAUSE
                self.rounds += 1
                for sock in list(self.kinds):
                    with contextlib.suppress(OSError):
                        sock.send(b"x")
                for kind in reopen:
                    self.open(kind)
                reopen = []
        for sock in list(self.kinds):
            self.close(sock, -1)
        print(json.dumps({**{kind: dict(counts) for kind, counts in self.result.items()}, "rounds": self.rounds}),
              flush=True)


if __name__ == "__main__":
    Swarm(int(sys.argv[1])).run(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
