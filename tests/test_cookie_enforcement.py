"""Cookie enforcement through a real proxy process, against a real upstream."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Proxy, mint, raw_request, recv_response, site_toml, status_of

from consentproxy.config.secrets import parse_consent_keys
from consentproxy.consent.state import ConsentCodec, ConsentState

SET_COOKIES = [
    b"sid=s3ss10n; Path=/; HttpOnly; SameSite=Lax",  # declared necessary
    b"_ga=GA1.1.111.222; Max-Age=34190000; Path=/",  # statistics (catalogue)
    b"_gid=GA1.1.333.444; Max-Age=86400; Path=/",
    b"_ga_ABC123=GS1.1.5.6; Max-Age=34190000; Path=/",
    b"_fbp=fb.1.2.3; Max-Age=7776000; Path=/",  # marketing
    b"_gcl_au=1.1.9; Max-Age=7776000; Path=/; HttpOnly",  # marketing, HttpOnly
    b"kade_mystery=42; Path=/shop",  # unknown
    b"bad=a\x01b; Path=/",  # control byte
    b"=noname; Path=/",  # no name
    b"justtext",  # no "="
    b"huge=" + b"x" * 8192,  # over the browser limit
]


class CookieUpstream:
    """A raw HTTP server: answers every request with the Set-Cookies above and echoes the Cookie header."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.cookies_seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                cookies = [line.split(b":", 1)[1].strip().decode("latin-1") for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"cookie:")]
                self.cookies_seen.append("; ".join(cookies))
                body = json.dumps({"cookie": cookies}).encode()
                extra = b"Cache-Control: public, max-age=300\r\n" if b" /cacheable" in head.split(b"\r\n")[0] else b""
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
                                   + b"".join(b"Set-Cookie: " + c + b"\r\n" for c in SET_COOKIES)
                                   + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def cookie_upstream() -> Iterator[CookieUpstream]:
    upstream = CookieUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def proxy(start_proxy: Any, cookie_upstream: CookieUpstream) -> Proxy:
    result: Proxy = start_proxy(site_toml("kade", f"http://127.0.0.1:{cookie_upstream.port}",
                                          hosts=("localhost", "www.kade-it.nl"), necessary=("sid",)))
    return result


def fetch(proxy: Proxy, cookie: str = "", path: str = "/", extra: str = "", host: str = "localhost") -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if cookie:
        request += f"Cookie: {cookie}\r\n"
    response = raw_request(proxy.port, (request + extra + "\r\n").encode())
    assert status_of(response) == 200, response[:300]
    return response


def set_cookie_names(response: bytes) -> list[str]:
    head = response.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[1].strip().split(b"=", 1)[0].decode()
            for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie:")]


def set_cookie_lines(response: bytes) -> list[bytes]:
    head = response.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie:")]


