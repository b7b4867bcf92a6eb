"""A released snippet that waits for the page's load event still runs after Accept all, which comes later.

wired.com's Chartbeat snippet chains itself onto `window.onload` (`oldonload(); loadChartbeat()`); held
until *Accept all*, it used to wait for a load event that had long passed, and Chartbeat never loaded. The
banner runs what such a snippet hands over right after it, without running the page's own onload twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Proxy, serve_page, site_toml
from playwright.sync_api import Browser

CHARTBEAT = """var _sf_async_config = {uid: 15455, domain: "shop.test"};
(function() {
  function loadChartbeat() {
    window._sf_endpt = (new Date()).getTime();
    var e = document.createElement('script');
    e.setAttribute('src', 'https://static.chartbeat.com/js/chartbeat_pub.js');
    document.body.appendChild(e);
  }
  var oldonload = window.onload;
  window.onload = (typeof window.onload != 'function') ? loadChartbeat : function() { oldonload(); loadChartbeat(); };
})();"""
LISTENER = """window.addEventListener('load', function () {
  var e = document.createElement('script'); e.src = 'https://sb.scorecardresearch.com/beacon.js';
  document.body.appendChild(e);
});"""
PAGE = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
        "<script>window.ownLoads = 0; window.onload = function () { window.ownLoads += 1; };</script></head>"
        f"<body><h1>Shop</h1><script>{CHARTBEAT}</script><script>_comscore = []; {LISTENER}</script></body></html>")


@pytest.fixture(scope="module")
def shop() -> Iterator[int]:
    with serve_page(PAGE) as port:
        yield port


def test_a_snippet_waiting_for_load_runs_after_accept_all_and_the_pages_onload_runs_once(
        start_proxy: Any, shop: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{shop}"))
    context = browser.new_context()
    requested: list[str] = []

    def vendor(route: Any) -> None:  # nothing leaves this machine
        requested.append(route.request.url)
        route.fulfill(status=200, body="", content_type="text/javascript")

    context.route(lambda url: not url.startswith("http://127.0.0.1"), vendor)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(proxy.url + "/", wait_until="load")
        assert page.locator("script[data-cp-blocked]").count() == 2
        assert page.evaluate("window.ownLoads") == 1
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        page.wait_for_function("document.querySelectorAll('script[src*=\"chartbeat_pub\"]').length === 1 && "
                               "document.querySelectorAll('script[src*=\"scorecardresearch\"]').length === 1",
                               timeout=20000)
        page.wait_for_timeout(300)
        assert sorted(requested) == ["https://sb.scorecardresearch.com/beacon.js",
                                     "https://static.chartbeat.com/js/chartbeat_pub.js"]
        assert page.evaluate("window.ownLoads") == 1, "the page's own onload ran again"
        assert page.evaluate("typeof window.onload === 'function' && window.addEventListener === "
                             "EventTarget.prototype.addEventListener")
        assert errors == []
    finally:
        context.close()
