"""The client-side guard's server side: its per-site table, its file and URL, its script element, its size."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import brotli
import pytest
from conftest import Proxy, serve_page, site_toml

from consentproxy.banner.assets import BannerAssets, static_dir
from consentproxy.banner.compaction import compact_script
from consentproxy.banner.guard import (
    TABLE_MARKER,
    build_guard,
    guard_script,
    guard_table,
    table_categories,
)
from consentproxy.banner.markup import SiteMarkup
from consentproxy.config.model import ServiceConfig, SiteConfig
from consentproxy.consent.decision import ALL, NECESSARY_ONLY, NO_DECISION, Decision
from consentproxy.html.csp import NoncePlan
from consentproxy.html.trackers import TrackerMatcher

SITE = SiteConfig(name="shop", hosts=("shop.test",), upstream="http://127.0.0.1:1")

SERVICES = (
    ServiceConfig("Own CDN", "necessary", hosts=("cdn.ads.example",)),  # first: it outranks the ad network
    ServiceConfig("Ads", "marketing", hosts=("ads.example", "www.ads.example"), pixels=("pix.example/p",)),
    ServiceConfig("Stats", "statistics", scripts=("stats.example/collect.js", "tracker.js")),
    ServiceConfig("Widgets", "preferences", iframes=("widgets.example",)),
)


def table(unblocked: frozenset[str] = frozenset()) -> dict[str, Any]:
    return guard_table(TrackerMatcher(SERVICES, use_catalogue=False), unblocked)


def client_category(tab: dict[str, Any], url: str, kind: str) -> str:
    """guard.js's lookup, in Python: the first host or parent domain (down to two labels) with an entry, the
    longest path prefix there; otherwise the URL patterns of the kind."""
    found = re.match(r"https?://([^/?#]+)([^#]*)", url)
    assert found
    host, path = found.group(1), found.group(2) or "/"
    simple = {h: category for category, hosts in tab["c"].items() for h in hosts.split()}
    name = host
    while "." in name:
        if name in simple:
            return str(simple[name])
        if name in tab["p"]:
            entry = tab["p"][name]
            best = max((prefix for prefix in entry if path.startswith(prefix)), key=len)
            return str(entry[best])
        name = name.split(".", 1)[1]
    return next((category for pattern, category in tab["u"].get(kind, []) if pattern in url), "")


def test_the_table_holds_each_category_with_its_hosts_and_path_prefixes() -> None:
    tab = table()
    assert tab["c"] == {"": "cdn.ads.example", "marketing": "ads.example", "preferences": "widgets.example"}
    # hosts only down a path: allowed elsewhere
    assert tab["p"] == {"pix.example": {"": "", "/p": "marketing"},
                        "stats.example": {"": "", "/collect.js": "statistics"}}
    assert tab["u"] == {"scripts": [["tracker.js", "statistics"]]}
    assert table_categories(tab) == {"marketing", "statistics", "preferences"}


def test_services_the_site_routes_through_its_anonymiser_are_left_out() -> None:
    tab = table(frozenset({"Stats"}))
    assert "stats.example" not in tab["p"] and "u" in tab and tab["u"] == {}
    assert table_categories(tab) == {"marketing", "preferences"}


@pytest.mark.parametrize(("url", "kind", "expected"), [
    ("https://ads.example/x.js", "scripts", "marketing"),
    ("https://a.b.www.ads.example/", "pixels", "marketing"),  # any subdomain
    ("https://cdn.ads.example/lib.js", "scripts", ""),  # the necessary CDN outranks its parent domain's ads
    ("https://x.cdn.ads.example/lib.js", "scripts", ""),
    ("https://pix.example/p?id=1", "pixels", "marketing"),
    ("https://pix.example/other", "pixels", ""),
    ("https://stats.example/collect.js?v=2", "scripts", "statistics"),
    ("https://elsewhere.example/js/tracker.js", "scripts", "statistics"),  # a pattern without a host
    ("https://elsewhere.example/js/tracker.js", "pixels", ""),
    ("https://unknown.example/", "scripts", ""),
])
def test_the_table_answers_as_the_server_does(url: str, kind: str, expected: str) -> None:
    matcher = TrackerMatcher(SERVICES, use_catalogue=False)
    server = matcher.url(kind, url)  # type: ignore[arg-type]
    assert (server.category if server and server.category != "necessary" else "") == expected
    assert client_category(table(), url, kind) == expected


def test_the_bundled_catalogue_table_agrees_with_the_server_on_every_rule() -> None:
    """For every host rule of the catalogue and the Open Cookie Database: the host, a subdomain of it, each
    path prefix of its rules and a path under none; the guard ignores element kinds, so it must hold
    whatever the server blocks for some kind."""
    matcher = TrackerMatcher(())
    tab = guard_table(matcher, frozenset())
    rules = list(matcher.host_rules())
    assert len(rules) > 500
    checked = 0
    for host, prefix, _ in rules:
        for name in (host, "sub." + host):
            for path in {prefix or "/", (prefix or "/") + "x", "/zz-no-rule"}:
                url = f"https://{name}{path if path.startswith('/') else '/' + path}"
                server = {m.category for kind in ("scripts", "iframes", "pixels")
                          if (m := matcher.url(kind, url)) is not None and m.category != "necessary"}
                client = client_category(tab, url, "scripts")
                assert (client in server) if server else client == "", (url, server, client)
                checked += 1
    assert checked > 3000


def test_the_file_carries_its_table_and_its_hash_follows_the_table() -> None:
    assets = BannerAssets()
    first = build_guard(assets, TrackerMatcher(SERVICES, use_catalogue=False), frozenset())
    again = build_guard(assets, TrackerMatcher(SERVICES, use_catalogue=False), frozenset())
    other = build_guard(assets, TrackerMatcher(SERVICES[:2], use_catalogue=False), frozenset())
    assert re.fullmatch(r"guard\.[0-9a-f]{12}\.js", first.path)
    assert first.path == again.path and first.path != other.path
    asset = assets.by_path[first.path]
    code = asset.identity.decode("ascii")
    assert TABLE_MARKER not in code and json.dumps(table(), separators=(",", ":"), sort_keys=True) in code
    assert gzip.decompress(asset.gzip) == asset.identity == brotli.decompress(asset.br)
    assert first.categories == frozenset({"marketing", "statistics", "preferences"})
    assert other.categories == frozenset({"marketing"})
    with pytest.raises(ValueError, match="once"):
        guard_script("(function (T) {}({}));", table())


def test_guard_js_stays_within_four_kilobytes_gzipped_as_served() -> None:
    source = (static_dir() / "banner" / "guard.js").read_text("utf-8")
    assert source.count(TABLE_MARKER) == 1
    served = guard_script(source, {"c": {}, "p": {}, "u": {}})
    size = len(gzip.compress(served, 9))
    assert size <= 4096, f"guard.js is {size} bytes gzipped as served"
    assert b"//" not in served.replace(b"\\/\\/", b"").replace(b"://", b""), "a comment left in"


@pytest.mark.skipif(shutil.which("node") is None, reason="node missing (`make system-deps` installs nodejs)")
def test_the_compacted_guard_is_the_same_program(tmp_path: Path) -> None:
    """Compacting keeps the script valid and drops only comments and layout: node parses it, and with every
    space, newline and comment removed from both, the compacted text equals the source's."""
    source = (static_dir() / "banner" / "guard.js").read_text("utf-8")
    served = guard_script(source, {"c": {}, "p": {}, "u": {}}).decode("ascii")
    script = tmp_path / "guard.js"
    script.write_text(served)
    subprocess.run(["node", "--check", str(script)], check=True)
    code_only = re.sub(r"/\*(?!table).*?\*/|(?<![:\\])// [^\n]*", "", source, flags=re.S)
    assert re.sub(r"\s", "", code_only) == re.sub(r"\s", "", served.replace('{"c":{},"p":{},"u":{}}', TABLE_MARKER))
    assert compact_script("a();  // why\n  // note\nb('//x');\n") == "a();\nb('//x');\n"


