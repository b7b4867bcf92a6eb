"""The injected banner in a real browser (Debian's chromium via Playwright) under a strict, nonce-based CSP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Proxy, serve_page, site_toml
from playwright.sync_api import Browser

NONCE = "s1teN0nce"
POLICY = (f"script-src 'nonce-{NONCE}' 'strict-dynamic'; style-src 'self'; object-src 'none'; base-uri 'none'; "
          "require-trusted-types-for 'script'; trusted-types site-policy")
PAGE = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Strict</title>
<script nonce="{NONCE}" async src="https://www.googletagmanager.com/gtag/js?id=G-STRICT"></script>
<script nonce="{NONCE}">window.siteRan = true;</script>
<script nonce="{NONCE}">window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}
gtag('js', new Date()); gtag('config', 'G-STRICT'); window.trackerRan = true;</script>
</head><body><main><h1>Strict page</h1><p>Text behind the banner.</p>
<p><iframe src="https://www.youtube.com/embed/strict01" width="560" height="315"></iframe></p>
<iframe data-cp-blocked="marketing" data-cp-service="YouTube" data-cp-src="https://evil.example/frame"
 data-cp-embed-id="cp-e9" hidden></iframe></main></body></html>"""
COLLECT_VIOLATIONS = """
window.__violations = [];
// what the page's policy enforced; the proxy's sampled Report-Only policy (discovery) only reports
document.addEventListener('securitypolicyviolation', e => e.disposition === 'enforce' && window.__violations.push(
  e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')));
"""


@pytest.fixture(scope="module")
def strict_site() -> Iterator[int]:
    with serve_page(PAGE, {"Content-Security-Policy": POLICY}) as port:
        yield port


def test_banner_shows_under_a_strict_nonce_csp_without_violations(start_proxy: Any, strict_site: int,
                                                                    browser: Browser, tmp_path: Any) -> None:
    proxy: Proxy = start_proxy(site_toml("strict", f"http://127.0.0.1:{strict_site}", discovery_sample=1.0))
    context = browser.new_context()
    # Requests to the real tracker hosts must never leave this machine: answer them here, and count them.
    tracker_requests: list[str] = []

    def refuse(route: Any) -> None:
        tracker_requests.append(route.request.url)
        route.fulfill(status=204, body="")

    context.route("https://**/*", refuse)
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    page.goto(proxy.url + "/", wait_until="load")
    page.wait_for_function("document.getElementById('cp-root').shadowRoot.querySelector('#cp-banner') !== null")
    banner = page.locator("#cp-banner")
    assert banner.is_visible()
    assert page.locator("[data-cp-action=accept_all]").is_visible()
    page.screenshot(path=str(tmp_path / "strict-csp-banner.png"))
    assert page.evaluate("window.siteRan") is True  # the site's own script still runs
    assert page.evaluate("window.trackerRan") is None  # the tracker snippet was held back
    assert tracker_requests == []  # and nothing was fetched from the tracker's host
    # the stylesheet applied (a fixed overlay), so the CSS was not refused either
    assert banner.evaluate("e => getComputedStyle(e).position") == "fixed"
    # Click-to-load: the embed loads (and every other embed of its service that the proxy blocked), but
    # markup dressed up as a blocked element by someone else (no stamp of this response) stays inert.
    page.locator("[data-cp-load]").first.click()
    page.wait_for_function("document.querySelector('iframe[src*=\\'youtube\\']') !== null")
    page.wait_for_timeout(300)
    assert [url for url in tracker_requests if "youtube.com/embed/strict01" in url]
    assert not [url for url in tracker_requests if "evil.example" in url]
    assert page.evaluate("window.trackerRan") is None
    assert page.evaluate("window.__violations") == []
    context.close()
