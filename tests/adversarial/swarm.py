"""Many slow clients in a process of their own, so that a normal client measured in the test process shares
no interpreter with them: `python -m adversarial.swarm PORT UPLOADS HEADERS` (from tests/) opens UPLOADS
connections that each send `POST` with `Content-Length: 1000` and then a byte every half second, and HEADERS
connections that each send a request head a byte every half second; prints `ready` once all are open, then,
when the proxy has answered or closed every one, a JSON line {"uploads": [status...], "headers": [...]}
(0: closed without a word; -1: still open after the deadline)."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
import time

UPLOAD = b"POST /together-upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nx"
HEADER = b"GET /together-headers HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
DEADLINE = 60.0


def main(port: int, uploads: int, headers: int) -> None:
    socks: list[tuple[str, socket.socket]] = []
    for kind, count, first in (("uploads", uploads, UPLOAD), ("headers", headers, HEADER)):
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(first)
            sock.setblocking(False)
            socks.append((kind, sock))
    print("ready", flush=True)
    received: dict[socket.socket, bytes] = {sock: b"" for _, sock in socks}
    done: dict[socket.socket, bool] = {}
    selector = selectors.DefaultSelector()
    for _, sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    end = time.monotonic() + DEADLINE
    next_byte = time.monotonic() + 0.5
    while len(done) < len(socks) and time.monotonic() < end:
        for key, _ in selector.select(timeout=max(0.0, next_byte - time.monotonic())):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            sock = ready
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                done[sock] = True
                selector.unregister(sock)
        if time.monotonic() >= next_byte:
            next_byte += 0.5
            for _, sock in socks:
                if sock not in done:
                    with contextlib.suppress(OSError):
                        sock.send(b"x")
    result: dict[str, list[int]] = {"uploads": [], "headers": []}
    for kind, sock in socks:
        data = received[sock]
        if sock not in done:
            status = -1
        elif data.startswith(b"HTTP/1.1 "):
            status = int(data.split(b" ", 2)[1])
        else:
            status = 0
        result[kind].append(status)
        sock.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
