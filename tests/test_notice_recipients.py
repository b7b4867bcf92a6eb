"""Notices that name every recipient (issue 19 items 1, 4, 5), through a real proxy process.

A test site carries GA4, the Meta pixel, Hotjar, a YouTube embed, comScore and Amazon ads (snippets copied
from real pages in ../shared/data/real-pages and tests/data/html-corpus) with nothing declared. The settings
layer lists all six under their categories in nl and en; a decision is recorded under the notice version
the page rendered, which names each as a recipient in the export, and `verify` prints them; a seventh
vendor on the page makes a new notice version, and a visitor who had accepted marketing is asked again for
marketing only. Refusals and GPC signals are recorded with the notice version shown, per category.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from conftest import Proxy, free_port, launch_proxy, serve_app, site_toml

from consentproxy.config.consent import default_categories
from consentproxy.config.model import ConsentConfig, SiteConfig
from consentproxy.config.secrets import SigningKey
from consentproxy.consent.api import ApiError, ConsentApi, Request, parse_decision
from consentproxy.consent.decision import decide as consent_decision
from consentproxy.consent.notice import SiteNotices, told_of
from consentproxy.consent.state import ConsentCodec, ConsentState
from consentproxy.cookies.enforcement import CookieEnforcement
from consentproxy.cookies.inventory import CookieInventory

ROOT = Path(__file__).resolve().parent.parent

# Real snippets: GA4 and the Meta pixel and Amazon's apstag from newrepublic.com, Hotjar's from the corpus
# page 01, the YouTube embed from postlight.com, comScore's noscript beacon from www.cnbc.com.
GA4 = """<script async src="https://www.googletagmanager.com/gtag/js?id=G-ZJN6HEHEYX&amp;l=dataLayer&amp;cx=c"></script>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}
gtag('js', new Date()); gtag('config', 'G-ZJN6HEHEYX');</script>"""
META = """<script>!function (b, e, f, g, a, c, d) { b.fbq || (a = b.fbq = function () { a.callMethod ? a.callMethod.apply(a, arguments) : a.queue.push(arguments) }, b._fbq || (b._fbq = a), a.push = a, a.loaded = !0, a.version = "2.0", a.queue = [], c = e.createElement(f), c.async = !0, c.src = g, d = e.getElementsByTagName(f)[0], d.parentNode.insertBefore(c, d)) }(window, document, "script", "https://connect.facebook.net/en_US/fbevents.js"); fbq("init", "308873179637050"); fbq("track", "PageView");</script>"""  # noqa: E501
HOTJAR = """<script>
    (function(h,o,t,j,a,r){
        h.hj=h.hj||function(){(h.hj.q=h.hj.q||[]).push(arguments)};
        h._hjSettings={hjid:3812211,hjsv:6};
        a=o.getElementsByTagName('head')[0];
        r=o.createElement('script');r.async=1;
        r.src=t+h._hjSettings.hjid+j+h._hjSettings.hjsv;
        a.appendChild(r);
    })(window,document,'https://static.hotjar.com/c/hotjar-','.js?sv=');
