"""Issue 20 item 5: a click-to-load placeholder has its blocked iframe's box, so loading the embed moves nothing.

In chromium, through a real proxy process: each case's placeholder is measured before consent (its border
box in document coordinates, and the position of a marker right after it), then *Load* is clicked and the
loaded iframe is measured; within 1 px they must be the same. Cases: width/height attributes, inline px
sizes, a percentage width with an aspect ratio, no size at all (16:9 of the container), a centred line, a
page's responsive wrapper and a page's `iframe { max-width: 100% }`, at 1280 and 390 px wide; then the
YouTube embeds of six real pages from tests/data/real-pages (requests to other hosts aborted, as everywhere).
"""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import CHROMIUM, ROOT, Proxy, free_port, serve_app, site_toml
from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing")

YT = "https://www.youtube.com/embed/"
CASES = {
    "attributes": f'<iframe width="560" height="315" src="{YT}a1" frameborder="0" allowfullscreen></iframe>',
    "attributes-border": f'<iframe width="560" height="315" src="{YT}a2"></iframe>',
    "style-px": f'<iframe style="width: 480px; height:270px !important" src="{YT}a3" frameborder="0"></iframe>',
    "percent-ratio": f'<iframe style="width:100%;aspect-ratio: 16 / 9" src="{YT}a4" frameborder="0"></iframe>',
    "percent-attr-ratio": (f'<iframe width="100%" height="315" style="height:auto;aspect-ratio:4/3" '
                           f'src="{YT}a5"></iframe>'),
    "no-size": f'<iframe src="{YT}a6" frameborder="0"></iframe>',
    "centred": f'<p style="text-align:center">Watch: <iframe width="320" height="180" src="{YT}a7"></iframe> now</p>',
    "wrapper": f'<div class="video"><iframe width="560" height="315" src="{YT}a8" frameborder="0"></iframe></div>',
    "max-width": f'<div class="mw"><iframe width="560" height="315" src="{YT}a9" frameborder="0"></iframe></div>',
    "hostile": (f'<iframe width="560&quot;;background:url(x)" height="315px;color:red" '
                f'style="width:calc(1px);height:expression(alert(1));aspect-ratio:1/0" src="{YT}b1"></iframe>'),
}
STYLE = ("<style nonce=page>body{margin:0;font:16px/1.5 sans-serif} main{max-width:800px;margin:0 auto;padding:0 12px}"
         ".video{position:relative;padding-bottom:56.25%;height:0}"
         ".video iframe{position:absolute;top:0;left:0;width:100%;height:100%}"
         ".mw iframe{max-width:100%}</style>")
PAGE = ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>Embeds</title>{STYLE}</head><body><main><h1>Videos</h1>"
        + "".join(f'<section id="{name}"><p>Before {name}.</p>{html}<span class="after">After {name}.</span>'
                  "</section>" for name, html in CASES.items())
        + "</main></body></html>")
REAL_PAGES = ("postlight.com", "www.inquisitr.com", "www.rollingstone.com", "www.sbnation.com",
              "thefederalistpapers.org", "obamawhitehouse.archives.gov--blog")
CORPUS = ROOT / "tests" / "data" / "real-pages"

