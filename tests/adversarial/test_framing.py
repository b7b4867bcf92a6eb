"""Request smuggling and framing, on the wire: every variant of `framing_variants` against a real proxy
process and a recording upstream. Each asserts the exact answers (statuses in order, then the close or a
probe answered on the same connection) and exactly the requests the site received."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Callable

import pytest
from conftest import Proxy, site_toml

from .conftest import SOAK
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


def pieces(data: bytes, mode: str, seed: int) -> list[bytes]:
    """`data` as the writes of one mode: whole, in 7-byte pieces, byte by byte, or cut at random places."""
    if mode == "whole":
        return [data]
    if mode == "split":
        return [data[start:start + 7] for start in range(0, len(data), 7)]
    if mode == "bytewise":
        return [data[start:start + 1] for start in range(len(data))]
    chooser = random.Random(seed)
    cuts = sorted(chooser.sample(range(1, len(data)), min(len(data) - 1, 6)))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def run_variant(port: int, data: bytes | list[bytes], expected: int, closed: bool, probe: bytes) -> Reply:
    """Send `data` (a list: each piece in a write of its own); read `expected` answers; then the rest until
    the close, or (`closed` False) send `probe` on the same connection and read until the close it asks for."""
    with connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            for piece in [data] if isinstance(data, bytes) else data:
                sock.sendall(piece)
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


def check_variant(proxy: Proxy, recorder: Recorder, variant: Variant, token: str, mode: str = "whole",
                  seed: int = 0) -> None:
    assert len(token) == TOKEN_LENGTH
    probe = f"GET /{token}/probe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    reply = run_variant(proxy.port, pieces(variant.render(token), mode, seed), len(variant.statuses),
                        variant.closed, probe)
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


#: how the bytes are written: whole, and in 7-byte pieces (each head and body boundary falls inside a read);
#: the soak adds byte by byte and cuts at random places
MODES = ["whole", "split", "bytewise", "random"] if SOAK else ["whole", "split"]


def _params() -> list[object]:
    params: list[object] = []
    for mode_index, mode in enumerate(MODES):
        for index, variant in enumerate(VARIANTS):
            marks = [pytest.mark.xfail(strict=True, reason=variant.bug)] if variant.bug else []
            params.append(pytest.param(mode_index * 100_000 + index, variant, mode, id=f"{variant.name}-{mode}",
                                       marks=marks))
    return params


@pytest.mark.parametrize(("number", "variant", "mode"), _params())
def test_framing_variant(proxy: Proxy, recorder: Recorder, number: int, variant: Variant, mode: str) -> None:
    check_variant(proxy, recorder, variant, f"v{number:06d}", mode, seed=number)


def test_there_are_at_least_250_framing_variants() -> None:
    assert len(VARIANTS) >= 250 and len({variant.data for variant in VARIANTS}) == len(VARIANTS)
