"""A page with `<base href>` naming another origin: what we inject still loads from the proxy (issue 22, item 1).

A base URL resolves every relative URL of the document after it, ours too: genius.com's
`<base href="//genius.com/">` sent the banner's stylesheet and script to genius.com, so the banner stayed
inert and blocking was never reversed. After a `<base href>` the proxy writes its own URLs with the
request's origin; the banner script calls the consent API on `location.origin`.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, Proxy, mint, serve_page, site_toml

from consentproxy.proxy.pipeline import Exchange

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Based</title>
<base href="http://other.example/post/1/"><link rel="stylesheet" href="style.css"></head>
<body><h1>A page with a base URL</h1><script src="app.js"></script>
<script src="https://www.google-analytics.com/analytics.js"></script></body></html>"""
PLAIN = """<!doctype html><html><head><title>Plain</title></head><body><script>var own = 1;</script>
<script src="https://www.google-analytics.com/analytics.js"></script></body></html>"""


def exchange(host: bytes, trusted: bool = False, **owned: bytes) -> Exchange:
    headers = {b"host": host, **{name.replace("_", "-").encode(): value for name, value in owned.items()}}
    return Exchange({}, None, "192.0.2.1", trusted, "192.0.2.1", "http", [], headers)  # type: ignore[arg-type]


def test_the_public_origin_takes_forwarded_scheme_and_host_only_from_a_trusted_proxy_and_only_when_plain() -> None:
    assert exchange(b"shop.example").public_origin() == "http://shop.example"
    assert exchange(b"Shop.Example:8080").public_origin() == "http://shop.example:8080"
    assert exchange(b"[2001:db8::1]:8443").public_origin() == "http://[2001:db8::1]:8443"
    forwarded = {"x_forwarded_proto": b"https", "x_forwarded_host": b"www.shop.example"}
    assert exchange(b"internal:8080", trusted=True, **forwarded).public_origin() == "https://www.shop.example"
    assert exchange(b"shop.example", **forwarded).public_origin() == "http://shop.example"  # not trusted
    assert exchange(b"shop.example", trusted=True, x_forwarded_proto=b"https, http").public_origin() == \
        "https://shop.example"
    for hostile in (b'evil.example"><script>', b"evil.example/.shop.example", b"evil.example#.shop.example",
                    b"user@shop.example", b"a b.example", b""):
        assert exchange(hostile).public_origin() == "", hostile
    assert exchange(b"shop.example", trusted=True, x_forwarded_proto=b"javascript").public_origin() == ""


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_after_a_base_url_our_urls_name_the_request_origin_and_before_it_they_stay_relative(start_proxy: Any) -> None:
    templated = PLAIN.replace("<title>", '<template><base href="http://other.example/"></template><title>')
    with serve_page(PAGE, files={"/plain": (PLAIN, "text/html"), "/templated": (templated, "text/html")}) as port:
        proxy: Proxy = start_proxy(site_toml("based", f"http://127.0.0.1:{port}"))
        html = fetch(proxy.url + "/")
        origin = proxy.url.rstrip("/")
        ours = re.findall(r'(?:src|href)="([^"]*/_consent/[^"]*)"', html)
        assert len(ours) >= 3, html  # the guard, the stylesheet, the script (and the Consent Mode script)
        assert all(url.startswith(origin + "/_consent/") for url in ours), ours
        assert 'href="style.css"' in html and 'src="app.js"' in html, "the page's own URLs are left alone"
        templated = fetch(proxy.url + "/templated")
        assert origin not in templated, "a <base> inside a <template> sets no base URL"
        plain = fetch(proxy.url + "/plain")
        assert re.findall(r'(?:src|href)="([^"]*/_consent/[^"]*)"', plain)
        assert origin not in plain, "without a base URL our URLs stay root-relative"


def test_after_a_base_url_the_analytics_endpoints_we_point_scripts_at_name_the_request_origin(
        start_proxy: Any) -> None:
    """Plausible sends to its data-api, Umami to its data-host-url: resolved against the page's base URL."""
    scripts = ('<script defer data-domain="shop.example" src="https://plausible.io/js/script.js"></script>'
               '<script defer src="https://cloud.umami.is/script.js" data-website-id="x"></script>')
    page = f'<!doctype html><html><head><title>t</title>{{base}}{scripts}</head><body><p>x</p></body></html>'
    with serve_page(page.format(base='<base href="https://cdn.other.example/">'),
                    files={"/plain": (page.format(base=""), "text/html")}) as port:
        proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{port}")
                                   + '[sites.shop.analytics]\nplausible = "http://127.0.0.1:9/p"\n'
                                   + 'umami = "http://127.0.0.1:9/u"\n')
        origin = proxy.url.rstrip("/")
        consented = {"Cookie": f"cp_consent={mint(proxy, {'statistics'})}"}
        for path in ("/", "/", "/plain", "/plain", "/"):  # again: the outcomes kept per site must not mix
            request = urllib.request.Request(proxy.url + path, headers=consented)
            with urllib.request.urlopen(request, timeout=10) as response:
                html = response.read().decode()
            prefix = origin if path == "/" else ""
            assert f'data-api="{prefix}/_consent/a/api/event"' in html, html
            assert f'data-host-url="{prefix}/_consent/a"' in html, html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)")
def test_in_a_browser_the_banner_works_on_a_page_with_a_base_url(start_proxy: Any, browser: Any) -> None:
    with serve_page(PAGE) as port:
        proxy: Proxy = start_proxy(site_toml("based", f"http://127.0.0.1:{port}"))
        context = browser.new_context()
        elsewhere: list[str] = []

        def answer(route: Any) -> None:  # nothing leaves this machine
            elsewhere.append(route.request.url)
            route.fulfill(status=404, body="")

        context.route("http://other.example/**", answer)
        context.route("https://**/*", answer)
        try:
            page = context.new_page()
            page.goto(proxy.url + "/", wait_until="load")
            banner = page.locator("#cp-banner")
            banner.wait_for(state="visible", timeout=10_000)
            assert banner.evaluate("e => getComputedStyle(e).position") == "fixed", \
                "the banner's stylesheet did not load"
            assert not [url for url in elsewhere if "/_consent/" in url]
            assert not [url for url in elsewhere if "google-analytics" in url], "a tracker before consent"
            with page.expect_response(lambda r: r.url.startswith(proxy.url + "/_consent") and
                                      r.request.method == "POST") as answered:
                page.locator("#cp-banner [data-cp-action=accept_all]").click()
            assert answered.value.status == 200
            cookies = {cookie["name"]: cookie["value"] for cookie in context.cookies()}
            assert "cp_consent" in cookies
            page.wait_for_timeout(500)
            assert [url for url in elsewhere if "google-analytics" in url], "Accept all released nothing"
            assert not [url for url in elsewhere if "/_consent/" in url], json.dumps(elsewhere)
        finally:
            context.close()
