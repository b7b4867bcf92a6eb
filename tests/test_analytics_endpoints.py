"""First-party analytics endpoints through a real proxy, forwarding to a real local sink."""

from __future__ import annotations

import re
import signal
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ROOT, Proxy, free_port, launch_proxy, mint, serve_app, site_toml

CLIENT = "203.0.113.77"  # the visitor, as a trusted front proxy names it
SWEDEN = "89.160.20.115"
GA_HIT = ("v=2&tid=G-SINK123&cid=1234567890.1700000000&sid=1700000000&sct=3&seg=1&_p=1&en=page_view"
          "&dl=https%3A%2F%2Fshop.example%2Fcart%3Futm_source%3Dnews%26email%3Djan%40example.nl%26order%3D77"
          "&dt=Cart&dr=https%3A%2F%2Fwww.search.example%2Fq%3Dshoes&ul=nl-nl&uid=customer-991&up.plan=gold"
          "&uaa=x86&uam=&uap=Linux&gcs=G111&npa=0")


@dataclass
class Sink:
    port: int
    seen: list[dict[str, object]] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(str(request) for request in self.seen)


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    state = Sink(free_port())

    async def record(request: web.Request) -> web.Response:
        state.seen.append({"path": request.path, "query": request.query_string, "headers": dict(request.headers),
                           "body": (await request.read()).decode("utf-8", "replace")})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    with serve_app(app, state.port):
        yield state


def start(tmp_path: Path, sink: Sink, exempt: bool = False, dry_run: bool = False) -> Proxy:
    base = f"http://127.0.0.1:{sink.port}"
    sites = (f'[geoip]\ndatabase = "{ROOT / "config" / "geoip" / "GeoLite2-City-Test.mmdb"}"\n\n'
             + site_toml("shop", "http://127.0.0.1:9", hosts=("shop.example", "127.0.0.1"))
             + f"[sites.shop.consent]\nstatistics_exempt = {'true' if exempt else 'false'}\n"
             + f'[sites.shop.analytics]\nga4 = "{base}/ga"\nmatomo = "{base}/m/matomo.php"\n'
             + f'ipv4 = "v4/24"\ndry_run = {"true" if dry_run else "false"}\n')
    return launch_proxy(tmp_path, 0, sites, server={"trusted_proxies": ["127.0.0.1/32"]})


def send(proxy: Proxy, path: str, query: str, client: str = CLIENT, cookie: str | None = None,
         method: str = "GET", body: bytes | None = None) -> int:
    headers = {"X-Forwarded-For": client, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
               "(KHTML, like Gecko) Chrome/131.0.6778.85 Safari/537.36", "Cookie": "_ga=GA1.1.1234567890.1700000000"}
    if cookie:
        headers["Cookie"] += f"; cp_consent={cookie}"
    request = urllib.request.Request(f"{proxy.url}{path}?{query}", headers=headers, method=method, data=body)
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_without_consent_and_not_exempt_nothing_reaches_the_sink(tmp_path: Path, sink: Sink) -> None:
    proxy = start(tmp_path, sink)
    try:
        before = len(sink.seen)
        assert send(proxy, "/_consent/a/g/collect", GA_HIT) == 204
        assert len(sink.seen) == before
        assert 'outcome="dropped_not_consented"' in proxy.metrics()
    finally:
        proxy.stop(signal.SIGTERM)


def test_exempt_hits_arrive_anonymised(tmp_path: Path, sink: Sink) -> None:
    proxy = start(tmp_path, sink, exempt=True)
    try:
        before = len(sink.seen)
        assert send(proxy, "/_consent/a/g/collect", GA_HIT) == 204
        (hit,) = sink.seen[before:]
        assert hit["path"] == "/ga/g/collect"
        query = urllib.parse.parse_qs(str(hit["query"]))
        everything = str(hit)
        assert CLIENT not in everything and "203.0.113" not in everything  # not even truncated: exempt
        assert "jan@example.nl" not in everything and "customer-991" not in everything
        assert "1234567890.1700000000" not in everything  # the client id is a keyed hash
        assert query["dl"] == ["https://shop.example/cart?utm_source=news"]  # only allow-listed parameters
        assert query.get("dr") in (None, ["https://www.search.example/"])  # an external referrer: its origin
        assert "uid" not in query and "up.plan" not in query and "uaa" not in query
        assert query["gcs"] == ["G100"]  # the real state: nothing granted
        assert "cookie" not in {k.lower() for k in hit["headers"]}  # type: ignore[attr-defined]
        assert 'outcome="anonymised"' in proxy.metrics()
    finally:
        proxy.stop(signal.SIGTERM)


def test_consented_hits_keep_what_statistics_needs(tmp_path: Path, sink: Sink) -> None:
    proxy = start(tmp_path, sink)
    try:
        consent = mint(proxy, {"statistics"})
        before = len(sink.seen)
        assert send(proxy, "/_consent/a/g/collect", GA_HIT, cookie=consent) == 204
        (hit,) = sink.seen[before:]
        query = urllib.parse.parse_qs(str(hit["query"]))
        assert query["en"] == ["page_view"] and query["dt"] == ["Cart"]
        assert query["_uip"] == ["203.0.113.0"]  # truncated, so GA geolocates the visitor's network, not us
        assert CLIENT not in str(hit) and "jan@example.nl" not in str(hit)
        assert query["gcs"] == ["G101"]  # analytics granted, ads not
    finally:
        proxy.stop(signal.SIGTERM)


