"""Request smuggling and framing, on the wire: every variant of `framing_variants` against a real proxy
process and a recording upstream. Each asserts the exact answers (statuses in order, then the close or a
probe answered on the same connection) and exactly the requests the site received."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from conftest import Proxy, site_toml

from .framing_variants import TOKEN_LENGTH, Variant, all_variants
from .recorder import Recorder
from .wire import Reply, connect, get, parse_responses, read_responses, read_until_close

pytestmark = pytest.mark.attack("smuggling and framing")

VARIANTS = all_variants()


@pytest.fixture(scope="module")
def proxy(proxies: Callable[..., Proxy], recorder: Recorder) -> Proxy:
    # short header and body deadlines: a variant the proxy wrongly waits on fails in seconds, not minutes
    site = site_toml("main", f"http://127.0.0.1:{recorder.port}", hosts=("localhost",), body_grace=3,
                     body_timeout=5, rewrite_html=False)
    return proxies(site, limits={"header_timeout": 5, "max_connections_per_client": 0,
                                 "max_requests_per_client": 0})


def run_variant(port: int, data: bytes, expected: int, closed: bool, probe: bytes) -> Reply:
    """Send `data`; read `expected` answers; then the rest until the close, or (`closed` False) send
    `probe` on the same connection and read until the close it asks for."""
    with connect(port) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        first = read_responses(sock, expected)
        raw = first.raw
        if not first.closed:
            if not closed:
                with contextlib.suppress(OSError):
                    sock.sendall(probe)
            more, _ = read_until_close(sock)
            raw += more
    responses, rest = parse_responses(raw, eof=True)
    return Reply(responses, True, raw, rest)


def check_variant(proxy: Proxy, recorder: Recorder, variant: Variant, token: str) -> None:
    assert len(token) == TOKEN_LENGTH
    probe = f"GET /{token}/probe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    reply = run_variant(proxy.port, variant.render(token), len(variant.statuses), variant.closed, probe)
    expected_statuses = list(variant.statuses) + ([] if variant.closed else [200])
    assert reply.statuses == expected_statuses, (reply.raw[:600], reply.rest[:200])
    assert reply.rest == b"", reply.rest[:200]
    assert all(response.complete for response in reply.responses)
    if variant.closed and variant.statuses and variant.statuses[-1] >= 400:
        # a refusal says that the connection ends
        assert reply.responses[-1].header(b"connection") == [b"close"]
    # a barrier: once the marker arrived, whatever the variant made the proxy send had arrived before it
    assert get(proxy.port, f"/{token}/marker").statuses == [200]
    recorder.wait_for(f"/{token}/marker")
    received = [request for request in recorder.seen(f"/{token}/") if not request.path.endswith("/marker")]
    expected = [(method, f"/{token}{path}", body.replace(b"{v}", token.encode())) for method, path, body in
                variant.upstream] + ([] if variant.closed else [("GET", f"/{token}/probe", b"")])
    assert [(r.method.decode(), r.path, r.body) for r in received] == expected
    for request in received:
        framing = [name.lower() for name, _ in request.headers if name.lower() in (b"content-length",
                                                                                  b"transfer-encoding")]
        assert len(framing) <= 1, request.headers  # exactly one framing header, or none
        assert request.header(b"host") == [b"localhost"]
        assert request.version == b"HTTP/1.1"
    # nothing else naming the token reached the site: not as a request it could not frame, not in a body
    occurrences = sum(1 + request.body.count(token.encode()) for request in received) + 1  # + the marker
    assert recorder.all_bytes().count(token.encode()) == occurrences


def _param(index: int, variant: Variant) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=variant.bug)] if variant.bug else []
    return pytest.param(index, variant, id=variant.name, marks=marks)


@pytest.mark.parametrize(("index", "variant"), [_param(index, variant) for index, variant in enumerate(VARIANTS)])
def test_framing_variant(proxy: Proxy, recorder: Recorder, index: int, variant: Variant) -> None:
    check_variant(proxy, recorder, variant, f"v{index:06d}")


def test_there_are_at_least_250_framing_variants() -> None:
    assert len(VARIANTS) >= 250
