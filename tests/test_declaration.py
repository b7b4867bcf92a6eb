"""The cookie declaration: `<div data-consent-declaration>` filled by the proxy, and `/_consent/declaration`."""

from __future__ import annotations

import asyncio
import gzip
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from conftest import free_port, launch_proxy, serve_app, site_toml

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.declaration import SiteDeclaration
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.banner.wording import lifetime_text
from consentproxy.config import load_config
from consentproxy.config.model import SiteConfig
from consentproxy.consent.decision import NO_DECISION
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.header import parse_set_cookie
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.html.preview import preview
from consentproxy.html.rewriter import PagePlan, PageRewriter
from consentproxy.html.trackers import TrackerMatcher

REAL_PAGES = Path(__file__).parent / "data" / "real-pages"
#: a site whose configured texts try to break out of the markup
SITE = """
[[sites.shop.cookies]]
name = "shop_session"
category = "necessary"
purpose = "Keeps you <script>alert('purpose')</script> signed in"
lifetime = "1 year"
[sites.shop.consent.categories.statistics]
description = { en = "What we count <script>alert('category')</script>", nl = "Wat we tellen <b>vet</b>" }
[[sites.shop.services]]
name = "Analytics <i>"
category = "statistics"
provider = "Google & co"
privacy_url = "https://policies.google.com/privacy?a=1&b=2"
cookies = ["_ga"]
[[sites.shop.services]]
name = "Video"
category = "marketing"
provider = "Tube"
privacy_url = "https://tube.example/privacy"
iframes = ["tube.example/embed"]
cookies = ["tube_id"]
purpose = { en = "Plays embedded videos", nl = "Speelt ingesloten video's af" }
"""
PAGE = (b"<!doctype html><html><head><title>Privacy</title></head><body><h1>Privacy</h1><p>Our cookies:</p>"
        b"<section class='cookies' data-consent-declaration id=decl></section><p>The end.</p></body></html>")


def _site(tmp_path: Path, extra: str = SITE) -> SiteConfig:
    path = tmp_path / "consentproxy.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:8080"]\n\n' + site_toml("shop", "http://127.0.0.1:9")
                    + extra)
    return load_config(path).sites[0]


class _Pages:
    """A site's rewriting, set up once (its tracker matcher is costly to build)."""

    def __init__(self, site: SiteConfig, declaration: SiteDeclaration | None) -> None:
        self.matcher = TrackerMatcher(site.consent.services)
        self.markup = SiteMarkup(site, BannerAssets(), declaration=declaration)

    def rewrite(self, page: bytes, accept_language: bytes | None = b"en", pieces: list[int] | None = None) -> bytes:
        plan = PagePlan(self.matcher, NO_DECISION.allowed, PageInjection(self.markup, NO_DECISION, accept_language),
                        stamp="stamp")
        rewriter = PageRewriter(plan, None)
        if pieces is None:
            return rewriter.whole(page)
        out, at = [], 0
        for cut in pieces:
            out.append(rewriter.feed(page[at:cut]))
            at = cut
        out.append(rewriter.feed(page[at:]))
        return b"".join(out) + rewriter.finish()


def _rewrite(site: SiteConfig, page: bytes, accept_language: bytes | None = b"en",
             declaration: SiteDeclaration | None = None) -> bytes:
    return _Pages(site, declaration).rewrite(page, accept_language)


def _declaration_of(output: bytes) -> str:
    """What the rewriter put inside the element."""
    found = re.search(rb"data-consent-declaration id=decl>(.*?)</section>", output, re.S)
    assert found is not None, output[-3000:]
    return found.group(1).decode("ascii")