def test_without_a_decision_only_necessary_cookies_pass(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    response = fetch(proxy)
    assert set_cookie_names(response) == ["sid"]
    assert b"HttpOnly" in set_cookie_lines(response)[0]
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert b"vary: cookie" in head and b"cache-control: private" in head
    metrics = proxy.metrics()
    assert 'consentproxy_malformed_set_cookies_total{site="kade"} 4.0' in metrics
    assert 'consentproxy_cookies_blocked_total{category="marketing",direction="response",site="kade"} 2.0' in metrics
    assert 'consentproxy_requests_by_consent_total{site="kade",state="none"} 1.0' in metrics


def test_upstream_never_receives_a_non_consented_cookie(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    browser = "_ga=GA1.1.1.1; sid=s3ss10n;kade_mystery=42;  _fbp=fb.1; theme=dark; _gcl_au=1.1; sid=second"
    response = fetch(proxy, browser)
    assert cookie_upstream.cookies_seen[-1] == "sid=s3ss10n; sid=second"
    expired = [line for line in set_cookie_lines(response) if b"Max-Age=0" in line]
    names = {line.split(b"=", 1)[0] for line in expired}
    assert names == {b"_ga", b"kade_mystery", b"_fbp", b"theme", b"_gcl_au"}


def test_consent_to_statistics_lets_the_ga_cookies_through(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    consent = mint(proxy, {"statistics"})
    response = fetch(proxy, f"cp_consent={consent}; _ga=GA1.1.1.1; _fbp=fb.1; sid=s")
    assert set_cookie_names(response) == ["sid", "_ga", "_gid", "_ga_ABC123", "_fbp"]  # _fbp: only its expiry
    assert next(line for line in set_cookie_lines(response) if line.startswith(b"_fbp")).startswith(b"_fbp=;")
    assert cookie_upstream.cookies_seen[-1] == "_ga=GA1.1.1.1; sid=s"  # the consent cookie is never forwarded
    everything = mint(proxy, {"statistics", "marketing", "preferences"}, "accept_all")
    names = set_cookie_names(fetch(proxy, f"cp_consent={everything}"))
    assert names == ["sid", "_ga", "_gid", "_ga_ABC123", "_fbp", "_gcl_au"]  # unknown stays blocked
    assert 'state="all"' in proxy.metrics() and 'state="partial"' in proxy.metrics()


def test_withdrawal_expires_the_withdrawn_cookies(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    fetch(proxy, f"cp_consent={mint(proxy, {'statistics'})}")  # the inventory learns _ga's path etc.
    withdrawn = mint(proxy, set(), "withdraw")
    response = fetch(proxy, f"cp_consent={withdrawn}; _ga=GA1.1.1.1; _gid=x; _ga_ABC123=y; sid=s",
                     host="www.kade-it.nl")
    assert cookie_upstream.cookies_seen[-1] == "sid=s"
    expiries = [line for line in set_cookie_lines(response) if b"Max-Age=0" in line]
    for name in (b"_ga", b"_gid", b"_ga_ABC123"):
        variants = [line for line in expiries if line.startswith(name + b"=;")]
        assert any(b"Domain=kade-it.nl" in v for v in variants), variants
        assert any(b"Domain=www.kade-it.nl" in v for v in variants), variants
        assert any(b"Domain" not in v for v in variants), variants  # host-only


@pytest.mark.parametrize("tamper", ["flip", "unknown-key", "expired", "old-revision", "garbage"])
def test_invalid_consent_cookies_count_as_no_decision(proxy: Proxy, cookie_upstream: CookieUpstream,
                                                      tamper: str) -> None:
    everything = {"statistics", "marketing", "preferences"}
    if tamper == "flip":
        good = mint(proxy, everything)
        value = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    elif tamper == "unknown-key":
        value = ConsentCodec(parse_consent_keys("zz:" + "A" * 43, "t")).encode(
            ConsentState("p", frozenset(everything), 1, int(time.time()), int(time.time()) + 60, "accept_all"))
    elif tamper == "expired":
        value = mint(proxy, everything, expires_in=-1)
    elif tamper == "old-revision":
        value = mint(proxy, everything, revision=0)
    else:
        value = "1.x.y.z"
    response = fetch(proxy, f"cp_consent={value}; _ga=1")
    assert set_cookie_names(response)[0] == "sid"
    assert not any(line.startswith(b"_ga=GA") for line in set_cookie_lines(response))
    assert cookie_upstream.cookies_seen[-1] == ""


def test_global_privacy_control(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    response = fetch(proxy, "_ga=1", extra="Sec-GPC: 1\r\n")
    assert set_cookie_names(response)[0] == "sid" and cookie_upstream.cookies_seen[-1] == ""
    assert 'state="gpc"' in proxy.metrics()
    explicit = mint(proxy, {"statistics"})
    assert "_ga" in set_cookie_names(fetch(proxy, f"cp_consent={explicit}", extra="Sec-GPC: 1\r\n"))
    well_known = json.loads(fetch(proxy, path="/.well-known/gpc.json").split(b"\r\n\r\n", 1)[1])
    assert well_known["gpc"] is True and len(well_known["lastUpdate"]) == 10


def test_upstream_cannot_set_the_consent_cookie(start_proxy: Any) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: cp_consent=forged; Path=/\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
    threading.Thread(target=serve, daemon=True).start()
    proxy = start_proxy(site_toml("s", f"http://127.0.0.1:{server.getsockname()[1]}"))
    assert b"cp_consent" not in raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                                            b"Connection: close\r\n\r\n")
    server.close()


def test_inventory_lists_what_the_site_sets_unknown_first(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    for _ in range(3):
        fetch(proxy)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:  # keep-alive requests count too
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert recv_response(sock).startswith(b"HTTP/1.1 200")
    assert proxy.stop() == 0  # the inventory is flushed at shutdown
    result = subprocess.run([sys.executable, "-m", "consentproxy", "inventory", "-c", str(proxy.config_path),
                             "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    names = [e["name"] for e in entries]
    assert names[0] == "kade_mystery" and entries[0]["source"] == "unknown"
    assert set(names) == {"sid", "_ga", "_gid", "_ga_ABC123", "_fbp", "_gcl_au", "kade_mystery"}
    by_name = {e["name"]: e for e in entries}
    assert by_name["sid"]["source"] == "declared" and by_name["sid"]["httponly"] is True
    assert by_name["_gcl_au"]["category"] == "marketing" and by_name["_gcl_au"]["blocked"] == 4
    assert by_name["_ga"]["count"] == 4 and by_name["_ga"]["lifetime_seconds"] == 34190000
    assert by_name["kade_mystery"]["path"] == "/shop"
    table = subprocess.run([sys.executable, "-m", "consentproxy", "inventory", "-c", str(proxy.config_path),
                            "--site", "www.kade-it.nl"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["site", "name", "kind"]
    assert lines[2].split()[1] == "kade_mystery"


def test_inventory_on_the_admin_api_needs_the_token(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    fetch(proxy)
    proxy.process.send_signal(15)
    proxy.process.wait(30)
    # restart on the same configuration: the data directory, its keys and its inventory stay
    restarted = subprocess.Popen([sys.executable, "-m", "consentproxy", "serve", "-c", str(proxy.config_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        from conftest import wait_ready

        wait_ready(proxy.admin_url + "/readyz", restarted)
        url = proxy.admin_url + "/api/inventory?site=kade"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        wrong = urllib.request.Request(url, headers={"Authorization": "Bearer nope"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=5)
        data_dir = Path(str(proxy.config_path.parent / f"data{proxy.config_path.stem.removeprefix('proxy')}"))
        token = (data_dir / "secrets" / "admin-token").read_text().strip()
        authorized = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(authorized, timeout=5) as answer:
            cookies = json.loads(answer.read())["cookies"]
        assert cookies[0]["name"] == "kade_mystery" and len(cookies) == 7
    finally:
        restarted.terminate()
        restarted.wait(30)


def test_cache_control_becomes_private(proxy: Proxy, cookie_upstream: CookieUpstream) -> None:
    head = fetch(proxy, path="/cacheable").split(b"\r\n\r\n", 1)[0].lower()
    assert b"cache-control: private, max-age=300" in head
    assert b"public" not in head
