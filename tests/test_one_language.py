"""One language per view: every text of the banner's two layers and of the cookie declaration is in the
visitor's language (issue 19, item 2).

A site carrying many catalogued trackers, with nothing declared, whose inventory knows their cookies and
cookies only the Open Cookie Database knows (English descriptions, free-text retention periods). Every text
node and visible attribute (aria-label, title, alt, placeholder) of the first layer, the settings layer and
the declaration is walked in nl, en, de and fr, and checked with small lists of each language's frequent
function words: none of another language may occur, leaving out proper names (services, providers, cookie
names, URLs). Rendered in-process, and once through a real proxy process in chromium.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import urllib.request
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import free_port, launch_proxy, serve_app, site_toml

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.declaration import SiteDeclaration
from consentproxy.banner.markup import SiteMarkup
from consentproxy.banner.wording import lifetime_text, lifetime_words
from consentproxy.config import load_config
from consentproxy.config.model import LANGUAGES, ConsentConfig, SiteConfig
from consentproxy.consent.decision import NO_DECISION
from consentproxy.cookies.classify import OCD_CATEGORIES, CookieClassifier, builtin_services, catalogued
from consentproxy.cookies.header import parse_set_cookie
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.html.csp import NoncePlan

ROOT = Path(__file__).resolve().parent.parent
#: frequent function words per language; a word may be in two lists (nl/fr "de", nl/de "die"): it is then
#: foreign to neither of them
STOP_WORDS: dict[str, frozenset[str]] = {
    code: frozenset(words.split()) for code, words in {
        "nl": "de het een en van voor met niet wordt worden deze uw zijn wij bij naar ook dat om hoe op is die wie "
              "te pas als of",
        "en": "the and of for with to is are this your by which used from that how it on be",
        "de": "der die das und für mit nicht ist sind wird werden ein eine zu auf von dem den ihr ihre ihren oder sie "
              "wie des",
        "fr": "le la les et des pour avec ne pas du une est sont sur vous votre vos qui dans au aux ce de en on",
    }.items()
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_URL = re.compile(r"(?:https?:)?//\S+|/_consent\S*")
#: the six vendors of the issue's acceptance test, and more from the catalogue
VENDORS = ("Google Analytics", "Meta Pixel", "Hotjar", "YouTube", "comScore", "Amazon Publisher Services",
           "Google Ads", "Microsoft Advertising (Bing UET)", "Microsoft Clarity", "LinkedIn Insight Tag",
           "TikTok Pixel", "Pinterest Tag", "Criteo", "Matomo", "Vimeo", "Intercom")
PAGE_TRACKERS = (
    '<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABC123"></script>'
    "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
    "gtag('js',new Date());gtag('config','G-ABC123');</script>"
    "<script>!function(f,b,e,v,n,t,s){}(window,document,'script','https://connect.facebook.net/en_US/fbevents.js');"
    "fbq('init','1234');</script>"
    '<script src="https://static.hotjar.com/c/hotjar-123.js?sv=6"></script>'
    '<iframe src="https://www.youtube.com/embed/abc" title="v"></iframe>'
    '<script src="https://sb.scorecardresearch.com/beacon.js"></script>'
    '<script src="https://c.amazon-adsystem.com/aax2/apstag.js"></script>'
)


def foreign_words(text: str, lang: str) -> list[str]:
    """The words of `text` that are function words of another language and not of `lang`."""
    own = STOP_WORDS[lang]
    others = frozenset().union(*(words for code, words in STOP_WORDS.items() if code != lang)) - own
    return [word for word in _WORD.findall(text.lower()) if word in others]


def own_words(text: str, lang: str) -> int:
    return sum(word in STOP_WORDS[lang] for word in _WORD.findall(text.lower()))


def without_names(text: str, names: Iterable[str]) -> str:
    """`text` without the proper names in it (longest first) and URLs."""
    text = _URL.sub(" ", text)
    for name in names:
        if name in text:
            text = text.replace(name, " ")
    return text


class _Texts(HTMLParser):
    """Every text node and visible attribute of a document, with the language of its nearest `lang`."""

    VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                      "wbr"))
    ATTRIBUTES = ("aria-label", "title", "alt", "placeholder")

    def __init__(self, lang: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = [("", lang)]
        self.found: list[tuple[str, str]] = []
        self.hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        lang = values.get("lang") or self.stack[-1][1]
        for name in self.ATTRIBUTES:
            if values.get(name):
                self.found.append((lang, str(values[name])))
        if tag in ("script", "style"):
            self.hidden += 1
        if tag not in self.VOID:
            self.stack.append((tag, lang))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.found.append((self.stack[-1][1], data.strip()))


def html_texts(html: str, lang: str) -> list[tuple[str, str]]:
    parser = _Texts(lang)
    parser.feed(html)
    parser.close()
    return parser.found


def settings_texts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """What banner.js shows of its configuration in the settings layer (see buildModal, buildService)."""
    lang = config["lang"]
    found = [(lang, text) for text in config["texts"].values()]
    for category in config["categories"]:
        found += [(lang, category["label"]), (lang, category["description"])]
        for service in category["services"]:
            found += [(lang, service["name"]), (lang, service["provider"])]
            for cookie in service["cookies"]:
                found += [(lang, cookie["name"]), (cookie.get("lang") or lang, cookie["purpose"]),
                          (lang, cookie["lifetime"])]
    return found


def problems(texts: list[tuple[str, str]], names: Iterable[str]) -> list[str]:
    """Each text with a function word of another language than its own, after its proper names are gone."""
    ordered = sorted({n for n in names if len(n) > 1}, key=len, reverse=True)
    found = []
    for lang, text in texts:
        bad = foreign_words(without_names(text, ordered), lang)
        if bad:
            found.append(f"[{lang}] {text!r}: {', '.join(sorted(set(bad)))}")
    return found


# -- the site ------------------------------------------------------------------------------------------------

def _database_only(per_category: int = 8) -> list[str]:
    """Cookie names only the Open Cookie Database knows (not the catalogue), a few per category, in file order."""
    chosen: dict[str, list[str]] = {}
    path = ROOT / "consentproxy" / "data" / "open-cookie-database.csv"
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category = OCD_CATEGORIES.get(row["Category"])
            name = row["Cookie / Data Key name"].strip()
            if category is None or not re.fullmatch(r"[A-Za-z0-9_.-]{3,40}", name) or row["Wildcard match"] == "1":
                continue
            if catalogued(name) is None and len(chosen.setdefault(category, [])) < per_category \
                    and name not in chosen[category]:
                chosen[category].append(name)
    return [name for names in chosen.values() for name in names]


def _catalogue_cookies() -> list[str]:
    services = {service.name: service for service in builtin_services()}
    names = []
    for vendor in VENDORS:
        names += [spec.rstrip("*") + ("1" if spec.endswith("*") else "") for spec in services[vendor].cookies][:6]
    return names


COOKIES = _catalogue_cookies() + _database_only()


def _site(tmp_path: Path, consent: str = "", extra: str = "") -> SiteConfig:
    path = tmp_path / "consentproxy.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:8080"]\n\n' + site_toml("shop", "http://127.0.0.1:9")
                    + (f"[sites.shop.consent]\n{consent}\n" if consent else "") + extra)
    return load_config(path).sites[0]


def _inventory(site: SiteConfig, tmp_path: Path) -> CookieInventory:
    inventory = CookieInventory(tmp_path / "data")
    classifier = CookieClassifier(site.consent)
    for index, name in enumerate(COOKIES):
        # lifetimes of every size, and session cookies
        lifetime = ("", "; Max-Age=86400", "; Max-Age=63072000", "; Max-Age=34128000", "; Max-Age=1800")[index % 5]
        parsed = parse_set_cookie(f"{name}=1; Path=/{lifetime}".encode())
        assert parsed is not None, name
        inventory.record("shop", parsed[0], parsed[1], classifier, True, before_consent=True)
    return inventory


def _names(declaration: SiteDeclaration) -> set[str]:
    """The proper names a view may show in any language: services, providers, cookie names."""
    names = set(COOKIES) | {declaration.site.consent.cookie_name}
    for lang in LANGUAGES:
        for services in declaration.cookie_list.groups(lang, detailed=True).values():
            for service in services:
                names |= {service["name"], service["provider"]} | {c["name"] for c in service["cookies"]}
    for service in builtin_services():
        names |= {service.name, service.provider}
    return names - {""}


def _views(site: SiteConfig, inventory: CookieInventory, lang: str) -> dict[str, list[tuple[str, str]]]:
    """The texts of the first layer (and the reopen control), the settings layer, the declaration (inside a
    page and on its own), rendered by the proxy's own code."""
    declaration = SiteDeclaration(site, inventory)
    markup = SiteMarkup(site, BannerAssets(), inventory, declaration=declaration)
    bundle = markup.bundle(lang, NO_DECISION, NoncePlan(), "stamp")
    found = re.search(r'<script type="application/json" id="cp-config">(.*?)</script>', bundle)
    assert found is not None
    config = json.loads(found.group(1))
    assert config["lang"] == lang
    return {"first layer": html_texts(bundle, lang), "settings layer": settings_texts(config),
            "declaration": html_texts(declaration.fragment(lang), lang),
            "declaration page": html_texts(declaration.page(lang).decode("ascii"), lang)}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_of_both_layers_and_the_declaration_is_in_the_visitors_language(tmp_path: Path,
                                                                                  lang: str) -> None:
    site = _site(tmp_path)
    inventory = _inventory(site, tmp_path)
    names = _names(SiteDeclaration(site, inventory))
    views = _views(site, inventory, lang)
    everything = [text for texts in views.values() for _, text in texts]
    # the site really carries the vendors and database cookies: they are listed
    for cookie in COOKIES:
        assert cookie in everything, cookie
    for view, texts in views.items():
        assert len(texts) >= 8, view
        assert problems(texts, names) == [], view
        # and the view is in `lang`, not empty of words
        assert sum(own_words(without_names(text, names), lang) for _, text in texts) >= 5, view


