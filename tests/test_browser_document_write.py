"""A released inline script that calls document.write after the page was parsed must not wipe the page.

The classic ga.js snippet (and many ad snippets) write their tag with document.write. Blocked while the
page loads and released after *Accept all*, such a call would replace the whole document; the banner
collects what it writes and inserts it after the script, where the parser would have put it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Proxy, serve_page, site_toml
from playwright.sync_api import Browser

PARAGRAPHS = 40
SNIPPET = """var gaJsHost = (("https:" == document.location.protocol) ? "https://ssl." : "http://www.");
document.write(unescape("%3Cscript src='" + gaJsHost
  + "google-analytics.com/ga.js' type='text/javascript'%3E%3C/script%3E"));
document.writeln("<p id=written>written by the snippet</p>");"""
PAGE = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Old snippet</title></head><body>"
        + "".join(f"<p class=site>site content {n}</p>" for n in range(PARAGRAPHS))
        + f"<script type='text/javascript'>{SNIPPET}</script><p class=site>after the snippet</p></body></html>")


@pytest.fixture(scope="module")
def old_site() -> Iterator[int]:
    with serve_page(PAGE) as port:
        yield port


def test_accept_all_runs_a_document_write_snippet_without_wiping_the_page(start_proxy: Any, old_site: int,
                                                                         browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("old", f"http://127.0.0.1:{old_site}"))
    context = browser.new_context()
    requested: list[str] = []

    def refuse(route: Any) -> None:  # nothing leaves this machine
        requested.append(route.request.url)
        route.fulfill(status=200, body="window.gaRan = true;", content_type="text/javascript")

    context.route("http://www.google-analytics.com/**", refuse)
    context.route("https://ssl.google-analytics.com/**", refuse)
    try:
        page = context.new_page()
        page.goto(proxy.url + "/", wait_until="load")
        assert page.locator("script[data-cp-blocked]").count() == 1, "the snippet is not blocked"
        assert requested == []
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        page.wait_for_function("window.gaRan === true", timeout=20000)
        assert requested == ["http://www.google-analytics.com/ga.js"]
        assert page.locator("p.site").count() == PARAGRAPHS + 1, "the page was wiped"
        # what the snippet wrote stands after it, before what followed it in the page
        order = page.evaluate("""Array.from(document.querySelectorAll('p#written, p.site'))
                                   .slice(-2).map(p => p.id || p.textContent)""")
        assert order == ["written", "after the snippet"]
        assert page.evaluate("typeof document.write === 'function' && !Object.hasOwn(document, 'write')")
    finally:
        context.close()
