"""A recording upstream: a raw TCP server (asyncio, in a thread of the test process) that records every byte
each connection sent and every request it could frame, and answers with canned bytes, so the tests see
exactly what reached the site and can make the site misbehave (statuses out of range, broken framing,
cut bodies) in ways no HTTP library would.

The response to a request is chosen by its target: `/canned/NAME...` answers `Recorder.canned[NAME]` (raw
bytes, sent as they are; the connection is closed after it when the entry says so); anything else gets a
200 `text/plain` naming the method and target, with a Content-Length, and the connection is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Received:
    """One request as the site received it: the request line, the header lines (raw bytes), the body."""

    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def path(self) -> str:
        return self.target.decode("latin-1")


@dataclass
class Canned:
    response: bytes
    close: bool = True
    #: send the response in these pieces with a pause between (to cut a body after the head went out)
    pieces: tuple[int, ...] = ()


@dataclass
class Recorder:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    #: every connection's bytes, as received, in the order the connections came
    raw: list[bytearray] = field(default_factory=list)
    canned: dict[str, Canned] = field(default_factory=dict)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all_bytes(self) -> bytes:
        with self.lock:
            return b"\n".join(bytes(chunk) for chunk in self.raw)

    def seen(self, token: str) -> list[Received]:
        """The requests whose target holds `token` (each variant's paths name it)."""
        with self.lock:
            return [request for request in self.requests if token in request.path]

    def wait_for(self, token: str, timeout: float = 10) -> list[Received]:
        """The requests naming `token`, once at least one arrived (a barrier, not a timing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.seen(token)
            if found:
                return found
            time.sleep(0.005)
        raise AssertionError(f"the upstream never received a request naming {token!r}")

    # -- the server ------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = bytearray()
        with self.lock:
            self.raw.append(raw)
            self.connections += 1
            number = self.connections
        buffer = b""
        try:
            while True:
                request, buffer = await _read_request(reader, buffer, raw, self.lock)
                if request is None:
                    return
                method, target, version, headers, body = request
                received = Received(method, target, version, headers, body, number)
                with self.lock:
                    self.requests.append(received)
                answer, close, pieces = self._answer(received)
                if pieces:
                    start = 0
                    for size in pieces:
                        writer.write(answer[start:start + size])
                        await writer.drain()
                        start += size
                        await asyncio.sleep(0.05)
                    writer.write(answer[start:])
                else:
                    writer.write(answer)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, request: Received) -> tuple[bytes, bool, tuple[int, ...]]:
        path = request.path
        if path.startswith("/canned/"):
            name = path[len("/canned/"):].split("/", 1)[0].split("?", 1)[0]
            canned = self.canned[name]
            return canned.response, canned.close, canned.pieces
        body = b"ok " + request.method + b" " + request.target + b" " + str(len(request.body)).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
        return head + (b"" if request.method == b"HEAD" else body), False, ()


async def _read_request(reader: asyncio.StreamReader, buffer: bytes, raw: bytearray, lock: threading.Lock,
                        ) -> tuple[tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], bytes] | None, bytes]:
    """One request (request line, headers, body framed by Content-Length or chunked), or None at the end."""

    async def more() -> bool:
        nonlocal buffer
        chunk = await reader.read(65536)
        if not chunk:
            return False
        with lock:
            raw.extend(chunk)
        buffer += chunk
        return True

    while b"\r\n\r\n" not in buffer:
        if not await more():
            return None, buffer
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    line, *lines = head.split(b"\r\n")
    method, target, version = line.split(b" ", 2)
    headers = [(name, value.strip()) for name, _, value in (item.partition(b":") for item in lines)]
    lowered = {name.lower(): value for name, value in headers}
    body = b""
    if lowered.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            while b"\r\n" not in buffer:
                if not await more():
                    raise ValueError("cut in a chunk size")
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            while len(buffer) < size + 2:
                if not await more():
                    raise ValueError("cut in a chunk")
            if size == 0:
                # trailers: none expected; the final CRLF
                buffer = buffer[2:]
                break
            body += buffer[:size]
            buffer = buffer[size + 2:]
    elif b"content-length" in lowered:
        length = int(lowered[b"content-length"])
        while len(buffer) < length:
            if not await more():
                raise ValueError("cut in a body")
        body, buffer = buffer[:length], buffer[length:]
    return (method, target, version, headers, body), buffer


@contextlib.contextmanager
def recording_upstream(setup: Callable[[Recorder], None] | None = None) -> Iterator[Recorder]:
    """A `Recorder` listening on a free port of 127.0.0.1 until the block ends."""
    recorder = Recorder()
    if setup is not None:
        setup(recorder)
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        server = await asyncio.start_server(recorder._serve, "127.0.0.1", 0)
        recorder.port = int(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        holder["loop"], holder["stop"] = loop, stop
        ready.set()
        async with server:
            await stop

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield recorder
    finally:
        loop = holder["loop"]
        stop = holder["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Future)
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
