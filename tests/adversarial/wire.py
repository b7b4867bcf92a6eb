"""A raw-socket HTTP/1.1 client for the adversarial suite: sends bytes exactly as given, and reads every
response the proxy sends, framed as a client would frame them, until the proxy closes the connection."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: whether the body arrived whole as its framing declared (False: the connection was cut inside it)
    complete: bool

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@dataclass
class Reply:
    responses: list[Response] = field(default_factory=list)
    #: the proxy closed the connection (rather than the client giving up waiting)
    closed: bool = False
    raw: bytes = b""
    #: bytes after the last response that are no response (garbage, or a head cut short)
    rest: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]


def parse_responses(data: bytes, eof: bool, head_requests: int = 0) -> tuple[list[Response], bytes]:
    """The responses in `data`, each framed by Content-Length, chunked coding or (last) the close; the bytes
    left over. `eof`: the connection ended after `data`."""
    responses: list[Response] = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0 or not data.startswith(b"HTTP/"):
            break
        head, rest = data[:end], data[end + 4:]
        line, *lines = head.split(b"\r\n")
        parts = line.split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            break
        headers = [(name.strip(), value.strip()) for name, _, value in (item.partition(b":") for item in lines)]
        lowered = {name.lower(): value for name, value in headers}
        if status < 200 or status in (204, 304) or len(responses) < head_requests:
            responses.append(Response(status, headers, b"", True))
            data = rest
            continue
        if b"chunked" in lowered.get(b"transfer-encoding", b"").lower():
            body, complete, used = _dechunk(rest)
            if not complete and not eof:
                break
            responses.append(Response(status, headers, body, complete))
            data = rest[used:]
        elif b"content-length" in lowered:
            length = int(lowered[b"content-length"])
            if len(rest) < length and not eof:
                break
            responses.append(Response(status, headers, rest[:length], len(rest) >= length))
            data = rest[length:]
        else:  # delimited by the close: complete only once the connection ended
            if not eof:
                break
            responses.append(Response(status, headers, rest, True))
            data = b""
    return responses, data


def _dechunk(data: bytes) -> tuple[bytes, bool, int]:
    body = b""
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return body, False, len(data)
        try:
            size = int(data[position:end].split(b";", 1)[0], 16)
        except ValueError:
            return body, False, len(data)
        start = end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", end)
            if trailer_end < 0:
                return body, False, len(data)
            return body, True, trailer_end + 4
        if len(data) < start + size + 2:
            return body + data[start:start + size], False, len(data)
        body += data[start:start + size]
        position = start + size + 2


def connect(port: int, timeout: float = 20, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_close(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes; (data, True), or (data, False) if it went silent for the
    socket's timeout (a test then fails on what it expected: never a timing to assert)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        except TimeoutError:
            return data, False
        if not chunk:
            return data, True
        data += chunk


def exchange(port: int, data: bytes | list[bytes], timeout: float = 20, head_requests: int = 0) -> Reply:
    """Send `data` (a list: each piece in its own write), then read until the proxy closes."""
    with connect(port, timeout) as sock:
        try:
            for piece in [data] if isinstance(data, bytes) else data:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw, closed = read_until_close(sock)
    responses, rest = parse_responses(raw, eof=True, head_requests=head_requests)
    return Reply(responses, closed, raw, rest)


def read_responses(sock: socket.socket, count: int) -> Reply:
    """Read until `count` whole responses arrived or the proxy closed (a kept-alive connection)."""
    raw = b""
    while True:
        responses, rest = parse_responses(raw, eof=False)
        if len(responses) >= count:
            return Reply(responses, False, raw, rest)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            responses, rest = parse_responses(raw, eof=True)
            return Reply(responses, True, raw, rest)
        raw += chunk


def get(port: int, path: str, host: str = "localhost", headers: bytes = b"") -> Reply:
    """One normal GET with Connection: close."""
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode() + headers
                    + b"Connection: close\r\n\r\n")
