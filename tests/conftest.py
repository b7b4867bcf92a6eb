"""Shared fixtures: a real upstream HTTP server and a real proxy process.

The upstream runs in a thread of the test process (so tests can see what it
received); the proxy always runs as its own process through the CLI, exactly
as an operator starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, settings

from consentproxy.config.secrets import parse_consent_keys
from consentproxy.consent.state import ConsentCodec, ConsentState, new_principal

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default "ci"). "ci", what `make test` runs: the same
# examples on every run (derandomised, no example database, no deadline or too-slow check that a
# loaded machine could trip); a failure prints a @reproduce_failure blob. "fuzz", what `make fuzz-properties`
# runs: fresh random examples (a seed per run, printed), FUZZ_SCALE times as many (each test asks for its
# count through hypothesis_support.examples), failures kept in .hypothesis/, and, for the tests that do not
# turn it off, a 2 s deadline per example: far above what any example takes, so a pathological input fails it
# and a stall of a loaded machine does not (Hypothesis' 200 ms did, twice, under a load of 11 on two cores).
FUZZ_SCALE = 20
settings.register_profile("ci", settings.get_profile("default"), max_examples=100, derandomize=True,
                          database=None, print_blob=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", settings.get_profile("default"), max_examples=100 * FUZZ_SCALE, print_blob=True,
                          deadline=timedelta(seconds=2))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: ports below the kernel's ephemeral range: the ports client sockets take for themselves (the adversarial
#: suite opens thousands) come from that range, so a port picked there could be taken before a server binds it
_PORTS = random.Random()
_EPHEMERAL_START = _ephemeral_start()


def free_port() -> int:
    """A port on 127.0.0.1 no one listens on now, chosen at random below the ephemeral range."""
    for _ in range(200):
        port = _PORTS.randrange(10000, max(10001, _EPHEMERAL_START))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body_size: int = 0

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Upstream:
    port: int
    seen: list[Seen] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _upstream_app(state: Upstream) -> web.Application:
    async def record(request: web.Request) -> Seen:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        seen = Seen(request.method, request.raw_path, headers)
        state.seen.append(seen)
        return seen

    async def echo(request: web.Request) -> web.StreamResponse:
        seen = await record(request)
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            seen.body_size += len(chunk)
            digest.update(chunk)
        return web.json_response({
            "method": seen.method, "raw_path": seen.raw_path, "headers": seen.headers,
            "body_size": seen.body_size, "sha256": digest.hexdigest(),
        }, headers={
            "Connection": "keep-alive, X-Hop", "X-Hop": "secret", "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic", "Trailer": "X-T", "Upgrade": "h2c", "X-End": "kept",
            "Set-Cookie": "a=1; Path=/",
        })

    async def download(request: web.Request) -> web.StreamResponse:
        await record(request)
        size = int(request.query.get("size", "0"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if "length" in request.query:
            response.content_length = size
        await response.prepare(request)
        block = b"x" * 65536
        remaining = size
        while remaining > 0:
            piece = block[: min(remaining, len(block))]
            await response.write(piece)
            remaining -= len(piece)
        await response.write_eof()
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        await record(request)
        try:
            await asyncio.sleep(float(request.query.get("seconds", "30")))
        except asyncio.CancelledError:
            state.cancelled.append(request.raw_path)
            raise
        return web.Response(text="late")

    async def status(request: web.Request) -> web.StreamResponse:
        await record(request)
        code = int(request.match_info["code"])
        headers = {"ETag": '"v1"'}
        if code == 304:
            headers["Content-Length"] = "123"
        return web.Response(status=code, headers=headers)

    async def ws(request: web.Request) -> web.StreamResponse:
        await record(request)
        socket_ = web.WebSocketResponse(protocols=("echo.v1",))
        await socket_.prepare(request)
        async for message in socket_:
            if message.type == WSMsgType.TEXT:
                await socket_.send_str("echo:" + message.data)
            elif message.type == WSMsgType.BINARY:
                await socket_.send_bytes(message.data[::-1])
        return socket_

    app = web.Application(client_max_size=1024**4)
    app.router.add_route("*", "/download", download)
    app.router.add_route("*", "/stall", stall)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("GET", "/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@contextlib.contextmanager
def serve_app(app: web.Application, port: int) -> Iterator[asyncio.AbstractEventLoop]:
    """Run an aiohttp application on 127.0.0.1:port in a thread of its own, with its own event loop."""
    ready = threading.Event()
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Future[None] | None = None

    async def main() -> None:
        nonlocal stop, loop
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        ready.set()
        await stop
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    assert loop is not None and stop is not None
    yield loop
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(10)


@contextlib.contextmanager
def serve_page(html: str, headers: dict[str, str] | None = None,
               files: dict[str, tuple[str, str]] | None = None) -> Iterator[int]:
    """One HTML page at "/" on a free port (a site for browser tests), and `files` (path → (text, content
    type)) beside it; yields the port."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html", headers=headers)

    app = web.Application()
    app.router.add_get("/", page)
    for path, (text, content_type) in (files or {}).items():
        app.router.add_get(path, _file(text, content_type))
    port = free_port()
    with serve_app(app, port):
        yield port