</script>"""
AMAZON = '<script async="" src="https://c.amazon-adsystem.com/aax2/apstag.js"></script>'
YOUTUBE = ('<iframe title="For All Mankind" width="500" height="281" src="https://www.youtube.com/embed/scTrDkwcXUU'
           '?feature=oembed" frameborder="0" allow="accelerometer; autoplay; clipboard-write; encrypted-media; '
           'gyroscope; picture-in-picture" allowfullscreen></iframe>')
COMSCORE = ('<noscript><img alt="comscore" src="https://sb.scorecardresearch.com/p?c1=2&amp;c2=1000004&amp;cv=2.0'
            '&amp;cj=1"></noscript>')
#: the seventh, added later: Outbrain's widget script (its URL from a real page's preconnect)
OUTBRAIN = '<script type="text/javascript" async="async" src="https://widgets.outbrain.com/outbrain.js"></script>'

SIX = {"statistics": {"Google Analytics", "Hotjar", "comScore"},
       "marketing": {"Meta Pixel", "YouTube", "Amazon Publisher Services"}}


# -- in-process: the cookie carries what the visitor was told, and a new vendor re-asks its category --------


def kade(**consent: Any) -> SiteConfig:
    return SiteConfig(name="kade", hosts=("kade.example",), upstream="http://127.0.0.1:9",
                      consent=ConsentConfig(categories=default_categories(), **consent))


def test_the_cookie_carries_the_vendors_named_per_category_and_a_new_one_reasks_that_category_only() -> None:
    inventory = CookieInventory()
    notices = SiteNotices(kade(), inventory)
    inventory.vendors.learn("kade", "Google Analytics", "statistics")
    inventory.vendors.learn("kade", "Meta Pixel", "marketing")
    granted = frozenset({"necessary", "statistics", "marketing"})
    shown = notices.notice("en", "opt-in")
    told = told_of(shown, granted - {"necessary"})
    assert [category for category, _ in told] == ["marketing", "statistics"]
    codec = ConsentCodec((SigningKey("k1", b"k" * 32),))
    state = ConsentState("p" * 22, granted, 1, 1, 2**40, "accept_all", told)
    again = codec.verified(codec.encode(state))
    assert again == state and len(codec.encode(state)) < 300
    assert notices.stale(granted, told) == frozenset()
    # Seen elsewhere on the site: a statistics vendor the visitor was never told of.
    assert inventory.vendors.learn("kade", "Hotjar", "statistics")
    assert notices.notice("en", "opt-in").id != shown.id
    assert notices.stale(granted, told) == {"statistics"}
    decision = consent_decision(state, False, reask=notices.stale(granted, told))
    assert decision.allowed == {"necessary", "marketing"} and decision.reask == {"statistics"}
    # A category granted when it named no vendor yet is asked again when one comes; a refusal never is.
    assert notices.stale(frozenset({"necessary", "preferences"}), told_of(shown, frozenset({"preferences"}))) \
        == frozenset()
    inventory.vendors.learn("kade", "Vimeo-like Player", "preferences")
    assert notices.stale(frozenset({"necessary", "preferences"}), told_of(shown, frozenset({"preferences"}))) \
        == {"preferences"}
    assert notices.stale(frozenset({"necessary"}), ()) == frozenset()
    # A cookie of an earlier version carries nothing of this: it decodes, and nobody is asked again for it.
    old = codec.encode(ConsentState("p" * 22, granted, 1, 1, 2**40, "accept_all"))
    assert codec.verified(old) is not None and codec.verified(old).told == ()  # type: ignore[union-attr]


def test_a_decision_names_the_version_its_banner_listed() -> None:
    """A vendor of the page's body is learnt as the page is rewritten, after its banner was written: the banner
    lists it from the held elements, and the decision is recorded under the version that names it."""
    inventory = CookieInventory()
    site = kade()
    notices = SiteNotices(site, inventory)
    codec = ConsentCodec((SigningKey("k1", b"k" * 32),))
    api = ConsentApi(site, codec, CookieEnforcement(site, codec, inventory), None, notices)  # type: ignore[arg-type]
    inventory.vendors.learn("kade", "Google Analytics", "statistics")
    rendered = notices.notice("nl", "opt-in")
    inventory.vendors.learn("kade", "YouTube", "marketing")  # in the body, after the banner
    current = notices.notice("nl", "opt-in")
    undecided = consent_decision(None, False)
    listed = Request("accept_all", frozenset({"necessary", "marketing"}), rendered.id, "nl",
                     frozenset({"Google Analytics", "YouTube"}))
    assert api.shown_notice(listed, undecided).id == current.id
    not_listed = Request("accept_all", frozenset({"necessary", "marketing"}), rendered.id, "nl",
                         frozenset({"Google Analytics"}))
    assert api.shown_notice(not_listed, undecided).id == rendered.id  # then it is what they were told
    unnamed = Request("accept_all", frozenset({"necessary"}), None, None)
    assert api.shown_notice(unnamed, undecided).content["shown"] == {"language": "nl", "regime": "opt-in"}
    assert parse_decision(orjson.dumps({"action": "reject_all", "notice": rendered.id, "lang": "en",
                                        "listed": ["YouTube"]})).listed == {"YouTube"}
    for bad in ({"notice": "x"}, {"lang": "xx"}, {"listed": "YouTube"}, {"listed": [5]}):
        with pytest.raises(ApiError):
            parse_decision(orjson.dumps({"action": "reject_all", **bad}))


def test_reask_on_new_vendor_false_keeps_the_consent_as_given() -> None:
    inventory = CookieInventory()
    codec = ConsentCodec((SigningKey("k1", b"k" * 32),))
    on = CookieEnforcement(kade(), codec, inventory, notices=SiteNotices(kade(), inventory))
    off = CookieEnforcement(kade(reask_on_new_vendor=False), codec, inventory,
                            notices=SiteNotices(kade(reask_on_new_vendor=False), inventory))
    assert on.notices is not None and off.notices is None


@dataclass
class Site:
    url: str
    seventh: bool = False

    def page(self) -> str:
        extra = OUTBRAIN if self.seventh else ""
        return (f"<!doctype html><html><head><title>Kade</title>{GA4}{META}{HOTJAR}{AMAZON}</head><body>"
                f"<h1>Welkom</h1><p>{YOUTUBE}</p>{extra}{COMSCORE}</body></html>")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    port = free_port()
    state = Site(f"http://127.0.0.1:{port}")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=state.page(), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    with serve_app(app, port):
        yield state


@pytest.fixture(scope="module")
def proxy(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = launch_proxy(tmp_path_factory.mktemp("notices"), 0, site_toml("kade", site.url))
    yield running
    running.stop(signal.SIGTERM)


@dataclass
class Page:
    status: int
    html: str
    cookies: dict[str, str]

    def root(self, name: str) -> str | None:
        found = re.search(rf'<div id="cp-root"[^>]* {name}="([^"]*)"', self.html)
        return found.group(1) if found else None

    def services(self) -> dict[str, set[str]]:
        found = re.search(r'<script type="application/json" id="cp-config">(.*?)</script>', self.html, re.S)
        assert found is not None
        config = json.loads(found.group(1))
        return {c["id"]: {s["name"] for s in c["services"]} for c in config["categories"]}


def get(proxy: Proxy, lang: str = "en", cookie: str | None = None) -> Page:
    headers = {"Host": f"127.0.0.1:{proxy.port}", "Accept": "text/html", "Accept-Language": lang}
    if cookie:
        headers["Cookie"] = cookie
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        return Page(response.status, response.read().decode(), {})
    finally:
        connection.close()


def decide(proxy: Proxy, body: dict[str, Any], cookie: str | None = None,
           headers: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    sent = {"Host": f"127.0.0.1:{proxy.port}", "Content-Type": "application/json", **(headers or {})}
    if cookie:
        sent["Cookie"] = cookie
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        connection.request("POST", "/_consent", body=json.dumps(body).encode(), headers=sent)
        response = connection.getresponse()
        data = response.read()
        assert response.status == 200, data
        set_cookie = next(v for k, v in response.getheaders() if k.lower() == "set-cookie" and "cp_consent=" in v)
        return orjson.loads(data), set_cookie.split(";", 1)[0]
    finally:
        connection.close()


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentproxy", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def export(proxy: Proxy, out: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    done = cli("export", "-c", proxy.config_path, "--site", "kade", "-o", out)
    assert done.returncode == 0, done.stderr
    verified = cli("verify", out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    manifest = orjson.loads(out.with_name(out.name + ".manifest.json").read_bytes())
    return events, manifest, verified.stdout


def test_six_vendors_nothing_declared_are_listed_recorded_and_verified(proxy: Proxy, tmp_path: Path) -> None:
    get(proxy, "nl")  # the first visitor's page teaches the proxy the vendors it holds
    for lang in ("nl", "en"):
        page = get(proxy, lang)
        listed = page.services()
        for category, names in SIX.items():
            assert names <= listed[category], (lang, category, listed[category])
        assert not (SIX["statistics"] & listed["marketing"]) and not (SIX["marketing"] & listed["statistics"])
    page = get(proxy, "en")
    notice = page.root("data-cp-notice")
    assert notice is not None and re.fullmatch(r"[0-9a-f]{64}", notice)
    state, _ = decide(proxy, {"action": "accept_all", "notice": notice, "lang": "en"})
    events, manifest, report = export(proxy, tmp_path / "kade.ndjson")
    given = next(e for e in events if e["principal"] == state["principal"])
    assert given["notice_id"] == notice  # the very version the page rendered
    content = manifest["notices"][notice]["content"]
    assert content["shown"] == {"language": "en", "regime": "opt-in"}
    recipients = {r["name"]: r for r in content["recipients"]}
    for category, names in SIX.items():
        for name in names:
            assert recipients[name]["category"] == category
            assert recipients[name]["provider"] and recipients[name]["privacy_url"].startswith("https://")
            assert name in report  # `verify` prints the recipients
    assert recipients["Google Analytics"]["provider"] == "Google Ireland Ltd."
    assert recipients["Hotjar"]["purpose"]  # in the language shown


def test_a_seventh_vendor_makes_a_new_notice_and_asks_again_for_its_category_only(
        proxy: Proxy, site: Site, tmp_path: Path) -> None:
    get(proxy, "en")
    before = get(proxy, "en")
    old_notice = before.root("data-cp-notice")
    assert old_notice is not None
    _, cookie = decide(proxy, {"action": "save_selection", "choices": {"statistics": True, "marketing": True},
                               "notice": old_notice, "lang": "en"})
    settled = get(proxy, "en", cookie)
    assert 'id="cp-banner"' not in settled.html and settled.root("data-cp-reask") is None
    site.seventh = True
    try:
        get(proxy, "en")  # an undecided visitor's page: the new vendor is held, and learnt
        page = get(proxy, "en", cookie)
        assert "Outbrain" in page.services()["marketing"]
        new_notice = page.root("data-cp-notice")
        assert new_notice != old_notice
        assert page.root("data-cp-reask") == "marketing"
        assert page.root("data-cp-granted") == "necessary statistics"  # the rest stands
        assert 'id="cp-banner"' in page.html  # asked again
        assert re.search(r'<script[^>]*data-cp-blocked="marketing"[^>]*data-cp-service="Outbrain"', page.html)
        assert not re.search(r'data-cp-service="Google Analytics"', page.html)  # statistics still runs
        assert "new notice version" in proxy.log() and "Outbrain (marketing)" in proxy.log()
        # The banner answers for marketing only: its choices keep statistics, and the cookie settles it.
        _, renewed = decide(proxy, {"action": "save_selection", "choices": {"statistics": True, "marketing": True},
                                    "notice": new_notice, "lang": "en"}, cookie)
        after = get(proxy, "en", renewed)
        assert after.root("data-cp-reask") is None and 'id="cp-banner"' not in after.html
        events, manifest, report = export(proxy, tmp_path / "kade.ndjson")
        assert "Outbrain" in report
        assert new_notice in manifest["notices"] and events[-1]["notice_id"] == new_notice
        assert "Outbrain" in {r["name"] for r in manifest["notices"][new_notice]["content"]["recipients"]}
        assert "Outbrain" not in {r["name"] for r in manifest["notices"][old_notice]["content"]["recipients"]}
    finally:
        site.seventh = False


def test_refusals_and_gpc_are_recorded_with_the_notice_shown(proxy: Proxy, tmp_path: Path) -> None:
    get(proxy, "nl")
    page = get(proxy, "nl")
    notice = page.root("data-cp-notice")
    refused, refusal_cookie = decide(proxy, {"action": "reject_all", "notice": notice, "lang": "nl"})
    gpc_page = get(proxy, "nl")
    gpc, _ = decide(proxy, {"action": "gpc_signal", "notice": gpc_page.root("data-cp-notice"), "lang": "nl"},
                    headers={"Sec-GPC": "1"})
    events, manifest, _ = export(proxy, tmp_path / "kade.ndjson")
    by_principal = {e["principal"]: e for e in events}
    for state, method in ((refused, "reject_all"), (gpc, "gpc_signal")):
        event = by_principal[state["principal"]]
        assert event["method"] == method and event["event_type"] == "refused"
        assert event["notice_id"] == notice
        assert event["choices"] == {"necessary": True, "preferences": False, "statistics": False,
                                    "marketing": False}
        names = {r["name"] for r in manifest["notices"][event["notice_id"]]["content"]["recipients"]}
        assert SIX["statistics"] | SIX["marketing"] <= names  # refused knowing whom they refused
    assert refusal_cookie.startswith("cp_consent=")  # a refusal is remembered like a consent


# -- in chromium: the settings layer, and a re-ask that keeps the other choices ------------------------------

SERVICES_BY_CATEGORY = """() => {
  const root = document.getElementById('cp-root').shadowRoot;
  const found = {};
  root.querySelectorAll('.cp-cat').forEach(function (cat) {
    const input = cat.querySelector('[data-cp-category]');
    found[input.getAttribute('data-cp-category')] = Array.from(cat.querySelectorAll('.cp-service-name'))
      .map(function (el) { return el.textContent; });
  });
  return found;
}"""
GRANTED = "() => fetch('/_consent', {cache: 'no-store'}).then(r => r.json()).then(d => d.granted)"


def browse(browser: Any, proxy: Proxy, lang: str) -> Any:
    """A context in `lang` whose requests leave the proxy's origin only to be refused (no network in tests)."""
    context = browser.new_context(locale=lang, extra_http_headers={"Accept-Language": lang})
    origin = f"http://127.0.0.1:{proxy.port}/"
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin) else route.abort())
    return context