def test_matomo_gets_the_country_from_geoip(tmp_path: Path, sink: Sink) -> None:
    token = tmp_path / "matomo-token"
    token.write_text("secret-matomo-token\n")
    proxy = start(tmp_path, sink)
    try:
        text = proxy.config_path.read_text().replace('ipv4 = "v4/24"', f'ipv4 = "v4/24"\nmatomo_token = "file:{token}"')
        proxy.stop(signal.SIGTERM)
        proxy.config_path.write_text(text)
        proxy = launch_proxy(tmp_path, 1, text.split("\n\n", 1)[1], server={"trusted_proxies": ["127.0.0.1/32"]})
        consent = mint(proxy, {"statistics"})
        before = len(sink.seen)
        hit_query = "idsite=1&rec=1&url=https%3A%2F%2Fshop.example%2F&_id=0123456789abcdef"
        assert send(proxy, "/_consent/a/matomo.php", hit_query, client=SWEDEN, cookie=consent) == 204
        (hit,) = sink.seen[before:]
        everything = str(hit)
        assert SWEDEN not in everything
        assert "country=se" in everything.lower()
        assert "secret-matomo-token" not in str(hit["query"])  # never in a URL
    finally:
        proxy.stop(signal.SIGTERM)


def test_dry_run_sends_nothing_and_logs_what_it_would(tmp_path: Path, sink: Sink) -> None:
    proxy = start(tmp_path, sink, exempt=True, dry_run=True)
    try:
        before = len(sink.seen)
        assert send(proxy, "/_consent/a/g/collect", GA_HIT) == 204
        assert len(sink.seen) == before
        assert "analytics dry run, site shop" in proxy.log()
        assert CLIENT not in proxy.log()
    finally:
        proxy.stop(signal.SIGTERM)


def test_unconfigured_backends_and_methods_are_refused(tmp_path: Path, sink: Sink) -> None:
    proxy = start(tmp_path, sink)
    try:
        for path in ("/_consent/a/api/event", "/_consent/a/unknown", "/_consent/a/"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                send(proxy, path, "x=1")
            assert caught.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as refused:
            send(proxy, "/_consent/a/g/collect", GA_HIT, method="PUT", body=b"")
        assert refused.value.code == 405
    finally:
        proxy.stop(signal.SIGTERM)


PAGE = """<!doctype html><html lang="en"><head><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-SINK123"></script>
<script defer data-domain="shop.example" src="https://plausible.io/js/script.js"></script>
</head><body><p>Shop</p></body></html>"""


@pytest.mark.parametrize(("exempt", "consented", "runs"), [
    (False, False, False),  # no consent, not exempt: held back
    (False, True, True),  # consented: runs, pointed at the proxy
    (True, False, True),  # exempt: runs for everyone, its hits anonymised by the proxy
])
def test_pages_point_the_trackers_at_the_proxy(tmp_path: Path, sink: Sink, exempt: bool, consented: bool,
                                               runs: bool) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    base = f"http://127.0.0.1:{sink.port}"
    sites = (site_toml("shop", f"http://127.0.0.1:{port}")
             + f"[sites.shop.consent]\nstatistics_exempt = {'true' if exempt else 'false'}\n"
             + f'[sites.shop.analytics]\nga4 = "{base}/ga"\nplausible = "{base}/p"\n')
    with serve_app(app, port):
        proxy = launch_proxy(tmp_path, 0, sites)
        try:
            headers = {"Cookie": f"cp_consent={mint(proxy, {'statistics'})}"} if consented else {}
            request = urllib.request.Request(proxy.url + "/", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                html = response.read().decode()
        finally:
            proxy.stop(signal.SIGTERM)
    # gtag sends to the proxy: transport_url is set before the first tag runs
    assert "transport_url:location.origin+'/_consent/a'" in html
    found = re.search(r'<script[^>]*data-domain="shop\.example"[^>]*>', html)
    assert found, html
    plausible = found.group()
    if runs:
        assert 'data-api="/_consent/a/api/event"' in plausible and "data-cp-blocked" not in plausible
        assert 'src="https://plausible.io/js/script.js"' in plausible
    else:
        assert 'data-cp-blocked="statistics"' in plausible
    # Google Analytics runs where exempt (cookieless: Consent Mode keeps analytics_storage denied)
    assert ('data-cp-src="https://www.googletagmanager.com/gtag/js' in html) is not runs


def test_matomo_snippets_queue_the_proxys_tracker_url() -> None:
    """The bootstrap runs before the page's Matomo snippet, in a JavaScript engine (node)."""
    import json
    import shutil
    import subprocess

    from consentproxy.banner.markup import analytics_bootstrap, consent_mode_code
    from consentproxy.config.model import AnalyticsConfig

    node = shutil.which("node")
    assert node, "node is needed (the nodejs package, installed by `make system-deps`)"
    code = consent_mode_code(None, analytics_bootstrap(AnalyticsConfig(matomo="https://stats.example/matomo.php")))
    snippet = """
      var _paq = window._paq = window._paq || [];
      _paq.push(['trackPageView']);
      (function() {
        var u = "https://stats.example/";
        _paq.push(['setTrackerUrl', u + 'matomo.php']);
        _paq.push(['setSiteId', '1']);
      })();
      console.log(JSON.stringify(_paq));
    """
    program = "var window = globalThis; var location = {origin: 'https://shop.example'};\n" + code + snippet
    out = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == [["trackPageView"], ["setTrackerUrl", "https://shop.example/_consent/a/matomo.php"],
                               ["setSiteId", "1"]]
