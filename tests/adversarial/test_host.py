"""Host and absolute-form tricks, and client-address spoofing, against a proxy whose sites are an exact one
(localhost, site.test, 127.0.0.1), a wildcard one (*.wild.test) and a catch-all (*): a Host that is no host
gets 400 before routing, and a canary listener that no configuration names is never contacted, whatever a
request names."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Proxy, site_toml

from .harness import upstream_saw
from .recorder import Recorder
from .wire import exchange

WILD = "wild.test"


@pytest.fixture(scope="module")
def proxy(proxies: Callable[..., Proxy], recorder: Recorder, canary: Recorder) -> Proxy:
    upstream = f"http://127.0.0.1:{recorder.port}"
    sites = site_toml("exact", upstream, hosts=("localhost", "site.test", "127.0.0.1", "::1"), rewrite_html=False)
    sites += site_toml("wild", upstream, hosts=(f"*.{WILD}",), rewrite_html=False)
    sites += site_toml("rest", upstream, hosts=("*",), rewrite_html=False)
    return proxies(sites, limits={"max_connections_per_client": 0, "max_requests_per_client": 0})


@pytest.fixture(autouse=True)
def _canary_untouched(canary: Recorder) -> object:
    yield None
    assert canary.connections == 0, canary.all_bytes()[:300]


def _bad_hosts(canary: int) -> list[str]:
    return [
        f"evil.com#.{WILD}", f"evil.com/.{WILD}", f"evil.com@a.{WILD}", f"a b.{WILD}", f".{WILD}", f"a..{WILD}",
        f"evil.com?.{WILD}", f"evil.com\\.{WILD}", f"evil.com%2f.{WILD}", f"evil.com,a.{WILD}", f"a.{WILD}:99999",
        f"a.{WILD}:0", f"a.{WILD}:8o", f"a.{WILD}:80:80", "site.test:99999", "[site.test]", "[::1", "[v1.x]",
        "[fe80::1%25eth0]", "site.test.evil.com:80@x", "caf\xe9.site.test", "-", ".", "..", f"*.{WILD}",
        "user:pass@localhost", f"localhost@127.0.0.1:{canary}", f"127.0.0.1:{canary}@localhost", "localhost/x",
        "localhost#x", "localhost?x", "localhost:-1", "localhost:+80", "localhost:0x50", f"[::1]:{canary}x",
        "local host", "%6cocalhost", "localhost%00", f"localhost\\127.0.0.1:{canary}", "http://localhost",
        "*", "l\xd0\xbecalhost", "localhost;x", "localhost\x0b", "localhost\x01",
        "a" * 64 + ".test", "[1.2.3.4]", "1.2.3.4.5:80x", f"localhost:{canary}:{canary}",
    ]


def _ids(values: list[str]) -> list[str]:
    return [repr(value)[1:-1][:40] for value in values]


BAD = _bad_hosts(1)  # ids only; the canary's port goes in at run time


@pytest.mark.attack("host and absolute-form")
@pytest.mark.parametrize("index", range(len(BAD)), ids=_ids(BAD))
def test_an_invalid_host_gets_400_and_reaches_nobody(proxy: Proxy, recorder: Recorder, canary: Recorder,
                                                     index: int) -> None:
    host = _bad_hosts(canary.port)[index]
    token = f"h{index:06d}"
    reply = exchange(proxy.port, f"GET /{token}/a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
    assert (reply.statuses, reply.closed) == ([400], True), reply.raw[:300]
    assert upstream_saw(proxy, recorder, token) == []


def _good_hosts(canary: int) -> list[tuple[str, str]]:
    """Hosts that name a site, and the Host its upstream must get (the normal form)."""
    return [
        ("localhost", "localhost"), ("LOCALHOST", "localhost"), ("localhost.", "localhost"),
        ("localhost:80", "localhost:80"), ("localhost:0080", "localhost:80"), (f"127.0.0.1:{canary}",
                                                                               f"127.0.0.1:{canary}"),
        ("[::1]", "[::1]"), (f"[0:0::1]:{canary}", f"[::1]:{canary}"), (f"Shop.{WILD.upper()}", f"shop.{WILD}"),
        (f"a.b.{WILD}:8080", f"a.b.{WILD}:8080"), (f"bad{WILD}", f"bad{WILD}"),
        (f"{WILD}.evil.com", f"{WILD}.evil.com"),
        ("xn--caf-dma.test", "xn--caf-dma.test"), ("10.0.0.1", "10.0.0.1"), (" localhost\t", "localhost"),
        ("localhost:80 ", "localhost:80"),
    ]


GOOD = _good_hosts(1)


@pytest.mark.attack("host and absolute-form")
@pytest.mark.parametrize("index", range(len(GOOD)), ids=_ids([host for host, _ in GOOD]))
def test_a_valid_host_goes_to_the_configured_upstream_in_normal_form(proxy: Proxy, recorder: Recorder,
                                                                    canary: Recorder, index: int) -> None:
    host, normal = _good_hosts(canary.port)[index]
    token = f"g{index:06d}"
    reply = exchange(proxy.port, f"GET /{token}/a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert (reply.statuses, reply.closed) == ([200], True), reply.raw[:300]
    [seen] = upstream_saw(proxy, recorder, token)
    assert (seen.method, seen.target) == (b"GET", f"/{token}/a".encode())
    assert seen.header(b"host") == [normal.encode()]
    assert seen.header(b"x-forwarded-host") == [normal.encode()]


def _absolute(canary: int) -> list[tuple[str, str, int, str | None]]:
    """(request target, Host, status, the target the upstream gets or None); `{v}`: the token."""
    c = f"127.0.0.1:{canary}"
    return [
        (f"http://{c}/{{v}}/a", "localhost", 400, None),
        (f"http://{c}/{{v}}/a", c, 200, "/{v}/a"),  # names the host it is for: routed by configuration only
        ("http://localhost/{v}/a", "localhost", 200, "/{v}/a"),
        ("http://LOCALHOST:80/{v}/a", "localhost:80", 200, "/{v}/a"),
        ("http://localhost/{v}/a?q=1", "localhost", 200, "/{v}/a?q=1"),
        (f"http://localhost@{c}/{{v}}/a", c, 400, None),
        (f"http://user:pw@{c}/{{v}}/a", c, 400, None),
        (f"http://{c}@localhost/{{v}}/a", "localhost", 400, None),
        (f"http://{c}#@localhost/{{v}}/a", "localhost", 400, None),
        (f"http://localhost:{canary}/{{v}}/a", "localhost", 400, None),
        ("http://localhost/{v}/a", c, 400, None),
        (f"http://[::1]:{canary}/{{v}}/a", "localhost", 400, None),
        (f"//{c}/{{v}}/a", "localhost", 200, f"//{c}/{{v}}/a"),  # a path, forwarded as one
        (f"/{{v}}/a@{c}", "localhost", 200, f"/{{v}}/a@{c}"),
        (f"@{c}/{{v}}/a", "localhost", 400, None),
        (f"{c}/{{v}}/a", "localhost", 400, None),
        (f"http:/{c}/{{v}}/a", "localhost", 400, None),
        (f"ftp://{c}/{{v}}/a", c, 400, None),
        (f"http://{c}:80/{{v}}/a", c, 400, None),
        (f"http://{c}\\@localhost/{{v}}/a", "localhost", 400, None),
        ("http://evil.com/{v}/a", "localhost", 400, None),
        ("http://evil.com/{v}/a", "evil.com", 200, "/{v}/a"),  # the catch-all site, its own upstream
    ]


ABSOLUTE = _absolute(1)
#: open bugs, by the start of the target
ABSOLUTE_BUGS: dict[str, str] = {}  # none open (ftp:// and other schemes are refused since issue 17)


def _absolute_params() -> list[object]:
    params: list[object] = []
    for index, (target, host, _, _) in enumerate(ABSOLUTE):
        bug = next((reason for start, reason in ABSOLUTE_BUGS.items() if target.startswith(start)), None)
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        params.append(pytest.param(index, id=f"{target[:30]} Host {host[:20]}", marks=marks))
    return params


@pytest.mark.attack("host and absolute-form")
@pytest.mark.parametrize("index", _absolute_params())
def test_an_absolute_form_target_never_reaches_another_host(proxy: Proxy, recorder: Recorder, canary: Recorder,
                                                           index: int) -> None:
    target, host, status, forwarded = _absolute(canary.port)[index]
    token = f"a{index:06d}"
    target = target.replace("{v}", token)
    reply = exchange(proxy.port, f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert (reply.statuses, reply.closed) == ([status], True), reply.raw[:300]
    seen = upstream_saw(proxy, recorder, token)
    if forwarded is None:
        assert seen == []
    else:
        assert [request.target for request in seen] == [forwarded.replace("{v}", token).encode()]


# -- client-address spoofing -----------------------------------------------------------------------------------

LIE = "203.0.113.66"
SPOOFED = [
    "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "CF-Connecting-IPv6", "X-Client-IP", "X-Cluster-Client-IP",
    "Client-IP", "Fastly-Client-IP", "X-Original-Forwarded-For", "X-Forwarded", "Forwarded-For",
    "X-Forwarded-Server", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-ProxyUser-Ip",
    "X-Envoy-External-Address", "X-Azure-ClientIP", "Akamai-Client-IP", "X_Forwarded_For", "X_Real_IP",
    "x-real-ip", "X-REAL-IP", "X_REAL_IP", "True_Client_IP", "Client_IP",
]


def _spoofs() -> list[tuple[str, str]]:
    """(name, header lines): each claims the address 203.0.113.66, a host evil.example or https."""
    out = [(name, f"{name}: {LIE}\r\n") for name in SPOOFED]
    out += [
        ("xff", f"X-Forwarded-For: {LIE}\r\n"),
        ("xff-list", f"X-Forwarded-For: {LIE}, 10.0.0.1\r\n"),
        ("xff-twice", f"X-Forwarded-For: {LIE}\r\nX-Forwarded-For: 10.0.0.1\r\n"),
        ("xff-loopback", "X-Forwarded-For: 127.0.0.1\r\n"),
        ("xff-empty", "X-Forwarded-For: \r\n"),
        ("forwarded", f"Forwarded: for={LIE};proto=https;host=evil.example\r\n"),
        ("forwarded-ipv6", f'Forwarded: for="[2001:db8::1]", for={LIE}\r\n'),
        ("forwarded-twice", f"Forwarded: for={LIE}\r\nForwarded: for=10.0.0.1\r\n"),
        ("xfp", "X-Forwarded-Proto: https\r\n"),
        ("xfh", "X-Forwarded-Host: evil.example\r\n"),
        ("x-forwarded-port", "X-Forwarded-Port: 443\r\n"),
        ("x-forwarded-scheme", "X-Forwarded-Scheme: https\r\n"),
        ("x-forwarded-ssl", "X-Forwarded-Ssl: on\r\n"),
        ("x-original-host", "X-Original-Host: evil.example\r\n"),
        ("all-at-once", "".join(f"{name}: {LIE}\r\n" for name in SPOOFED)),
        ("connection-names-xff", f"Connection: X-Forwarded-For\r\nX-Forwarded-For: {LIE}\r\n"),
        ("connection-names-real-ip", f"Connection: close, X-Real-IP\r\nX-Real-IP: {LIE}\r\n"),
    ]
    return out


SPOOFS = _spoofs()


@pytest.mark.attack("client-address spoofing")
@pytest.mark.parametrize("index", range(len(SPOOFS)), ids=[name for name, _ in SPOOFS])
def test_client_address_headers_from_an_untrusted_peer_never_reach_the_site(proxy: Proxy, recorder: Recorder,
                                                                            index: int) -> None:
    _, lines = SPOOFS[index]
    token = f"s{index:06d}"
    reply = exchange(proxy.port, f"GET /{token}/a HTTP/1.1\r\nHost: localhost\r\n{lines}X-Kept: yes\r\n"
                                 "Connection: close\r\n\r\n".encode())
    assert (reply.statuses, reply.closed) == ([200], True), reply.raw[:300]
    [seen] = upstream_saw(proxy, recorder, token)
    values = b"\n".join(value for _, value in seen.headers)
    assert LIE.encode() not in values and b"evil.example" not in values and b"2001:db8" not in values
    assert seen.header(b"x-forwarded-for") == [b"127.0.0.1"]
    assert seen.header(b"x-forwarded-proto") == [b"http"]
    assert seen.header(b"x-forwarded-host") == [b"localhost"]
    assert seen.header(b"forwarded") == []
    assert seen.header(b"x-kept") == [b"yes"]
    names = {name.lower().replace(b"_", b"-") for name, _ in seen.headers}
    assert not names & {b"x-forwarded-port", b"x-forwarded-scheme", b"x-forwarded-ssl", b"x-original-host"}
    assert seen.header(b"via") == [b"1.1 consentproxy"]