#: document coordinates of every case's placeholder (before) or iframe (after), and of the marker after it
MEASURE = """(loaded) => {
  const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
    return [r.x + scrollX, r.y + scrollY, r.width, r.height]; };
  return Array.from(document.querySelectorAll('iframe[data-cp-embed-id]')).map((frame) => {
    const id = frame.getAttribute('data-cp-embed-id');
    const holder = document.querySelector('[data-cp-embed="' + id + '"]');
    const section = frame.closest('section');
    return {id, name: section ? section.id : id, hidden: frame.hidden, holder: !!holder,
            box: box(loaded ? frame : holder), after: box(section && section.querySelector('.after'))};
  });
}"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    from conftest import launch_proxy

    bodies = {"embeds": PAGE.encode()}
    bodies.update({name: gzip.decompress((CORPUS / f"{name}.html.gz").read_bytes()) for name in REAL_PAGES})

    async def serve(request: web.Request) -> web.Response:
        body = bodies.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404, text="not found")
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if request.query.get("csp"):  # no style attributes: the proxy's sizing applies through the CSSOM
            headers["Content-Security-Policy"] = "style-src 'self' 'nonce-page'"
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    port = free_port()
    with serve_app(app, port):
        running = launch_proxy(tmp_path_factory.mktemp("embeds"), 0, site_toml("pages", f"http://127.0.0.1:{port}"))
        try:
            yield running
        finally:
            running.stop()


def _open(browser: Browser, url: str, width: int) -> tuple[Any, Page]:
    context = browser.new_context(viewport={"width": width, "height": 844})
    context.route(lambda url: not url.startswith("http://127.0.0.1"), lambda route: route.abort())
    page = context.new_page()
    page.goto(url, wait_until="load")
    return context, page


def _load_and_compare(page: Page) -> list[dict[str, Any]]:
    """Load every embed with its placeholder's button; the measurements before and after, per embed."""
    # Some real pages change their layout as they are scrolled (lazy images, sticky headers): scrolled to the
    # first placeholder before it is measured, as a visitor would be before clicking it.
    page.locator("[data-cp-load]").first.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    before = page.evaluate(MEASURE, False)
    assert before and all(item["hidden"] and item["holder"] for item in before), before
    for item in before:
        button = page.locator(f'[data-cp-load="{item["id"]}"]')
        if button.count():
            button.click()
    page.wait_for_function("!document.querySelector('[data-cp-embed]')", timeout=10_000)
    after = page.evaluate(MEASURE, True)
    assert not any(item["hidden"] for item in after), after
    return [{"name": b["name"], "before": b, "after": a} for b, a in zip(before, after, strict=True)]


def _moved(first: list[float] | None, second: list[float] | None) -> bool:
    if first is None or second is None:
        return first != second
    return any(abs(x - y) > 1 for x, y in zip(first, second, strict=True))


@pytest.mark.parametrize(("width", "query"), [(1280, ""), (390, ""), (390, "?csp=1")])
def test_loading_an_embed_moves_nothing(proxy: Proxy, browser: Browser, width: int, query: str) -> None:
    context, page = _open(browser, proxy.url + "/embeds" + query, width)
    try:
        # Nothing of the page's values is written into a style attribute but numbers and units.
        with urllib.request.urlopen(proxy.url + "/embeds" + query, timeout=10) as response:
            served = response.read().decode()
        attribute = "data-cp-box" if query else "style"  # a policy refusing style attributes: banner.js applies it
        assert (f'cp-embed-sized" {attribute}="width:560px;height:315px;border-width:2px" data-cp-embed="cp-e10"'
                in served)
        compared = _load_and_compare(page)
        assert [c["name"] for c in compared] == list(CASES)
        moved = [(c["name"], c["before"]["box"], c["after"]["box"]) for c in compared
                 if _moved(c["before"]["box"], c["after"]["box"])]
        assert moved == []
        shifted = [(c["name"], c["before"]["after"], c["after"]["after"]) for c in compared
                   if _moved(c["before"]["after"], c["after"]["after"])]
        assert shifted == []
        boxes = {c["name"]: c["after"]["box"] for c in compared}
        assert boxes["attributes"][2:] == [560, 315]  # the iframe's own size, not its container's
        assert boxes["attributes-border"][2:] == [564, 319]  # with the iframe's default 2px border
        container = min(width - 24, 800)  # <main>'s content box
        assert abs(boxes["no-size"][2] - container) <= 1 and abs(boxes["no-size"][3] - container * 9 / 16) <= 1
        if not query:  # (the policy refuses the iframes' own style attributes too, and the wrapper's has a nonce)
            assert boxes["style-px"][2:] == [480, 270]
            assert abs(boxes["percent-ratio"][3] - container * 9 / 16) <= 1
        assert abs(boxes["wrapper"][2] - container) <= 1
        assert abs(boxes["max-width"][2] - min(560, container)) <= 1
    finally:
        context.close()


@pytest.mark.parametrize("name", REAL_PAGES)
def test_loading_a_real_pages_embed_moves_nothing(proxy: Proxy, browser: Browser, name: str) -> None:
    for width in (1280, 390):
        context, page = _open(browser, f"{proxy.url}/{name}", width)
        try:
            compared = _load_and_compare(page)
            moved = [(c["name"], c["before"]["box"], c["after"]["box"]) for c in compared
                     if _moved(c["before"]["box"], c["after"]["box"])]
            assert moved == [], width
            assert all(c["after"]["box"][2] > 100 and c["after"]["box"][3] > 50 for c in compared), compared
        finally:
            context.close()