@pytest.mark.parametrize("lang", LANGUAGES)
def test_services_declared_without_purposes_or_lifetimes_are_said_in_the_visitors_language(
        tmp_path: Path, lang: str) -> None:
    """Services a site names with their cookies only: purposes from the catalogue or the category, and the
    database's free-text retention periods ("2 years", "Session", "1 Year") said in the visitor's words."""
    classifier = CookieClassifier(ConsentConfig())
    tables = "".join(f'[[sites.shop.services]]\nname = "Vendor {index}"\n'
                     f'category = "{classifier.classify(name).category}"\ncookies = ["{name}"]\n'
                     for index, name in enumerate(COOKIES))
    site = _site(tmp_path, extra=tables)
    views = _views(site, CookieInventory(tmp_path / "data"), lang)  # nothing seen: the database's lifetimes
    names = _names(SiteDeclaration(site)) | {f"Vendor {index}" for index in range(len(COOKIES))}
    for view, texts in views.items():
        assert problems(texts, names) == [], view
    lifetimes = {text for _, text in views["settings layer"]}
    assert lifetime_words(63_072_000, lang) in lifetimes  # "2 years" of the database, in `lang`


def test_database_originals_are_shown_only_when_asked_and_marked_english(tmp_path: Path) -> None:
    site = _site(tmp_path, consent='database_purposes = "original"')
    inventory = _inventory(site, tmp_path)
    names = _names(SiteDeclaration(site, inventory))
    views = _views(site, inventory, "nl")
    marked = [text for view in views.values() for lang, text in view if lang == "en"]
    assert len(marked) >= 8  # the database's English descriptions, each marked lang="en"
    for view, texts in views.items():
        assert problems(texts, names) == [], view
    declaration = SiteDeclaration(site, inventory).fragment("nl")
    assert re.search(r'<td lang="en">[^<]+</td>', declaration)
    # the same page without its marks: the check finds the English
    unmarked = html_texts(declaration.replace(' lang="en"', ""), "nl")
    assert problems(unmarked, names)
    # category purposes by default: nothing marked
    default = _site(tmp_path)
    assert 'lang="en"' not in SiteDeclaration(default, _inventory(default, tmp_path)).fragment("nl")


