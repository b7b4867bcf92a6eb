"""The proxy's own surfaces under abuse: admin paths on the public listener (always the site's, never the
admin API's) and path tricks on the admin listener (never past its token), the visitor consent API
(oversized bodies, wrong content types, cross-origin requests, repeated headers), and cache safety (a
response whose body or cookies depend on the visitor's consent is never storable by a shared cache)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Proxy, site_toml

from .harness import upstream_saw
from .recorder import Canned, Recorder
from .wire import Reply, exchange

ADMIN_TOKEN = "adversarial-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def proxy(proxies: Callable[..., Proxy], recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    token_file: Path = tmp_path_factory.mktemp("secrets") / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    for name, (headers, body) in PAGES.items():
        recorder.canned[name] = Canned(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body)
                                       + body, close=False)
    sites = site_toml("main", f"http://127.0.0.1:{recorder.port}", hosts=("localhost", "127.0.0.1"))
    sites += f'[secrets]\nadmin_token = "file:{token_file}"\n'
    return proxies(sites, limits={"max_connections_per_client": 0, "max_requests_per_client": 0})


# -- admin paths on the public listener: the site's paths, forwarded as they came ------------------------------

ADMIN_PATHS = [
    "/metrics", "/healthz", "/readyz", "/api/sites", "/api/audit", "/api/exports", "/api/inventory",
    "/api/sites/main/events", "/api/sites/main/verify", "//metrics", "/./metrics", "/x/../metrics", "/METRICS",
    "/Metrics", "/%6detrics", "/%6Detrics", "/%2fmetrics", "/%2Fapi%2Fsites", "/api%2fsites", "/api/%73ites",
    "/%252fmetrics", "/%2e/metrics", "/%2e%2e/metrics", "/.%2e/api/sites", "/metrics/", "/metrics;x", "/metrics%00",
    "/metrics%20", "/metrics.", "/api/sites?x=1", "/api/sites#frag", "/\\metrics", "/api\\sites", "/%5capi/sites",
    "/healthz/../api/audit", "/api/./audit", "/api//audit", "/%61pi/audit", "/API/AUDIT",
]


@pytest.mark.attack("admin path tricks")
@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize("authorized", [False, True], ids=["no-token", "admin-token"])
def test_the_public_listener_never_serves_an_admin_path(proxy: Proxy, recorder: Recorder, path: str,
                                                        authorized: bool) -> None:
    token = f"p{ADMIN_PATHS.index(path):05d}{int(authorized)}"
    target = path.split("#", 1)[0]
    target += ("&" if "?" in target else "?") + f"t=/{token}/"
    auth = f"Authorization: Bearer {ADMIN_TOKEN}\r\n" if authorized else ""
    reply = exchange(proxy.port, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
                     .encode())
    assert reply.statuses == [200], reply.raw[:300]
    # the site's own answer (the recorder's), for exactly the target sent
    assert reply.responses[0].body == f"ok GET {target} 0".encode()
    [seen] = upstream_saw(proxy, recorder, token)
    assert seen.target == target.encode()


ADMIN_TRICKS = [
    "/api/sites", "//api/sites", "/api//sites", "/./api/sites", "/x/../api/sites", "/API/sites", "/api/sites/",
    "/%61pi/sites", "/api%2fsites", "/api/sites%00", "/api/sites;x", "/api/sites?token=" + ADMIN_TOKEN,
    "/api/audit", "/api/exports", "/api/inventory", "/api/sites/main/events", "/api/sites/main/verify",
    "/api/sites/main/checkpoints", "/api/sites/%2e%2e/main/verify", "/healthz/../api/audit", "/api/audit/",
]


def _admin(proxy: Proxy, method: str, path: str, auth: str = "") -> Reply:
    return exchange(proxy.admin_port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                                      "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())


@pytest.mark.attack("admin path tricks")
@pytest.mark.parametrize("path", ADMIN_TRICKS)
@pytest.mark.parametrize("auth", ["", "Authorization: Bearer wrong\r\n", f"Authorization: Basic {ADMIN_TOKEN}\r\n",
                                  f"Authorization: bearer {ADMIN_TOKEN}x\r\n",
                                  f"X-Auth-Token: {ADMIN_TOKEN}\r\nCookie: token={ADMIN_TOKEN}\r\n"],
                         ids=["none", "wrong", "basic", "longer", "elsewhere"])
def test_the_admin_api_never_answers_without_its_token(proxy: Proxy, path: str, auth: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        reply = _admin(proxy, method, path, auth)
        assert len(reply.responses) == 1, reply.raw[:300]
        status = reply.statuses[0]
        if status == 307:  # starlette's trailing-slash redirect: to the same API, which then asks for the token
            assert path.endswith("/") and reply.responses[0].header(b"location") == [
                b"http://127.0.0.1" + path.rstrip("/").encode()]
        else:
            assert status in (401, 404, 405), (method, reply.raw[:300])
        assert b'"sites"' not in reply.responses[0].body and b"main" not in reply.responses[0].body


@pytest.mark.attack("admin path tricks")
def test_the_admin_token_opens_the_admin_api_on_the_admin_listener_only(proxy: Proxy) -> None:
    """The control: the same token works where it belongs, so the refusals above are refusals."""
    reply = _admin(proxy, "GET", "/api/sites", f"Authorization: Bearer {ADMIN_TOKEN}\r\n")
    assert reply.statuses == [200] and b"main" in reply.responses[0].body


# -- the consent API -------------------------------------------------------------------------------------------

ACCEPT = b'{"action": "accept_all"}'


def _consent(proxy: Proxy, headers: str, body: bytes, token: str, method: str = "POST",
             length: int | None = None, chunked: bool = False) -> Reply:
    declared = len(body) if length is None else length
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {declared}\r\n"
    if chunked:
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return exchange(proxy.port, f"{method} /_consent?t=/{token}/ HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
                                f"{headers}{framing}Connection: close\r\n\r\n".encode() + body)


JSON = "Content-Type: application/json\r\n"
BIG = b'{"action": "accept_all", "pad": "' + b"x" * 5000 + b'"}'
NESTED = b"[" * 2000 + b"]" * 2000


def _abuse(port: int) -> list[tuple[str, str, bytes, int, str, dict[str, object]]]:
    """(name, headers, body, status, error code, options)."""
    origin = f"Origin: http://127.0.0.1:{port}\r\n"
    return [
        ("too-large", JSON, BIG, 413, "body_too_large", {}),
        ("too-large-chunked", JSON, BIG, 413, "body_too_large", {"chunked": True}),
        ("declared-huge", JSON, BIG, 413, "body_too_large", {"length": 100_000_000}),
        ("no-content-type", "", ACCEPT, 415, "unsupported_media_type", {}),
        ("text-plain", "Content-Type: text/plain\r\n", ACCEPT, 415, "unsupported_media_type", {}),
        ("form", "Content-Type: application/x-www-form-urlencoded\r\n", b"action=accept_all", 415,
         "unsupported_media_type", {}),
        ("multipart", "Content-Type: multipart/form-data; boundary=x\r\n", ACCEPT, 415, "unsupported_media_type", {}),
        ("jsonx", "Content-Type: application/jsonx\r\n", ACCEPT, 415, "unsupported_media_type", {}),
        ("text-json", "Content-Type: text/json\r\n", ACCEPT, 415, "unsupported_media_type", {}),
        ("cross-origin", JSON + "Origin: https://evil.example\r\n", ACCEPT, 403, "cross_site", {}),
        ("null-origin", JSON + "Origin: null\r\n", ACCEPT, 403, "cross_site", {}),
        ("other-scheme", JSON + f"Origin: https://127.0.0.1:{port}\r\n", ACCEPT, 403, "cross_site", {}),
        ("other-port", JSON + "Origin: http://127.0.0.1:1\r\n", ACCEPT, 403, "cross_site", {}),
        ("origin-suffix", JSON + f"Origin: http://127.0.0.1:{port}.evil.example\r\n", ACCEPT, 403, "cross_site", {}),
        ("origin-userinfo", JSON + f"Origin: http://evil.example@127.0.0.1:{port}\r\n", ACCEPT, 403, "cross_site",
         {}),
        ("fetch-cross-site", JSON + "Sec-Fetch-Site: cross-site\r\n", ACCEPT, 403, "cross_site", {}),
        ("fetch-same-site", JSON + "Sec-Fetch-Site: same-site\r\n", ACCEPT, 403, "cross_site", {}),
        ("two-origins", JSON + "Origin: https://evil.example\r\n" + origin, ACCEPT, 400, "duplicate_header", {}),
        ("two-origins-own-first", JSON + origin + "Origin: https://evil.example\r\n", ACCEPT, 400,
         "duplicate_header", {}),
        ("two-content-types", "Content-Type: text/plain\r\n" + JSON, ACCEPT, 400, "duplicate_header", {}),
        ("two-fetch-sites", JSON + "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Site: same-origin\r\n", ACCEPT, 400,
         "duplicate_header", {}),
        ("invalid-json", JSON, b'{"action": ', 400, "invalid_json", {}),
        ("json-array", JSON, b'["accept_all"]', 400, "invalid_body", {}),
        ("deep-nesting", JSON, NESTED, 400, "invalid_json", {}),
        ("nul-in-json", JSON, b'{"action": "accept_all\x00"}', 400, "invalid_json", {}),
        ("unknown-field", JSON, b'{"action": "accept_all", "admin": true}', 400, "unknown_field", {}),
        ("unknown-action", JSON, b'{"action": "grant_everything"}', 422, "unknown_action", {}),
        ("unknown-category", JSON, b'{"action": "save_selection", "choices": {"root": true}}', 422,
         "unknown_category", {}),
        ("necessary-off", JSON, b'{"action": "save_selection", "choices": {"necessary": false}}', 422,
         "necessary_required", {}),
        ("gpc-without-signal", JSON, b'{"action": "gpc_signal"}', 422, "gpc_not_sent", {}),
        ("bad-idempotency-key", JSON + "Idempotency-Key: " + "k" * 500 + "\r\n", ACCEPT, 400,
         "invalid_idempotency_key", {}),
    ]


ABUSE = _abuse(1)


@pytest.mark.attack("consent API abuse")
@pytest.mark.parametrize("index", range(len(ABUSE)), ids=[row[0] for row in ABUSE])
def test_consent_api_abuse_is_refused_without_a_decision(proxy: Proxy, recorder: Recorder, index: int) -> None:
    _, headers, body, status, code, options = _abuse(proxy.port)[index]
    token = f"c{index:06d}"
    reply = _consent(proxy, headers, body, token, length=options.get("length"),  # type: ignore[arg-type]
                     chunked=bool(options.get("chunked")))
    assert reply.statuses == [status], reply.raw[:400]
    answer = reply.responses[0]
    assert json.loads(answer.body)["error"] == code
    assert not any(value.startswith(b"cp_consent=") for value in answer.header(b"set-cookie"))
    assert answer.header(b"access-control-allow-origin") == []
    assert upstream_saw(proxy, recorder, token) == []  # the consent API is never the site's


@pytest.mark.attack("consent API abuse")
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_consent_api_are_refused(proxy: Proxy, recorder: Recorder, method: str) -> None:
    token = f"m{method}"
    reply = _consent(proxy, JSON + f"Origin: http://127.0.0.1:{proxy.port}\r\n", ACCEPT, token, method=method)
    assert reply.statuses == [405], reply.raw[:300]
    assert upstream_saw(proxy, recorder, token) == []


@pytest.mark.attack("consent API abuse")
def test_a_decision_from_the_own_origin_is_the_control(proxy: Proxy, recorder: Recorder) -> None:
    reply = _consent(proxy, JSON + f"Origin: http://127.0.0.1:{proxy.port}\r\nSec-Fetch-Site: same-origin\r\n",
                     ACCEPT, "control")
    assert reply.statuses == [200], reply.raw[:300]
    assert any(value.startswith(b"cp_consent=") for value in reply.responses[0].header(b"set-cookie"))
    assert reply.responses[0].header(b"cache-control") == [b"no-store"]


# -- cache safety ----------------------------------------------------------------------------------------------

HTML_HEAD = b"Content-Type: text/html; charset=utf-8\r\n"
PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>hello</p></body></html>"
PAGES: dict[str, tuple[bytes, bytes]] = {
    "page-public": (HTML_HEAD + b"Cache-Control: public, max-age=3600, s-maxage=7200\r\nETag: \"v1\"\r\n"
                    b"Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n", PAGE),
    "page-plain": (HTML_HEAD, PAGE),
    "page-vary": (HTML_HEAD + b"Vary: Accept-Language\r\nCache-Control: max-age=60\r\n", PAGE),
    "page-immutable": (HTML_HEAD + b"Cache-Control: public, immutable, max-age=31536000\r\n", PAGE),
    "page-cdn-cache-control": (HTML_HEAD + b"CDN-Cache-Control: public, max-age=600\r\n"
                               b"Surrogate-Control: max-age=600\r\n", PAGE),
    "text-sets-tracker": (b"Content-Type: text/plain\r\nCache-Control: public, max-age=600\r\n"
                          b"Set-Cookie: _ga=GA1.1.1.1; Path=/\r\n", b"tracked"),
    "text-public": (b"Content-Type: text/plain\r\nCache-Control: public, max-age=600\r\n", b"static"),
}


def _cacheable_by_a_shared_cache(headers: list[tuple[bytes, bytes]]) -> bool:
    control = b", ".join(value.lower() for name, value in headers if name.lower() == b"cache-control")
    return b"private" not in control and b"no-store" not in control


def _vary_cookie(headers: list[tuple[bytes, bytes]]) -> bool:
    vary = b", ".join(value.lower() for name, value in headers if name.lower() == b"vary")
    return b"cookie" in [token.strip() for token in vary.split(b",")] or vary.strip() == b"*"


CONSENT_DEPENDENT = ["page-public", "page-plain", "page-vary", "page-immutable", "page-cdn-cache-control",
                     "text-sets-tracker"]
BUGS: dict[str, str] = {}  # known open bugs by variant: xfail strict


@pytest.mark.attack("cache safety")
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=BUGS[name])]
                                               if name in BUGS else []) for name in CONSENT_DEPENDENT])
def test_a_consent_dependent_response_is_private(proxy: Proxy, recorder: Recorder, name: str) -> None:
    token = f"k{CONSENT_DEPENDENT.index(name):06d}"
    reply = exchange(proxy.port, f"GET /canned/{name}/{token}/ HTTP/1.1\r\nHost: localhost\r\n"
                                 "If-None-Match: \"v1\"\r\nIf-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                                 "Connection: close\r\n\r\n".encode())
    assert reply.statuses == [200], reply.raw[:300]
    headers = reply.responses[0].headers
    assert not _cacheable_by_a_shared_cache(headers), headers
    assert _vary_cookie(headers), headers
    control = b", ".join(value.lower() for key, value in headers if key.lower() == b"cache-control")
    assert b"public" not in control and b"s-maxage" not in control
    names = {key.lower() for key, _ in headers}
    assert not names & {b"cdn-cache-control", b"surrogate-control"}, headers
    if name.startswith("page"):
        assert b"etag" not in names
        # the browser's conditional headers never reach the site: its copy shows an older consent state
        [seen] = upstream_saw(proxy, recorder, token)
        assert seen.header(b"if-none-match") == [] and seen.header(b"if-modified-since") == []
    else:
        assert reply.responses[0].header(b"set-cookie") == []  # the tracker's cookie never reached the browser


@pytest.mark.attack("cache safety")
def test_a_refused_cookie_expired_by_the_proxy_makes_the_response_private(proxy: Proxy) -> None:
    reply = exchange(proxy.port, b"GET /canned/text-public/r1/ HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Cookie: _ga=GA1.1.1.1\r\nConnection: close\r\n\r\n")
    headers = reply.responses[0].headers
    assert any(value.startswith(b"_ga=") for value in reply.responses[0].header(b"set-cookie"))
    assert not _cacheable_by_a_shared_cache(headers) and _vary_cookie(headers)


@pytest.mark.attack("cache safety")
def test_a_response_independent_of_consent_keeps_its_caching(proxy: Proxy) -> None:
    reply = exchange(proxy.port, b"GET /canned/text-public/r2/ HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Connection: close\r\n\r\n")
    assert reply.responses[0].header(b"cache-control") == [b"public, max-age=600"]


@pytest.mark.attack("cache safety")
def test_the_consent_state_is_never_stored(proxy: Proxy) -> None:
    reply = exchange(proxy.port, f"GET /_consent HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nConnection: close"
                                 "\r\n\r\n".encode())
    assert reply.statuses == [200]
    assert reply.responses[0].header(b"cache-control") == [b"no-store"]