def _file(text: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type)

    return handler


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    state = Upstream(port=free_port())
    with serve_app(_upstream_app(state), state.port) as loop:
        state.loop = loop
        yield state


@pytest.fixture(autouse=True)
def _clear_upstream_log(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        state: Upstream = request.getfixturevalue("upstream")
        state.seen.clear()
        state.cancelled.clear()


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def site_toml(name: str, upstream: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
              necessary: tuple[str, ...] = (), **extra: Any) -> str:
    """A [sites.NAME] table; `necessary` declares cookie names as necessary."""
    lines = [f"[sites.{name}]", f"hosts = {list(hosts)!r}".replace("'", '"'), f'upstream = "{upstream}"']
    for key, value in extra.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for cookie in necessary:
        lines += [f"[[sites.{name}.cookies]]", f'name = "{cookie}"', 'category = "necessary"']
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


#: how long a process the tests start may take to answer: generous, since it measures the machine's load, not
#: the product (a proxy took over 20 s to start at load 23 on two cores, and a CI run failed on it)
READY_TIMEOUT = 120.0


def wait_ready(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def launch_proxy(base: Path, index: int, sites: str, server: dict[str, Any] | None = None,
                 limits: dict[str, Any] | None = None, wait: bool = True) -> Proxy:
    """Start a proxy process with its configuration, data and log under `base`. A port picked free can be
    taken by another process before the proxy binds it (test runs share the machine): then again, on others."""
    for attempt in range(5):
        try:
            return _launch_proxy(base, index, sites, server, limits, wait)
        except PortTaken:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The proxy could not listen: a port picked free was taken meanwhile."""


def _launch_proxy(base: Path, index: int, sites: str, server: dict[str, Any] | None,
                  limits: dict[str, Any] | None, wait: bool) -> Proxy:
    port, admin_port = free_port(), free_port()
    config_path = base / f"proxy{index}.toml"
    server_lines = [
        "[server]", f'listen = ["127.0.0.1:{port}"]', f'admin_listen = "127.0.0.1:{admin_port}"',
        f'data_dir = "{base / f"data{index}"}"',
    ]
    for key, value in (server or {}).items():
        server_lines.append(f"{key} = {_toml_value(value)}")
    if limits:
        server_lines.append("[server.limits]")
        server_lines += [f"{key} = {_toml_value(value)}" for key, value in limits.items()]
    config_path.write_text("\n".join(server_lines) + "\n\n" + sites)
    log_path = base / f"proxy{index}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "consentproxy", "serve", "-c", str(config_path)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )
    proxy = Proxy(process, port, admin_port, config_path, log_path)
    if wait:
        try:
            wait_ready(proxy.admin_url + "/readyz", process)
        except (RuntimeError, TimeoutError) as exc:
            proxy.stop(signal.SIGKILL)
            log = proxy.log()
            if "Address already in use" in log:
                raise PortTaken(log) from exc
            raise RuntimeError(f"proxy did not start: {exc}\n{log}") from exc
    return proxy


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Start a proxy process: `start_proxy(sites_toml, server={...}, limits={...})`."""
    started: list[Proxy] = []

    def start(sites: str, server: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
              wait: bool = True) -> Proxy:
        proxy = launch_proxy(tmp_path, len(started), sites, server, limits, wait)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(signal.SIGKILL if proxy.process.poll() is None else signal.SIGTERM, timeout=10)


def raw_request(port: int, data: bytes, timeout: float = 10, read_all: bool = True) -> bytes:
    """Send raw bytes, return everything the server sends until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_all:
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def kill_quietly(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)


def trickle_until_cut(sock: socket.socket, times: int, pause: float) -> bytes:
    """Send a byte every `pause` seconds, `times` times or until the server cuts us off; what it answered."""
    try:
        for _ in range(times):
            sock.sendall(b"X")
            time.sleep(pause)
    except OSError:
        pass
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def recv_head(sock: socket.socket) -> bytes:
    """Read up to the end of an HTTP header block, or until the peer stops sending: all that was read."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_response(sock: socket.socket) -> bytes:
    """Read exactly one HTTP/1.1 response (Content-Length or chunked) from a kept-alive socket."""
    data = recv_head(sock)
    if b"\r\n\r\n" not in data:
        return data
    head, _, body = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return head + b"\r\n\r\n" + body


def mint(proxy: Proxy, granted: set[str], method: str = "save_selection", revision: int = 1,
         expires_in: int = 3600) -> str:
    """A consent cookie signed with the proxy's own key, as the consent API will issue it."""
    data_dir = proxy.config_path.parent / f"data{proxy.config_path.stem.removeprefix('proxy')}"
    keys = parse_consent_keys((data_dir / "secrets" / "consent-keys").read_text(), "test")
    now = int(time.time())
    return ConsentCodec(keys).encode(ConsentState(new_principal(), frozenset(granted), revision, now,
                                                  now + expires_in, method))


# --- module-wide fixtures of the browser and demo tests -------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; Playwright downloads no browser here


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per test module (Playwright's sync API); each test opens its own context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`consentproxy demo` running for the whole module."""
    from demo_support import start_demo, stop_demo

    running = start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield running
    finally:
        stop_demo(running)