def test_the_check_finds_another_language() -> None:
    assert foreign_words("ID used to identify users", "nl") == ["used", "to"]
    assert foreign_words("Speichert Ihre Cookie-Auswahl.", "en") == ["ihre"]
    assert foreign_words("Mémorise votre choix", "de") == ["votre"]
    assert foreign_words("Onthoudt uw keuze over cookies.", "fr") == ["uw"]
    assert foreign_words("Onthoudt uw keuze over cookies.", "nl") == []
    assert problems([("nl", "Aanbieder: The Trade Desk")], ["The Trade Desk"]) == []
    assert problems([("nl", "2 years")], []) == [] and lifetime_text("2 years", "nl") == "2 jaar"


# -- through a real proxy, in chromium --------------------------------------------------------------------------

#: every text node and visible attribute, in the document and in open shadow roots, with its nearest lang
_WALK = """() => {
  const out = [];
  const attrs = ['aria-label', 'title', 'alt', 'placeholder'];
  function langOf(node) {
    let el = node.nodeType === 1 ? node : node.parentElement;
    while (el) {
      if (el.hasAttribute && el.hasAttribute('lang')) return el.getAttribute('lang');
      el = el.parentElement || (el.getRootNode() && el.getRootNode().host) || null;
    }
    return '';
  }
  function walk(node) {
    if (node.nodeType === 3) {
      const p = node.parentElement;
      const shown = !(p && /^(SCRIPT|STYLE|TEMPLATE)$/.test(p.tagName));
      if (node.data.trim() && shown) out.push([langOf(node), node.data.trim()]);
      return;
    }
    if (node.nodeType === 1) {
      for (const a of attrs) if (node.getAttribute(a)) out.push([langOf(node), node.getAttribute(a)]);
      if (node.shadowRoot) walk(node.shadowRoot);
    }
    for (const kid of node.childNodes) walk(kid);
  }
  walk(document.documentElement);
  return out;
}"""


