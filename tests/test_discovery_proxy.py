"""Discovery through a real proxy process: the sampled page's policy and banner flag, `/_consent/report`'s answers,
and what an unknown tracker host reported before consent gives the operator (a log line and a metric)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import orjson
import pytest
from conftest import Proxy, serve_page, site_toml

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Shop</h1></body></html>"""
UNKNOWN = "cdn.unknown-tracker.test"


@pytest.fixture
def proxy(start_proxy: Callable[..., Proxy]) -> Iterator[Proxy]:
    with serve_page(PAGE, headers={"Content-Security-Policy-Report-Only": "img-src 'self'"}) as port:
        yield start_proxy(site_toml("shop", f"http://127.0.0.1:{port}", discovery_sample=1.0))


def request(proxy: Proxy, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, list[str]], bytes]:
    req = urllib.request.Request(proxy.url + path, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            found: dict[str, list[str]] = {}
            for name, value in response.headers.items():
                found.setdefault(name.lower(), []).append(value)
            return response.status, found, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {}, error.read()


def report(document: str = "http://127.0.0.1/", host: str = UNKNOWN) -> bytes:
    return orjson.dumps({"csp-report": {
        "document-uri": document, "referrer": "", "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem", "original-policy": "default-src 'self'", "disposition": "report",
        "blocked-uri": f"https://{host}/t.js?visitor=secret-value", "line-number": 3, "column-number": 9,
        "source-file": document, "status-code": 200, "script-sample": ""}})


def test_a_sampled_page_carries_the_policy_beside_the_sites_and_tells_the_banner(proxy: Proxy) -> None:
    status, headers, body = request(proxy, "/")
    assert status == 200
    assert headers["content-security-policy-report-only"][0] == "img-src 'self'"
    assert "report-uri /_consent/report?b=1" in headers["content-security-policy-report-only"][1]
    assert "reporting-endpoints" not in headers  # Chromium uploads to HTTPS endpoints only: report-uri here
    assert "report-to" not in headers["content-security-policy-report-only"][1]
    assert re.search(rb'data-cp-stamp="[^"]+" data-cp-report="1"', body)  # the site samples every view


def test_an_unknown_tracker_reported_before_consent_is_logged_once_and_counted(proxy: Proxy) -> None:
    origin = {"Origin": proxy.url, "Content-Type": "application/csp-report"}
    for _ in range(3):
        status, _, _ = request(proxy, "/_consent/report?b=1", report(proxy.url + "/p"), origin)
        assert status == 204
    assert request(proxy, "/_consent/report?b=1", report(), {**origin, "Origin": "https://evil.test"})[0] == 403
    assert request(proxy, "/_consent/report?b=1", b"[" + b" " * 70_000 + b"]",
                   {**origin, "Content-Type": "application/reports+json"})[0] == 413
    assert request(proxy, "/_consent/report")[0] == 405
    metrics = proxy.metrics()
    assert ('consentproxy_inventory_alerts_total{kind="host",reason="before_consent",site="shop"} 3.0' in metrics)
    assert 'consentproxy_discovery_reports_total{outcome="accepted",site="shop"} 3.0' in metrics
    assert 'consentproxy_discovery_reports_total{outcome="cross_site",site="shop"} 1.0' in metrics
    log = proxy.log()
    lines = [line for line in log.splitlines() if UNKNOWN in line and "before the visitor's consent" in line]
    assert len(lines) == 1, log
    assert "unknown" in lines[0]
    assert "secret-value" not in log and "/t.js" not in log  # hosts only: never a URL's path or query
