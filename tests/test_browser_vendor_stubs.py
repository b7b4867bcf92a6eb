"""A page's own calls into held vendors' APIs neither fail nor get lost; releasing the vendor replays them.

The page below keeps its vendor snippets (Meta Pixel, Amazon's apstag, Google Publisher Tag) in the page, and
calls those vendors and more (`_paq`, `_comscore`, `_qevents`, `_sf_async_config`, `gtag`, `ga`) from its own
script file, which the proxy leaves alone. Without the stand-ins the file throws a ReferenceError at its first
call; with them the calls queue, and the vendors' (fake) libraries find them after *Accept all*, after the
snippets' own calls, as on the page loaded directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Proxy, serve_page, site_toml
from playwright.sync_api import Browser

FB_SNIPPET = """!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;
n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;t.src=v;s=b.getElementsByTagName(e)[0];
s.parentNode.insertBefore(t,s)}(window,document,'script','https://connect.facebook.net/en_US/fbevents.js');
fbq('init', '123');
fbq('track', 'PageView');"""
APS_SNIPPET = """!function(a9,a,p,s,t,A,g){if(a[a9])return;function q(c,r){a[a9]._Q.push([c,r])}a[a9]={init:function()
{q("i",arguments)},fetchBids:function(){q("f",arguments)},setDisplayBids:function(){},targetingKeys:function()
{return[]},_Q:[]};A=p.createElement(s);A.async=!0;A.src=t;g=p.getElementsByTagName(s)[0];
g.parentNode.insertBefore(A,g)}("apstag",window,document,"script","https://c.amazon-adsystem.com/aax2/apstag.js");
apstag.init({pubID: 'snippet'});"""
MATOMO_SNIPPET = """var _paq = window._paq = window._paq || [];
_paq.push(['setSiteId', '1']);
(function() { var d=document, g=d.createElement('script'), s=d.getElementsByTagName('script')[0];
g.async=true; g.src='https://cdn.matomo.cloud/shop.matomo.cloud/matomo.js'; s.parentNode.insertBefore(g,s); })();"""
COMSCORE_SNIPPET = """var _comscore = _comscore || [];
_comscore.push({ c1: "2", c2: "snippet" });
(function() { var s = document.createElement("script"), el = document.getElementsByTagName("script")[0];
s.async = true; s.src = "https://sb.scorecardresearch.com/cs/1/beacon.js"; el.parentNode.insertBefore(s, el); })();"""
QUANTCAST_SNIPPET = """var _qevents = _qevents || [];
(function() { var elem = document.createElement('script'); elem.src = "https://secure.quantserve.com/quant.js";
elem.async = true; var scpt = document.getElementsByTagName('script')[0]; scpt.parentNode.insertBefore(elem, scpt);
})();
_qevents.push({ qacct: "p-snippet" });"""
GA_SNIPPET = """(function(i,s,o,g,r,a,m){i['GoogleAnalyticsObject']=r;i[r]=i[r]||function(){
(i[r].q=i[r].q||[]).push(arguments)},i[r].l=1*new Date();a=s.createElement(o),
m=s.getElementsByTagName(o)[0];a.async=1;a.src=g;m.parentNode.insertBefore(a,m)
})(window,document,'script','https://www.google-analytics.com/analytics.js','ga');
ga('create', 'UA-1-1', 'auto');
ga('send', 'pageview');"""
CHARTBEAT_SNIPPET = """var _sf_async_config = _sf_async_config || {};
_sf_async_config.uid = 1;
(function() { var e = document.createElement('script'); e.src = '//static.chartbeat.com/js/chartbeat.js';
document.head.appendChild(e); })();"""
GTAG_SNIPPET = """window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('js', new Date());
gtag('config', 'G-1');"""
SNIPPETS = (FB_SNIPPET, APS_SNIPPET, "var googletag = googletag || {}; googletag.cmd = googletag.cmd || [];",
            MATOMO_SNIPPET, COMSCORE_SNIPPET, QUANTCAST_SNIPPET, GA_SNIPPET, CHARTBEAT_SNIPPET, GTAG_SNIPPET)
#: the page's own calls, from its own file at the end of the page
APP = """fbq('track', 'AddToCart');
apstag.init({pubID: 'page'});
apstag.fetchBids({slots: []}, function () {});
googletag.cmd.push(function () { window.gptRan = (window.gptRan || 0) + 1; });
_paq.push(['trackPageView']);
_comscore.push({c1: '2', c2: 'page'});
_qevents.push({qacct: 'p-page'});
_sf_async_config.sections = 'page';
ga('send', 'event');
gtag('event', 'page_app');
document.body.setAttribute('data-app', 'ran');"""
#: the vendors' snippets (GPT's usual `cmd` set-up among them), GPT itself, the page's own file at the end
PAGE = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
        + "".join(f"<script>{snippet}</script>" for snippet in SNIPPETS)
        + "<script async src='https://securepubads.g.doubleclick.net/tag/js/gpt.js'></script>"
        "<script async src='https://www.googletagmanager.com/gtag/js?id=G-1'></script></head>"
        "<body><h1>Shop</h1><script src='/app.js'></script></body></html>")


def _recorder(queue: str, seen: str, item: str) -> str:
    """A fake library: records what was queued for it, then what is pushed later (`item` formats `c`)."""
    return (f"window.{seen} = Array.from({queue}, function (c) {{ return {item}; }});"
            f"{queue}.push = function (c) {{ {seen}.push({item}); }};")


#: what the vendors' libraries do with what was queued for them, recorded where the test can read it
FAKE_LIBRARIES = {
    "https://connect.facebook.net/en_US/fbevents.js":
        "var f = function (a) { return Array.from(a).join(':'); }; window.fbCalls = Array.from(fbq.queue, f);"
        "fbq.callMethod = function () { fbCalls.push(f(arguments)); };",
    "https://c.amazon-adsystem.com/aax2/apstag.js": _recorder("apstag._Q", "apsCalls", "c[0] + ':' + c[1][0].pubID"),
    "https://securepubads.g.doubleclick.net/tag/js/gpt.js":
        "googletag.cmd.forEach(function (f) { f(); }); googletag.cmd = {push: function (f) { f(); }};",
    "https://cdn.matomo.cloud/shop.matomo.cloud/matomo.js": _recorder("_paq", "paqCalls", "c[0]"),
    "https://sb.scorecardresearch.com/cs/1/beacon.js": _recorder("_comscore", "csCalls", "c.c2"),
    "https://secure.quantserve.com/quant.js": _recorder("_qevents", "qCalls", "c.qacct"),
    "https://www.google-analytics.com/analytics.js":
        "var h = function (a) { return a[0] + ':' + a[1]; }; window.gaCalls = Array.from(ga.q, h);"
        "ga = function () { gaCalls.push(h(arguments)); };",
    # read once the page has loaded, as Chartbeat does (on the page loaded directly it may arrive before /app.js)
    "http://static.chartbeat.com/js/chartbeat.js":
        "var r = function () { window.cbSeen = _sf_async_config.uid + ':' + _sf_async_config.sections; };"
        "if (document.readyState === 'complete') r(); else window.addEventListener('load', r);",
}
#: what each library saw, on the page loaded directly and, after Accept all, through the proxy
EXPECTED = {
    "fbCalls": ["init:123", "track:PageView", "track:AddToCart"],
    "apsCalls": ["i:snippet", "i:page", "f:undefined"],
    "paqCalls": ["setSiteId", "trackPageView"],
    "csCalls": ["snippet", "page"],
    "qCalls": ["p-snippet", "p-page"],
    "gaCalls": ["create:UA-1-1", "send:pageview", "send:event"],
    "gptRan": 1,
}
_DONE = " && ".join(f"window.{name} && {name}.length === {len(value)}" for name, value in EXPECTED.items()
                    if isinstance(value, list)) + " && window.gptRan && window.cbSeen"


def _seen(page: Any) -> dict[str, Any]:
    return {name: page.evaluate(f"window.{name}") for name in EXPECTED}


@pytest.fixture(scope="module")
def shop() -> Iterator[int]:
    with serve_page(PAGE, files={"/app.js": (APP, "text/javascript")}) as port:
        yield port


def _open(browser: Browser, url: str) -> tuple[Any, Any, list[str], list[str]]:
    context = browser.new_context()
    requested: list[str] = []
    errors: list[str] = []

    def vendor(route: Any) -> None:  # nothing leaves this machine
        url = route.request.url
        requested.append(url)
        body = FAKE_LIBRARIES.get(url)
        if body is None:
            route.abort()
        else:
            route.fulfill(status=200, body=body, content_type="text/javascript")

    context.route(lambda url: not url.startswith("http://127.0.0.1"), vendor)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    return context, page, requested, errors


def test_the_pages_own_calls_queue_while_held_and_replay_after_the_snippets_calls(
        start_proxy: Any, shop: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{shop}"))
    context, page, requested, errors = _open(browser, proxy.url + "/")
    try:
        held = page.locator("script[data-cp-blocked]").count()
        assert held == len(SNIPPETS) + 2, "the vendors' snippets are not held"
        assert page.get_attribute("body", "data-app") == "ran", errors
        assert errors == []
        assert requested == []
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        page.wait_for_function(_DONE, timeout=20000)
        assert _seen(page) == EXPECTED
        assert page.evaluate("window.cbSeen") == "1:page"
        assert page.evaluate("fbq.cp === undefined && apstag.cp === undefined"), "our stand-ins are still in place"
        assert errors == []
    finally:
        context.close()


def test_the_page_loaded_directly_makes_the_same_calls(shop: int, browser: Browser) -> None:
    """The reference: the fake libraries see the same calls, in the same order, without the proxy."""
    context, page, _, errors = _open(browser, f"http://127.0.0.1:{shop}/")
    try:
        page.wait_for_function(_DONE, timeout=20000)
        assert _seen(page) == EXPECTED
        assert page.evaluate("window.cbSeen") == "1:page"
        assert errors == []
    finally:
        context.close()


def test_granted_vendors_get_no_stand_ins(start_proxy: Any, shop: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{shop}"))
    context, page, _, _ = _open(browser, proxy.url + "/")
    try:
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        page.wait_for_function(_DONE, timeout=20000)
        again = context.new_page()
        again.goto(proxy.url + "/", wait_until="load")
        assert again.locator("script[data-cp-blocked]").count() == 0
        again.wait_for_function(_DONE, timeout=20000)
        assert _seen(again) == EXPECTED
        assert again.evaluate("typeof fbq.cp") == "undefined"
    finally:
        context.close()