def test_the_element_is_filled_in_the_visitors_language(tmp_path: Path) -> None:
    site = _site(tmp_path)
    declaration = SiteDeclaration(site)
    en = _declaration_of(_rewrite(site, PAGE, b"en-GB,en;q=0.9", declaration))
    nl = _declaration_of(_rewrite(site, PAGE, b"nl-NL,nl;q=0.9,en;q=0.5", declaration))
    for label in ("Name", "Provider", "Purpose", "Lifetime", "Type"):
        assert f'<th scope="col">{label}</th>' in en
    for label in ("Naam", "Aanbieder", "Doel", "Bewaartermijn", "Soort"):
        assert f'<th scope="col">{label}</th>' in nl
    assert '<div class="cp-declaration" lang="en">' in en and '<div class="cp-declaration" lang="nl">' in nl
    # every category a table with a caption: name and description
    assert en.count("<caption>") == 4 and nl.count("<caption>") == 4
    assert '<span class="cp-declaration-name">Necessary</span>' in en
    assert '<span class="cp-declaration-name">Noodzakelijk</span>' in nl
    # the consent cookie, the site's declared one, a service's with its provider and the catalogue's purpose
    assert '<th scope="row">cp_consent</th>' in en and "Remembers your cookie choice." in en
    assert re.search(r'<th scope="row">_ga</th><td>Analytics &lt;i&gt; \(Google &amp; co\)</td>'
                     r"<td>Measures how visitors use this website[^<]*</td><td>2 years</td><td>First-party</td>", en)
    assert "<td>2 jaar</td>" in nl  # the database's "2 years", said in Dutch
    # an embedded service's cookie is set on its own host; its purpose in the visitor's language
    assert re.search(r'<th scope="row">tube_id</th><td>Video \(Tube\)</td><td>Plays embedded videos</td>'
                     r"<td>unknown</td><td>Third-party</td>", en)
    assert "Speelt ingesloten video&#x27;s af" in nl and "Cookie van derden (third-party)" in nl
    assert "<td>onbekend</td>" in nl
    # services with their privacy statements
    assert '<a href="https://policies.google.com/privacy?a=1&amp;b=2">Analytics &lt;i&gt;</a> (Google &amp; co)' in en
    assert '<a href="https://tube.example/privacy">Video</a> (Tube)' in en
    # the settings button the banner's script opens the settings layer with
    assert '<button type="button" class="cp-declaration-settings" data-consent-open>Cookie settings</button>' in en
    assert "Cookie-instellingen" in nl
    # the page's own lang wins, as for the banner
    assert 'lang="nl"' in _rewrite(site, PAGE.replace(b"<html>", b"<html lang=nl>"), b"en",
                                   declaration).decode()[PAGE.index(b"<section"):].split("</section>")[0]


def test_every_configured_text_is_escaped(tmp_path: Path) -> None:
    site = _site(tmp_path)
    output = _rewrite(site, PAGE, b"en", SiteDeclaration(site))
    inside = _declaration_of(output)
    assert "<script" not in inside and "<b>" not in inside and "<i>" not in inside
    assert "Keeps you &lt;script&gt;alert(&#x27;purpose&#x27;)&lt;/script&gt; signed in" in inside
    assert "What we count &lt;script&gt;alert(&#x27;category&#x27;)&lt;/script&gt;" in inside
    nl = _declaration_of(_rewrite(site, PAGE, b"nl", SiteDeclaration(site)))
    assert "Wat we tellen &lt;b&gt;vet&lt;/b&gt;" in nl
    assert inside.isascii() and nl.isascii()
    standalone = SiteDeclaration(site).page("en").decode("ascii")
    assert "<script" not in standalone and "&lt;script&gt;alert(&#x27;purpose&#x27;)" in standalone


@pytest.mark.parametrize("tag", [
    b"<div data-consent-declaration>", b"<div data-consent-declaration=''>", b'<div data-consent-declaration="">',
    b"<DIV Data-Consent-Declaration class=x>", b"<aside\ndata-consent-declaration=yes\tid='a'>",
    b'<section class="c" id="d" data-consent-declaration>', b"<div data-consent-declaration/>",
])
def test_any_element_with_the_attribute_is_filled(tmp_path: Path, tag: bytes) -> None:
    site = _site(tmp_path)
    output = _rewrite(site, b"<html><body><p>a</p>" + tag + b"</div></body></html>", b"en", SiteDeclaration(site))
    assert tag + b'<div class="cp-declaration" lang="en">' in output


@pytest.mark.parametrize("page", [
    b"<body><div data-consent-declarations></div><div data-consent-declaratio></div>",
    b"<body><noscript><div data-consent-declaration></div></noscript>",
    b"<body><!-- <div data-consent-declaration></div> --><textarea><div data-consent-declaration></textarea>",
    b"<body><script>'<div data-consent-declaration>'</script><div title='data-consent-declaration'></div>",
])
def test_what_only_looks_like_the_element_is_not_filled(tmp_path: Path, page: bytes) -> None:
    site = _site(tmp_path)
    assert b"cp-declaration" not in _rewrite(site, page, b"en", SiteDeclaration(site))


