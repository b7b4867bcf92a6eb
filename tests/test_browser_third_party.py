"""`third_party = "hold"` in a real browser: real pages through a proxy process, in headless chromium.

Issue 16's acceptance: with hold, a page makes no request to any host other than its own origin and the
functional list before consent; after *Accept all* the hosts that were held are requested. Each page of
tests/data/real-pages is served by a local upstream (load_tests/browser_leaks.py's) at 127.0.0.1, so every
host the page names -- its own CDN too -- is another host here; every request to another host is recorded and
aborted, so nothing leaves the machine. Besides the functional list, a host whose catalogued service is of a
category granted without consent (a consent platform's, "necessary") may load: its rule decides, as for any
tracker.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import CHROMIUM, ROOT, free_port, launch_proxy, serve_app, site_toml

from consentproxy.html.functional import builtin_functional
from consentproxy.html.trackers import TrackerMatcher, split_url

sys.path.insert(0, str(ROOT / "load_tests"))
import browser_leaks

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)"),
    pytest.mark.timeout(300),
]

#: pages with many third parties of every kind: scripts, stylesheets, fonts, images, iframes, preloads
PAGES = ["newrepublic.com--minutes", "hellogiggles.com", "www.vulture.com--content-test", "www.theguardian.com",
         "timesofindia.indiatimes.com"]
#: pages whose own scripts load unknown hosts the server cannot see (onerror handlers, URLs built in code), a
#: held image with a background in its style, and a <base href> to another host: only "before consent" is
#: judged (what their released elements load depends on their own scripts)
BEFORE_ONLY = ["www.gizmodo.jp", "www.yahoo.com", "genius.com", "www.wired.com--content-test",
               "www.reddit.com--image"]
SETTLE = 1.5
ACCEPT_WAIT = 20.0
MATCHER = TrackerMatcher(())
HELD = "unknown third party: "


def allowed_before_consent(url: str) -> bool:
    """On the functional list, or a catalogued service of the necessary category."""
    if builtin_functional(url) is not None:
        return True
    found = MATCHER.url("scripts", url) or MATCHER.url("pixels", url) or MATCHER.host(url)
    return found is not None and found.category == "necessary"


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser-third-party")
    port = free_port()
    with serve_app(browser_leaks.upstream_app(PAGES + BEFORE_ONLY), port):
        proxy = launch_proxy(base, 0, site_toml("pages", f"http://127.0.0.1:{port}", third_party="hold"))
        try:
            yield proxy.url
        finally:
            proxy.stop()


def load(browser: Any, url: str) -> dict[str, Any]:
    """The page without a decision, then Accept all: requests to other hosts in each phase, and what was held."""
    origin = urlsplit(url).netloc
    seen: list[tuple[str, str]] = []  # url, phase
    phase = {"now": "before"}
    context = browser.new_context(service_workers="block")
    try:
        def route(route: Any) -> None:
            parts = urlsplit(route.request.url)
            if parts.scheme in ("http", "https") and parts.netloc != origin:
                seen.append((route.request.url, phase["now"]))
                route.abort()
            else:
                route.continue_()

        context.route("**/*", route)
        page = context.new_page()
        with contextlib.suppress(Exception):  # a page whose load event never fires is judged all the same
            page.goto(url, wait_until="load", timeout=45_000)
        page.wait_for_timeout(SETTLE * 1000)
        held = page.evaluate("""() => Array.from(document.querySelectorAll('[data-cp-service]'))
            .filter(el => el.getAttribute('data-cp-service').startsWith('unknown third party: '))
            .map(el => [el.localName, el.getAttribute('data-cp-service'), el.getAttribute('rel') || '',
                        el.getAttribute('loading') || ''])""")
        phase["now"] = "accept"
        button = page.locator("#cp-banner [data-cp-action=accept_all]")
        assert button.count() > 0, "no banner"
        try:
            button.first.click(timeout=5000)
        except Exception:  # covered by the page's own overlay: a script click decides all the same
            button.first.evaluate("b => b.click()")
        expected = {service.removeprefix(HELD) for name, service, rel, loading in held if _loads_on_release(name, rel,
                                                                                                            loading)}
        deadline = time.monotonic() + ACCEPT_WAIT
        decided = False
        while time.monotonic() < deadline and not (decided and expected <= _hosts(seen, "accept")):
            page.wait_for_timeout(200)
            decided = any(cookie["name"] == "cp_consent" for cookie in context.cookies())
    finally:
        context.close()
    return {"seen": seen, "held": held, "expected": expected, "decided": decided}


def _loads_on_release(name: str, rel: str, loading: str) -> bool:
    """Whether a released element is requested at once: a script, a stylesheet, an image or frame not lazy."""
    if name in ("img", "iframe"):
        return loading.lower() != "lazy"
    return name == "script" or (name == "link" and "stylesheet" in rel.lower().split())


def _hosts(seen: list[tuple[str, str]], phase: str) -> set[str]:
    return {host for url, when in list(seen) if when == phase and (host := split_url(url)[1])}


@pytest.mark.parametrize("name", PAGES)
def test_hold_requests_only_functional_hosts_before_consent_and_the_held_ones_after_accept_all(
        browser: Any, proxy_url: str, name: str) -> None:
    result = load(browser, f"{proxy_url}/{name}")
    before = [url for url, phase in result["seen"] if phase == "before"]
    elsewhere = sorted({url[:160] for url in before if not allowed_before_consent(url)})
    assert elsewhere == [], f"{name}: requested before consent"
    held_hosts = {service.removeprefix(HELD) for _, service, _, _ in result["held"]}
    assert len(held_hosts) >= 3, f"{name}: the page holds too little to say anything: {held_hosts}"
    assert result["decided"], f"{name}: Accept all recorded no decision"
    after = _hosts(result["seen"], "accept")
    assert result["expected"], f"{name}: nothing held that loads at once when released"
    assert result["expected"] <= after, f"{name}: held, never requested after Accept all: " \
                                        f"{sorted(result['expected'] - after)}"


@pytest.mark.parametrize("name", BEFORE_ONLY)
def test_hold_requests_only_functional_hosts_before_consent_where_page_scripts_build_the_urls(
        browser: Any, proxy_url: str, name: str) -> None:
    result = load(browser, f"{proxy_url}/{name}")
    own = urlsplit(proxy_url).hostname
    before = [url for url, phase in result["seen"] if phase == "before"]
    # a script that builds "//" + location.hostname + path drops the harness's port: the page's own origin
    elsewhere = sorted({url[:160] for url in before
                        if not allowed_before_consent(url) and urlsplit(url).hostname != own})
    assert elsewhere == [], f"{name}: requested before consent"
    assert result["decided"], f"{name}: Accept all recorded no decision"