def test_in_chromium_the_settings_layer_lists_the_six_and_a_reask_keeps_the_rest(
        browser: Any, site: Site, tmp_path: Path) -> None:
    proxy = launch_proxy(tmp_path, 1, site_toml("kade", site.url))  # its own: no vendor learnt yet
    try:
        _in_chromium(browser, proxy, site)
    finally:
        proxy.stop(signal.SIGTERM)


def _in_chromium(browser: Any, proxy: Proxy, site: Site) -> None:
    # The very first visitor: the vendors of the page's body are learnt as their page is rewritten, after its
    # banner was written; the settings layer lists them from the elements the page holds, and the decision is
    # recorded under the version that names them (no asking again on the next page).
    context = browse(browser, proxy, "en")
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{proxy.port}/")
    page.locator("#cp-banner [data-cp-action=settings]").click()
    page.wait_for_selector(".cp-cat", timeout=15_000)
    listed = page.evaluate(SERVICES_BY_CATEGORY)
    assert {"YouTube", "Amazon Publisher Services"} <= set(listed["marketing"]), listed
    page.locator("[data-cp-action=save_selection]").click()  # the necessary only
    page.wait_for_selector(".cp-cat", state="detached", timeout=15_000)
    context.close()
    for lang in ("nl", "en"):
        context = browse(browser, proxy, lang)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{proxy.port}/")
        page.locator("#cp-banner [data-cp-action=settings]").click()
        page.wait_for_selector(".cp-cat", timeout=15_000)
        listed = page.evaluate(SERVICES_BY_CATEGORY)
        for category, names in SIX.items():
            assert names <= set(listed[category]), (lang, category, listed[category])
        context.close()
    context = browse(browser, proxy, "en")
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{proxy.port}/")
    page.locator("#cp-banner [data-cp-action=accept_all]").click()
    page.wait_for_selector("#cp-banner", state="detached", timeout=15_000)
    assert set(page.evaluate(GRANTED)) == {"necessary", "preferences", "statistics", "marketing"}
    site.seventh = True
    try:
        get(proxy, "en")  # another, undecided visitor's page shows the proxy the new vendor
        page.reload()
        assert page.locator("#cp-banner").is_visible()  # asked again …
        page.locator("#cp-banner [data-cp-action=reject_all]").click()
        page.wait_for_selector("#cp-banner", state="detached", timeout=15_000)
        # … for marketing only: refusing it leaves the other choices as they were
        assert set(page.evaluate(GRANTED)) == {"necessary", "preferences", "statistics"}
        page.reload()
        assert page.locator("#cp-banner").count() == 0
    finally:
        site.seventh = False
        context.close()