def test_every_chunk_boundary_gives_the_same_page(tmp_path: Path) -> None:
    """Split once at every byte of the page, and twice at every pair of bytes around the element."""
    site = _site(tmp_path)
    pages = _Pages(site, SiteDeclaration(site))
    whole = pages.rewrite(PAGE)
    assert b'id=decl><div class="cp-declaration"' in whole
    for cut in range(1, len(PAGE)):
        assert pages.rewrite(PAGE, pieces=[cut]) == whole, cut
    start = PAGE.index(b"<section") - 2
    end = PAGE.index(b"</section>") + 3
    for first in range(start, end):
        for second in range(first, end):
            assert pages.rewrite(PAGE, pieces=[first, second]) == whole, (first, second)
    assert pages.rewrite(PAGE, pieces=list(range(1, len(PAGE)))) == whole


def test_pages_without_the_element_are_rewritten_byte_for_byte_as_before(tmp_path: Path) -> None:
    """Real pages: the same output whether the site has a declaration or not, and it is never asked for."""
    site = _site(tmp_path)

    class Counting(SiteDeclaration):
        calls = 0

        def fragment(self, lang: str) -> str:
            Counting.calls += 1
            return super().fragment(lang)

    files = sorted(REAL_PAGES.glob("*.html.gz"))[:25]
    assert len(files) == 25
    with_declaration, without = _Pages(site, Counting(site)), _Pages(site, None)
    for path in files:
        page = gzip.decompress(path.read_bytes())
        if b"data-consent-declaration" in page:
            continue
        assert with_declaration.rewrite(page) == without.rewrite(page), path.name
    assert Counting.calls == 0


def test_the_fragment_is_rendered_once_until_the_inventory_learns_a_cookie(tmp_path: Path) -> None:
    site = _site(tmp_path)
    inventory = CookieInventory(tmp_path / "data")
    declaration = SiteDeclaration(site, inventory)
    first = declaration.fragment("en")
    assert declaration.fragment("en") is first  # a dict lookup: no rendering per request
    assert declaration.fragment("nl") is not first
    classifier = CookieClassifier(site.consent)
    for header in (b"shop_session=1; Max-Age=7200; Path=/", b"_ga=GA1.1.2.3; Max-Age=34128000; Path=/",
                   b"_fbp=fb.1.2; Path=/"):
        parsed = parse_set_cookie(header)
        assert parsed is not None
        inventory.record("shop", parsed[0], parsed[1], classifier, False)
    again = declaration.fragment("en")
    assert again is not first
    # lifetimes as really set win over the declared "1 year" and the database's "2 years"
    assert re.search(r'<th scope="row">shop_session</th><td>[^<]*</td><td>[^<]*</td><td>2 hours</td>', again)
    assert re.search(r'<th scope="row">_ga</th><td>[^<]*</td><td>[^<]*</td><td>13 months</td>', again)
    # an undeclared cookie the catalogue knows, seen set: listed, first-party, a session cookie
    assert re.search(r'<th scope="row">_fbp</th><td>Meta Pixel</td><td>[^<]*</td><td>session</td>'
                     r"<td>First-party</td>", again)
    assert re.search(r"<td>2 uur</td>", declaration.fragment("nl"))
    assert declaration.fragment("en") is again


def test_preview_shows_the_declaration_from_the_configuration(tmp_path: Path) -> None:
    site = _site(tmp_path)
    shown = preview(site, PAGE, None, NO_DECISION, b"nl").html
    assert '<th scope="row">shop_session</th>' in _declaration_of(shown)
    assert '<th scope="col">Naam</th>' in _declaration_of(shown)


def test_lifetime_words() -> None:
    assert lifetime_text("2 years", "nl") == "2 jaar"
    assert lifetime_text("Session", "de") == "Sitzung"
    assert lifetime_text("", "fr") == "inconnue"
    assert lifetime_text("until the browser closes", "en", keep_unread=True) == "until the browser closes"
    assert lifetime_text("until the browser closes", "en") == "unknown"
    assert lifetime_text("30 days", "en") == "30 days"


# -- through a real proxy process ------------------------------------------------------------------------


