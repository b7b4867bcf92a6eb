"""What a site configures about its banner: theme, and the cookies the settings layer lists."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from conftest import free_port, launch_proxy, serve_app, site_toml

from consentproxy.banner.assets import BannerAssets, static_dir
from consentproxy.banner.cookielist import CookieList
from consentproxy.banner.theme import contrast
from consentproxy.banner.wording import lifetime_words
from consentproxy.config import ConfigError, load_config
from consentproxy.config.consent import default_categories
from consentproxy.config.model import ConsentConfig, ServiceConfig
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.header import parse_set_cookie
from consentproxy.cookies.inventory import CookieInventory

BASE = """
[server]
listen = ["127.0.0.1:8080"]

[sites.shop]
hosts = ["shop.example.nl"]
upstream = "http://127.0.0.1:9000"
"""


def load(tmp_path: Path, text: str) -> ConsentConfig:
    path = tmp_path / "consentproxy.toml"
    path.write_text(BASE + text)
    return load_config(path).sites[0].consent


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_contrast_is_the_wcag_ratio() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#1d4ed8", "#ffffff") == pytest.approx(6.70, abs=0.01)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_a_theme_is_read_and_checked(tmp_path: Path) -> None:
    theme = load(tmp_path, '[sites.shop.consent.theme]\nbackground = "#0B1F33"\ntext = "#F5F5F5"\n'
                           'accent = "#FFD166"\naccent_text = "#111111"\nfont = "Inter, \\"Open Sans\\", sans-serif"\n'
                           'radius = "0.5rem"\nposition = "top"\n').theme
    assert (theme.background, theme.text, theme.accent, theme.radius, theme.position) == (
        "#0b1f33", "#f5f5f5", "#ffd166", "0.5rem", "top")
    assert theme.font == 'Inter, "Open Sans", sans-serif'


@pytest.mark.parametrize(("table", "expected"), [
    ('text = "#999999"', "sites.shop.consent.theme.text: #999999 on background #ffffff has a contrast of 2.85:1"),
    ('accent = "#ffd166"', "sites.shop.consent.theme.accent_text: #ffffff on accent #ffd166 has a contrast of"),
    ('background = "red"', "sites.shop.consent.theme.background: expected a colour as #rgb or #rrggbb"),
    ('background = "#fff;}body{display:none"', "expected a colour as #rgb or #rrggbb"),
    ('font = "x}</style><script>"', "sites.shop.consent.theme.font: expected a font-family list"),
    ('radius = "calc(100vh)"', "sites.shop.consent.theme.radius: expected a length"),
    ('position = "left"', "sites.shop.consent.theme.position: must be one of bottom, top, center"),
    ("radius = 8", "sites.shop.consent.theme.radius: expected a text"),
    ('colour = "#fff"', "sites.shop.consent.theme.colour: unknown key"),
])
def test_a_bad_theme_is_refused_with_the_key_and_the_reason(tmp_path: Path, table: str, expected: str) -> None:
    assert expected in problems(tmp_path, f"[sites.shop.consent.theme]\n{table}\n")


def test_lifetimes_are_words_in_the_visitors_language() -> None:
    assert lifetime_words(None, "de") == "Sitzung"
    assert lifetime_words(30 * 60, "nl") == "30 minuten"
    assert lifetime_words(86400, "fr") == "1 jour"
    assert lifetime_words(395 * 86400, "en") == "13 months"
    assert lifetime_words(2 * 365 * 86400 + 86400, "nl") == "2 jaar"


def _consent() -> ConsentConfig:
    services = (ServiceConfig("Analytics", "statistics", "Google", "https://policies.google.com/privacy",
                              cookies=("_ga", "_ga_*")),)
    return ConsentConfig(categories=default_categories(), services=services)


def test_the_settings_layer_lists_configured_and_seen_cookies(tmp_path: Path) -> None:
    consent = _consent()
    inventory = CookieInventory(tmp_path)
    listing = CookieList("shop", consent, lambda lang: "Shop B.V.", inventory)
    version = listing.version
    classifier = CookieClassifier(consent)
    for header in (b"_ga=GA1.1.1.1; Max-Age=34128000; Path=/", b"_fbp=fb.1.2; Max-Age=7776000; Path=/",
                   b"cart=9; Path=/", b"zz_mystery=1; Path=/"):
        parsed = parse_set_cookie(header)
        assert parsed is not None
        inventory.record("shop", parsed[0], parsed[1], classifier, False)
    assert listing.version != version  # the banner re-renders its settings layer
    groups = listing.groups("en")
    (own,) = groups["necessary"]
    assert own["name"] == "Shop B.V." and own["cookies"][0]["name"] == "cp_consent"
    assert own["cookies"][0]["lifetime"] == "1 year"
    (analytics,) = groups["statistics"]
    ga = analytics["cookies"][0]
    assert ga["name"] == "_ga" and ga["lifetime"] == "13 months"  # as seen, not as the database says
    assert ga["purpose"].startswith("Measures")  # the catalogue's, in English
    marketing = {c["name"]: (s["provider"], c) for s in groups["marketing"] for c in s["cookies"]}
    assert marketing["_fbp"][0] == "Meta Pixel"  # undeclared, but in the catalogue
    assert marketing["_fbp"][1]["lifetime"] == "3 months"
    everything = json.dumps(groups)
    assert "zz_mystery" not in everything  # unknown: blocked, nothing to consent to
    assert "Sitzung" not in everything
    assert listing.groups("de")["necessary"][0]["cookies"][0]["purpose"] == "Speichert Ihre Cookie-Auswahl."


def test_theme_and_cookie_list_reach_the_page(tmp_path: Path) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html lang=en><head><title>t</title></head><body><p>hi</p>"
                                 "</body></html>", content_type="text/html",
                            headers={"Set-Cookie": "_ga=GA1.1.5.6; Max-Age=63072000; Path=/"})

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    sites = site_toml("shop", f"http://127.0.0.1:{port}") + (
        '[sites.shop.consent.theme]\naccent = "#0b5394"\nradius = "0"\nposition = "center"\n')
    with serve_app(app, port):
        proxy = launch_proxy(tmp_path, 0, sites)
        try:
            with urllib.request.urlopen(proxy.url + "/", timeout=10) as response:
                html = response.read().decode()
            assert re.search(r'<div id="cp-root" class="cp-root cp-pos-center"', html)
            theme_url = re.search(r'href="(/_consent/theme\.[0-9a-f]{12}\.css)"', html)
            assert theme_url, html
            with urllib.request.urlopen(proxy.url + theme_url.group(1), timeout=10) as response:
                assert response.headers["Content-Type"] == "text/css; charset=utf-8"
                assert "immutable" in response.headers["Cache-Control"]
                assert response.read() == b"#cp-root,.cp-embed.cp-embed{--cp-accent:#0b5394;--cp-radius:0}\n"
            # the page's Set-Cookie taught the inventory _ga's real lifetime: the next page lists it
            deadline = time.monotonic() + 10
            while True:
                with urllib.request.urlopen(proxy.url + "/", timeout=10) as response:
                    html = response.read().decode()
                config = json.loads(re.search(r'<script type="application/json" id="cp-config">(.*?)</script>',
                                              html, re.S).group(1))  # type: ignore[union-attr]
                names = {c["name"]: c for cat in config["categories"] for s in cat["services"] for c in s["cookies"]}
                if "_ga" in names or time.monotonic() > deadline:
                    break
            assert names["_ga"]["lifetime"] == "2 years"
            assert names["cp_consent"]["purpose"] == "Remembers your cookie choice."
        finally:
            proxy.stop(signal.SIGTERM)


def _served(assets: BannerAssets, name: str) -> bytes:
    return assets.by_path[assets.url_of[name]].identity


def test_the_banner_stays_within_its_budget_and_talks_to_nobody_else() -> None:
    """The budget is what a visitor downloads: the script as served (compacted) and the stylesheet."""
    assets = BannerAssets()
    js, css = _served(assets, "banner.js"), _served(assets, "banner.css")
    assert len(gzip.compress(js + css, 9)) <= 15 * 1024
    static = Path(__file__).parent.parent / "static" / "banner"
    js, css = (static / "banner.js").read_bytes(), (static / "banner.css").read_bytes()
    # No URL of another host in either file: fetch() only calls the consent API on the page's own origin.
    assert not re.search(rb"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", js + css, re.I)


def test_the_privacy_statement_may_differ_per_language(tmp_path: Path) -> None:
    urls = load(tmp_path, '[sites.shop.consent]\nprivacy_url = { nl = "/privacy", en = "/en/privacy" }\n').privacy_url
    assert urls == {"nl": "/privacy", "en": "/en/privacy", "de": "/privacy", "fr": "/privacy"}
    single = load(tmp_path, '[sites.shop.consent]\nprivacy_url = "https://shop.example.nl/p"\n').privacy_url
    assert set(single.values()) == {"https://shop.example.nl/p"}
    assert "sites.shop.consent.privacy_url.es: unknown language" in problems(
        tmp_path, '[sites.shop.consent]\nprivacy_url = { es = "/es/privacidad" }\n')
    assert "sites.shop.consent.privacy_url.en: expected a path" in problems(
        tmp_path, '[sites.shop.consent]\nprivacy_url = { en = "javascript:alert(1)" }\n')


def test_without_a_controller_the_banner_names_the_site_by_its_host_never_its_internal_name() -> None:
    """Issue 22 item 4: through the quick start the banner read "default uses necessary cookies"."""
    from consentproxy.banner.assets import BannerAssets
    from consentproxy.banner.markup import SiteMarkup
    from consentproxy.config.model import SiteConfig
    from consentproxy.consent.decision import NO_DECISION
    from consentproxy.consent.notice import site_notice
    from consentproxy.consent.texts import controller_name
    from consentproxy.html.csp import NoncePlan

    assert controller_name("Shop B.V.", ("www.shop.example",), "en") == "Shop B.V."
    assert controller_name("", ("www.shop.example", "shop.example"), "en") == "shop.example"
    assert controller_name("", ("*.shop.example", "127.0.0.1", "localhost", "SHOP.example."), "nl") == "shop.example"
    assert controller_name("", ("*",), "nl") == "Deze website"
    assert controller_name("", (), "fr") == "Ce site"
    consent = ConsentConfig(categories=default_categories())
    for hosts, expected in ((("www.kade.example",), "kade.example uses necessary cookies"),
                            (("*",), "This website uses necessary cookies")):
        site = SiteConfig(name="default", hosts=hosts, upstream="http://127.0.0.1:9", consent=consent)
        bundle = SiteMarkup(site, BannerAssets()).bundle("en", NO_DECISION, NoncePlan(), "stamp")
        assert expected in bundle and "default uses" not in bundle
        assert expected in site_notice(site).content["texts"]["en"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node missing (`make system-deps` installs nodejs)")
def test_the_served_banner_script_is_the_same_program(tmp_path: Path) -> None:
    """Compacting keeps banner.js valid and drops only comments and layout: node parses what is served, and
    with every space, newline and comment removed from both, the served text equals the source's."""
    source = (static_dir() / "banner" / "banner.js").read_text("utf-8")
    served = _served(BannerAssets(), "banner.js").decode("utf-8")
    assert len(served) < len(source) * 0.8  # the comments did go
    script = tmp_path / "banner.js"
    script.write_text(served)
    subprocess.run(["node", "--check", str(script)], check=True)

    def tokens(text: str) -> str:  # a comment compacting kept (its text has a quote) is dropped here too
        return re.sub(r"\s", "", re.sub(r"/\*.*?\*/|(?<![:\\])// [^\n]*", "", text, flags=re.S))

    assert tokens(source) == tokens(served)