def test_through_a_real_proxy_in_chromium(tmp_path: Path, browser: Any) -> None:
    page_html = ("<!doctype html><html><head><title>Winkel</title>" + PAGE_TRACKERS + "</head><body><main>"
                 "<div data-consent-declaration></div></main></body></html>")

    async def page(request: web.Request) -> web.Response:
        response = web.Response(text=page_html, content_type="text/html")
        for index, name in enumerate(COOKIES):
            response.headers.add("Set-Cookie", f"{name}=1; Path=/" + ("; Max-Age=63072000" if index % 2 else ""))
        return response

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    (tmp_path / "names").mkdir()
    site = _site(tmp_path / "names")
    names = _names(SiteDeclaration(site, _inventory(site, tmp_path / "names")))
    with serve_app(app, port):
        proxy = launch_proxy(tmp_path, 0, site_toml("shop", f"http://127.0.0.1:{port}"))
        try:
            with urllib.request.urlopen(proxy.url + "/", timeout=10) as response:
                response.read()  # the inventory learns the cookies the page sets
            for lang in LANGUAGES:
                context = browser.new_context(locale={"nl": "nl-NL", "en": "en-GB", "de": "de-DE", "fr": "fr-FR"}[lang])
                try:
                    tab = context.new_page()
                    tab.goto(proxy.url + "/", wait_until="load")
                    first = tab.evaluate(_WALK)
                    tab.locator("#cp-banner [data-cp-action=settings]").click()
                    tab.wait_for_selector(".cp-dialog[role=dialog]", timeout=15_000)
                    tab.evaluate("() => document.getElementById('cp-root').shadowRoot"
                                 ".querySelectorAll('details').forEach(d => { d.open = true; })")
                    both = tab.evaluate(_WALK)
                    texts = [(found or lang, text) for found, text in both]
                    assert len(both) > len(first) + 20, "the settings layer did not open"
                    shown = {text for _, text in texts}
                    assert "_ga" in shown and COOKIES[-1] in shown, lang  # catalogue and database cookies listed
                    assert problems(texts, names) == [], lang
                    assert sum(own_words(without_names(t, names), lang) for _, t in texts) >= 20, lang
                    tab.goto(proxy.url + "/_consent/declaration", wait_until="load")
                    standalone = [(found or lang, text) for found, text in tab.evaluate(_WALK)]
                    assert COOKIES[0] in {text for _, text in standalone}
                    assert problems(standalone, names) == [], lang
                finally:
                    context.close()
        finally:
            proxy.stop(signal.SIGTERM)
