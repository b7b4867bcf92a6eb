"""Large bodies stream through the proxy without being held in memory."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import psutil
from conftest import Upstream, site_toml

SIZE = 200 * 1024 * 1024
RSS_LIMIT = 150 * 1024 * 1024


class PeakRss:
    """Samples a process's resident memory in a thread while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _send_upload(port: int, chunked: bool) -> tuple[bytes, str]:
    import socket

    block = bytes(range(256)) * 256  # 64 KiB
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % SIZE
        sock.sendall(b"PUT /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + framing + b"\r\n\r\n")
        for _ in range(SIZE // len(block)):
            digest.update(block)
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response, digest.hexdigest()


def test_200mb_upload_streams(start_proxy: Any, upstream: Upstream) -> None:
    proxy = start_proxy(site_toml("main", upstream.url, max_body_bytes="1GB"))
    for chunked in (False, True):
        with PeakRss(proxy.process.pid) as rss:
            response, digest = _send_upload(proxy.port, chunked)
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert f'"body_size": {SIZE}'.encode() in response
        assert digest.encode() in response
        assert rss.peak < RSS_LIMIT, f"proxy RSS peaked at {rss.peak / 2**20:.0f} MiB"


def test_200mb_download_streams(start_proxy: Any, upstream: Upstream) -> None:
    import socket

    proxy = start_proxy(site_toml("main", upstream.url))
    for query in (f"size={SIZE}", f"size={SIZE}&length=1"):
        received = 0
        with PeakRss(proxy.process.pid) as rss, socket.create_connection(("127.0.0.1", proxy.port), 60) as sock:
            sock.sendall(f"GET /download?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                         .encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            head, _, rest = head.partition(b"\r\n\r\n")
            received = len(rest)
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
                time.sleep(0.0005)  # a slower reader than the upstream: back-pressure must hold
        assert head.startswith(b"HTTP/1.1 200")
        if "length" in query:
            assert f"content-length: {SIZE}".encode() in head.lower()
            assert received == SIZE
        else:
            assert received > SIZE  # chunk framing on top of the payload
        assert rss.peak < RSS_LIMIT, f"proxy RSS peaked at {rss.peak / 2**20:.0f} MiB"
