"""Running `consentproxy demo` from tests and scripts: start it, stop it, ask it over plain HTTP.

Shared by tests/test_demo.py, tests/test_browser_banner.py and docs/take_screenshots.py.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def cookies(self) -> dict[str, SimpleCookie]:
        jar: dict[str, SimpleCookie] = {}
        for header in self.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            (name,) = cookie.keys()
            jar[name] = cookie
        return jar


def fetch(port: int, path: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def free_port_pair() -> int:
    """A port P on 127.0.0.1 with P + 1 free too (the demo's admin port)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports")


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def config(self) -> dict[str, Any]:
        return tomllib.loads((self.data_dir / "consentproxy.toml").read_text("utf-8"))

    def upstream_port(self) -> int:
        return int(self.config()["sites"]["demo"]["upstream"].rsplit(":", 1)[1])

    def tracker_port(self) -> int:
        # Asked of the site directly, so it does not depend on what the proxy does to the page.
        page = fetch(self.upstream_port(), "/").text
        match = re.search(r'src="http://www\.googletagmanager\.com\.localhost:(\d+)/gtag/js\?id=G-DEMO12345"', page)
        assert match, page
        return int(match.group(1))


def start_demo(base: Path) -> Demo:
    port = free_port_pair()
    data_dir = base / "data"  # does not exist yet: the demo creates it
    log = base / "demo-output.txt"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "consentproxy", "demo", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    demo = Demo(process, port, data_dir, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"the demo exited with {process.returncode}:\n{demo.output()}")
        try:
            fetch(port, "/")
            return demo
        except OSError:
            if time.monotonic() > deadline:
                stop_demo(demo)
                pytest.fail(f"the demo did not answer on port {port}:\n{demo.output()}")
            time.sleep(0.1)


def stop_demo(demo: Demo) -> int:
    if demo.process.poll() is None:
        demo.process.send_signal(signal.SIGTERM)
    try:
        return demo.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        demo.process.kill()
        demo.process.wait()
        raise


def records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    assert text.endswith("\n"), "every record is a whole line"
    return [json.loads(line) for line in text.splitlines()]