def _upstream_app(page: bytes) -> web.Application:
    """`/` the page with the element (it sets a cookie with Max-Age), `/plain` one without, `/split?at=N` the
    page in two writes split at byte N."""

    async def whole(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Set-Cookie": "shop_session=abc; Max-Age=5400; Path=/; HttpOnly"})

    async def plain(request: web.Request) -> web.Response:
        return web.Response(body=page.replace(b" data-consent-declaration", b""), content_type="text/html",
                            charset="utf-8")

    async def split(request: web.Request) -> web.StreamResponse:
        at = int(request.query["at"])
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await response.prepare(request)
        await response.write(page[:at])
        await asyncio.sleep(0.02)  # the two pieces reach the proxy apart
        await response.write(page[at:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", whole)
    app.router.add_get("/plain", plain)
    app.router.add_get("/split", split)
    return app


def _get(url: str, language: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept-Language": language} if language else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _stable(body: bytes) -> bytes:
    """A response with its per-response stamp taken out."""
    return re.sub(rb'data-cp-stamp="[^"]*"', b'data-cp-stamp=""', body)


def test_through_the_proxy(tmp_path: Path) -> None:
    port = free_port()
    with serve_app(_upstream_app(PAGE), port):
        proxy = launch_proxy(tmp_path, 0, site_toml("shop", f"http://127.0.0.1:{port}") + SITE)
        try:
            status, _, en = _get(proxy.url + "/", "en-US,en;q=0.8")
            assert status == 200
            assert '<th scope="col">Lifetime</th>' in _declaration_of(en)
            status, _, nl = _get(proxy.url + "/", "nl")
            nl_inside = _declaration_of(nl)
            assert '<th scope="col">Bewaartermijn</th>' in nl_inside and "&lt;b&gt;vet&lt;/b&gt;" in nl_inside
            assert b"<script>alert" not in en + nl

            # the upstream's Set-Cookie (Max-Age=5400) taught the inventory the lifetime as really set
            deadline = time.monotonic() + 10
            while "<td>2 hours</td>" not in (inside := _declaration_of(_get(proxy.url + "/", "en")[2])):
                assert time.monotonic() < deadline, inside
                time.sleep(0.1)
            assert re.search(r'<th scope="row">shop_session</th><td>[^<]*</td><td>[^<]*</td><td>2 hours</td>',
                             inside)  # 5400 s, rounded, instead of the declared "1 year"

            # the page in two pieces, split at every byte around the element: the same page
            whole = _stable(_get(proxy.url + "/split?at=1", "en")[2])
            assert _declaration_of(whole) == inside
            start, end = PAGE.index(b"<section") - 3, PAGE.index(b"</section>") + 2
            for at in range(start, end):
                assert _stable(_get(proxy.url + f"/split?at={at}", "en")[2]) == whole, at

            # a page without the element: no declaration, and the page itself as the upstream sent it
            _, _, plain = _get(proxy.url + "/plain", "en")
            assert b"cp-declaration" not in plain
            assert plain.startswith(PAGE[:PAGE.index(b"<body>")].replace(b" data-consent-declaration", b""))
            assert plain.endswith(PAGE[PAGE.index(b"<h1>"):].replace(b" data-consent-declaration", b""))

            # standalone
            status, headers, body = _get(proxy.url + "/_consent/declaration?lang=en", "nl")
            assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
            assert "default-src 'none'" in headers["content-security-policy"]
            text = body.decode("ascii")
            assert '<html lang="en">' in text and "<h1>Cookie declaration</h1>" in text
            assert '<th scope="row">shop_session</th>' in text and "<script" not in text
            assert "data-consent-open" not in text  # no banner on that page to open
            status, _, body = _get(proxy.url + "/_consent/declaration", "nl-BE,nl;q=0.9")
            assert status == 200 and b"<h1>Cookieverklaring</h1>" in body
            status, _, body = _get(proxy.url + "/_consent/declaration", "de")
            assert status == 200 and b"<h1>Cookie-Erkl&#228;rung</h1>" in body
            assert _get(proxy.url + "/_consent/declaration?lang=xx")[0] == 400
            assert _get(proxy.url + "/_consent/declaration?lang=%3Cscript%3E")[0] == 400
            head = urllib.request.Request(proxy.url + "/_consent/declaration?lang=en", method="HEAD")
            with urllib.request.urlopen(head, timeout=10) as response:
                assert response.status == 200 and response.read() == b""
        finally:
            proxy.stop(signal.SIGTERM)