def test_the_guard_goes_first_with_the_page_nonce_and_only_while_something_is_held() -> None:
    markup = SiteMarkup(SITE, BannerAssets(), matcher=TrackerMatcher(SITE.consent.services))
    assert markup.guard is not None
    plain = markup.consent_mode(NO_DECISION, NoncePlan())
    assert plain.startswith(f'<script src="/_consent/{markup.guard.path}" data-cp-granted="necessary"></script>'
                            "<script>")
    nonced = markup.consent_mode(NO_DECISION, NoncePlan(script_nonce="abc"))
    assert nonced.startswith(f'<script src="/_consent/{markup.guard.path}" data-cp-granted="necessary" '
                             'nonce="abc"></script>')
    statistics = Decision("explicit", NECESSARY_ONLY | {"statistics"})
    assert 'data-cp-granted="necessary statistics"' in markup.consent_mode(statistics, NoncePlan())
    assert "guard." not in markup.consent_mode(Decision("explicit", ALL), NoncePlan())
    # no matcher, no guard (the static preview and benchmarks build their markup so)
    assert "guard." not in SiteMarkup(SITE, BannerAssets()).consent_mode(NO_DECISION, NoncePlan())


def test_the_proxy_serves_the_guard_immutable_and_compressed(start_proxy: Any) -> None:
    page = "<!doctype html><html><head><title>t</title><script>var own = 1;</script></head><body></body></html>"
    with serve_page(page, {"Content-Security-Policy": "script-src 'nonce-pAgE1' 'strict-dynamic'"}) as port:
        proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{port}"))
        with urllib.request.urlopen(proxy.url + "/", timeout=10) as response:
            html = response.read().decode()
        found = re.search(r'<script src="(/_consent/guard\.[0-9a-f]{12}\.js)" data-cp-granted="necessary" '
                          r'nonce="pAgE1"></script>', html)
        assert found, html[:600]
        assert html.index(found.group(0)) < html.index("<script>var own")  # before the page's first script
        bodies = {}
        for coding in ("br", "gzip", "identity"):
            request = urllib.request.Request(proxy.url + found.group(1), headers={"Accept-Encoding": coding})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
                assert response.headers["Vary"] == "Accept-Encoding"
                assert response.headers.get("Content-Encoding") == (None if coding == "identity" else coding)
                bodies[coding] = response.read()
        assert brotli.decompress(bodies["br"]) == gzip.decompress(bodies["gzip"]) == bodies["identity"]
        assert b'"marketing"' in bodies["identity"]
        head = urllib.request.Request(proxy.url + found.group(1), method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert response.read() == b""


def test_a_routed_service_stays_allowed_where_another_has_a_rule_for_another_kind() -> None:
    """The guard reads a URL as a script's first: a service the site routes through its anonymiser, which the
    server lets run as a script, is not held because another service has a pixel rule on the same path."""
    services = (ServiceConfig("Routed", "statistics", scripts=("t.example/lib.js",)),
                ServiceConfig("Pixel", "marketing", pixels=("t.example/lib",)))
    tab = guard_table(TrackerMatcher(services, use_catalogue=False), frozenset({"Routed"}))
    assert client_category(tab, "https://t.example/lib.js?v=1", "scripts") == ""
    assert client_category(tab, "https://t.example/library.gif", "pixels") == "marketing"
    # and with the catalogue: a routed Google Analytics runs, Google Tag Manager's container does not
    catalogue = guard_table(TrackerMatcher(()), frozenset({"Google Analytics"}))
    assert client_category(catalogue, "https://www.googletagmanager.com/gtag/js?id=G-1", "scripts") == ""
    assert client_category(catalogue, "https://www.google-analytics.com/g/collect?v=2", "pixels") == ""
    assert client_category(catalogue, "https://www.googletagmanager.com/gtm.js?id=GTM-1", "scripts") == \
        "marketing"


def test_under_hold_the_table_names_the_default_and_what_is_not_held() -> None:
    from consentproxy.html.functional import ThirdParties

    matcher = TrackerMatcher(SERVICES, use_catalogue=False)
    report = guard_table(matcher, frozenset(), ThirdParties(("shop.example",), ("maps.example/embed/",)))
    assert "d" not in report and "a" not in report
    held = guard_table(matcher, frozenset(), ThirdParties(("www.shop.example",), ("maps.example/embed/",), hold=True))
    assert held["d"] == "marketing"
    allowed = held["a"].split()
    assert {"www.shop.example", "shop.example", "maps.example/embed/", "cdnjs.cloudflare.com",
            "www.google.com/recaptcha/"} <= set(allowed)
    assert "marketing" in table_categories(held)
    assert build_guard(BannerAssets(), matcher, frozenset(),
                       ThirdParties(("shop.example",), hold=True)).needed(frozenset({"necessary", "statistics"}))


def test_a_page_without_script_elements_gets_the_guard_before_its_body(start_proxy: Any) -> None:
    """Event handler attributes are scripts too (gizmodo.jp's images set their src in onerror): with no
    <script> before it, the guard goes before <body>, and in a document without <body>, at its end."""
    pages = {"/": "<!doctype html><html><head><title>t</title></head><body><img src=x "
                  "onerror=\"this.src='https://img.unknown.example/a.jpg'\"></body></html>",
             "/bare": "<p>no body tag, no script"}
    with serve_page(pages["/"], files={"/bare": (pages["/bare"], "text/html")}) as port:
        proxy: Proxy = start_proxy(site_toml("shop", f"http://127.0.0.1:{port}", third_party="hold"))
        for path in pages:
            with urllib.request.urlopen(proxy.url + path, timeout=10) as response:
                html = response.read().decode()
            guard = re.search(r'<script src="/_consent/guard\.[0-9a-f]{12}\.js" data-cp-granted="necessary">', html)
            assert guard, html
            assert html.count("/_consent/guard.") == 1
            if path == "/":
                assert guard.start() < html.index("<body>") < html.index("<img")
            else:
                assert guard.start() > html.index("no script")
