"""The tracker matcher's host index: URLs as browsers read them, hosts by label, inline code naming hosts."""

from __future__ import annotations

import dataclasses
import time

import pytest

from consentproxy.config.model import ServiceConfig
from consentproxy.cookies.classify import builtin_services
from consentproxy.html.trackers import Match, TrackerMatcher, split_url

CATALOGUE = TrackerMatcher(())
#: the catalogue without its inline signatures: what the hosts alone find in code
HOSTS_ONLY = TrackerMatcher(tuple(dataclasses.replace(s, inline=()) for s in builtin_services()), use_catalogue=False,
                            extra_hosts=())
GA = "Google Analytics"
META = "Meta Pixel"


@pytest.mark.parametrize("url", [
    "https://www.google-analytics.com/analytics.js",
    "http://www.google-analytics.com/analytics.js",
    "//www.google-analytics.com/analytics.js",
    "///www.google-analytics.com/analytics.js",
    "HTTPS://WWW.GOOGLE-ANALYTICS.COM/ANALYTICS.JS",
    "https://www.google-analytics.com:443/analytics.js",
    "https://www.google-analytics.com:8080/analytics.js",
    "https://user:secret@www.google-analytics.com/analytics.js",
    "https://evil.example@www.google-analytics.com/analytics.js",
    "https://www.google-analytics.com./analytics.js",
    "https://www.google-analytics.com..:80/analytics.js",
    "https:\\\\www.google-analytics.com\\analytics.js",
    "https:/\\www.google-analytics.com/analytics.js",
    "\\\\www.google-analytics.com/analytics.js",
    "https:www.google-analytics.com/analytics.js",
    "  https://www.google-analytics.com/analytics.js\n",
    "ht\ntps://www.goo\tgle-analy\r\ntics.com/analy\ntics.js",
    "\x01https://www.google-analytics.com/analytics.js\x00",
    "https&#58;//www&#x2E;google-analytics.com/analytics.js",
    "&#104;ttps://www.google-analytics.com/analytics.js",
    "https://www.google-analytics.com/analytics.js?x=1#y",
    "https://www%2Egoogle-analytics.com/analytics.js",
    "https://a.b.www.google-analytics.com/analytics.js",
    "https://www.google-analytics.com?x",
    "https://www.google-analytics.com",
])
def test_every_spelling_of_a_tracker_url(url: str) -> None:
    assert CATALOGUE.url("scripts", url) == Match(GA, "statistics"), url


@pytest.mark.parametrize("url", [
    "/analytics.js", "analytics.js", "www.google-analytics.com/analytics.js",  # relative: the site's own
    "https://example.com/www.google-analytics.com/analytics.js",
    "https://example.com/?u=https://www.google-analytics.com/analytics.js",
    "https://www.google-analytics.com.example.com/analytics.js",
    "https://notgoogle-analytics.com/analytics.js",
    "https://google-analytics.co/analytics.js",
    "data:text/javascript,//www.google-analytics.com/analytics.js",
    "javascript://www.google-analytics.com/analytics.js",
    "https://[::1]/analytics.js", "", "   ",
])
def test_look_alikes_and_first_party_urls_do_not_match(url: str) -> None:
    assert CATALOGUE.url("scripts", url) is None, url


def test_split_url_parts() -> None:
    assert split_url("HTTPS://U:P@Sub.Example.COM.:8443/A/b?C#d") == (
        "https://u:p@sub.example.com.:8443/a/b?c#d", "sub.example.com", "/a/b?c#d")
    assert split_url("//example.com")[1:] == ("example.com", "")
    assert split_url("/x")[1] is None
    assert split_url("mailto:a@example.com")[1] is None
    assert split_url("https://[2001:db8::1]:80/x")[1:] == ("[2001:db8::1]", "/x")


def test_idn_unicode_and_punycode_are_one_host() -> None:
    site = ServiceConfig(name="IDN Tracker", category="marketing", hosts=("xn--bcher-kva.example",),
                         pixels=("xn--mnchen-3ya.example/p",))
    unicode_rules = ServiceConfig(name="IDN Unicode", category="statistics", hosts=("tracker.xn--caf-dma.example",))
    matcher = TrackerMatcher((site, unicode_rules), use_catalogue=False, extra_hosts=())
    found = Match("IDN Tracker", "marketing")
    for url in ("https://bücher.example/x.js", "https://BÜCHER.example/x.js", "https://xn--bcher-kva.example/x.js",
                "//cdn.bücher.example/x.js", "https://bücher\u3002example/x.js", "https://b%C3%BCcher.example/x.js"):
        assert matcher.url("scripts", url) == found, url
    assert matcher.url("pixels", "https://münchen.example/p?id=1") == found
    assert matcher.url("pixels", "https://münchen.example/q") is None
    assert matcher.url("scripts", "https://tracker.café.example/t.js") == Match("IDN Unicode", "statistics")
    assert matcher.url("scripts", "https://bucher.example/x.js") is None
    assert matcher.url("scripts", "https://b\udcff.example/x.js") is None  # no valid IDN: no crash, no match


def test_paths_are_prefixes_under_their_host() -> None:
    assert CATALOGUE.url("pixels", "https://www.facebook.com/tr?id=1&ev=PageView") == Match(META, "marketing")
    assert CATALOGUE.url("pixels", "https://facebook.com/tr/?id=1") == Match(META, "marketing")
    assert CATALOGUE.url("pixels", "https://www.facebook.com/photo.php?tr?id=1") is None
    assert CATALOGUE.url("pixels", "https://www.facebook.com/") is None
    assert CATALOGUE.url("pixels", "https://example.com/facebook.com/tr?id=1") is None
    assert CATALOGUE.url("scripts", "https://www.google.com/pagead/conversion.js") == Match("Google Ads", "marketing")
    assert CATALOGUE.url("scripts", "https://www.google.com/search?q=pagead") is None
    # a path rule is for its kind; a bare host counts for every kind
    assert CATALOGUE.url("iframes", "https://www.facebook.com/tr?id=1") is None
    assert CATALOGUE.url("iframes", "https://securepubads.g.doubleclick.net/x") == Match("Google Ads", "marketing")


def test_first_ranked_service_wins_and_the_site_comes_first() -> None:
    # gtag.js for an Ads id: Google Ads (listed first) rather than Google Analytics' broader pattern
    assert CATALOGUE.url("scripts", "https://www.googletagmanager.com/gtag/js?id=AW-123") == Match("Google Ads",
                                                                                                  "marketing")
    assert CATALOGUE.url("scripts", "https://www.googletagmanager.com/gtag/js?id=G-123") == Match(GA, "statistics")
    # a tag manager's container may load anything: it waits for marketing consent (services.toml)
    assert CATALOGUE.url("scripts", "https://www.googletagmanager.com/gtm.js?id=GTM-1") == Match(
        "Google Tag Manager", "marketing")
    own = ServiceConfig(name="Own analytics", category="necessary", scripts=("www.google-analytics.com/analytics.js",))
    matcher = TrackerMatcher((own,))
    assert matcher.url("scripts", "//www.google-analytics.com/analytics.js") == Match("Own analytics", "necessary")
    assert matcher.url("scripts", "//www.google-analytics.com/ga.js") == Match(GA, "statistics")
    # a broader host of an earlier service beats a more specific one of a later service (file order)...
    first = ServiceConfig(name="First", category="marketing", hosts=("example.net",))
    second = ServiceConfig(name="Second", category="statistics", hosts=("cdn.example.net",))
    ordered = TrackerMatcher((first, second), use_catalogue=False, extra_hosts=())
    assert ordered.url("scripts", "https://cdn.example.net/x.js") == Match("First", "marketing")
    assert ordered.host("https://cdn.example.net") == Match("First", "marketing")
    # ...and among rules of equal rank (the Open Cookie Database's) the most specific host wins
    extra = TrackerMatcher((), use_catalogue=False, extra_hosts=[("example.org", Match("Broad", "statistics")),
                                                                 ("ads.example.org", Match("Narrow", "marketing"))])
    assert extra.url("pixels", "https://x.ads.example.org/p.gif") == Match("Narrow", "marketing")
    assert extra.url("pixels", "https://www.example.org/p.gif") == Match("Broad", "statistics")


def test_patterns_that_are_no_host_stay_substrings() -> None:
    assert CATALOGUE.url("scripts", "/js/matomo.js") == Match("Matomo", "statistics")
    assert CATALOGUE.url("scripts", "https://stats.example.com/piwik.js") == Match("Matomo", "statistics")
    assert CATALOGUE.url("pixels", "https://stats.example.com/matomo.php?idsite=1") == Match("Matomo", "statistics")
    assert CATALOGUE.url("scripts", "/umami.js") is not None


def test_resource_hints_take_the_host() -> None:
    assert CATALOGUE.host("https://securepubads.g.doubleclick.net") == Match("Google Ads", "marketing")
    assert CATALOGUE.host("//SECUREPUBADS.G.DOUBLECLICK.NET.") == Match("Google Ads", "marketing")
    assert CATALOGUE.host("securepubads.g.doubleclick.net") == Match("Google Ads", "marketing")  # dns-prefetch
    assert CATALOGUE.host("https://www.facebook.com") is None  # only facebook.com/tr is a tracker
    assert CATALOGUE.host("https://example.com") is None


def test_open_cookie_database_hosts_hook() -> None:
    data = pytest.importorskip("consentproxy.trackers_data")
    rows = data.open_cookie_database_hosts()
    if not rows:
        pytest.skip("no Open Cookie Database host rules")
    host, _, category = rows[0]
    found = CATALOGUE.url("scripts", f"https://sub.{host}/x.js")
    assert found is not None and found.category == category
    assert TrackerMatcher((), use_catalogue=False).url("scripts", f"https://{host}/x.js") is None


def _synthetic(count: int) -> list[tuple[str, Match]]:
    match = Match("Synthetic", "marketing")
    return [(f"t{i}.zone{i % 1000}.example", match) for i in range(count)]


def test_a_million_host_rules() -> None:
    """The index answers from a million rules as from a few: lookups by label, no scan."""
    rules = _synthetic(1_000_000)
    matcher = TrackerMatcher((), extra_hosts=rules)
    assert len(matcher) >= 1_000_000
    synthetic = Match("Synthetic", "marketing")
    for i in (0, 1, 999, 123_456, 999_999):
        assert matcher.url("scripts", f"https://t{i}.zone{i % 1000}.example/x.js") == synthetic
        assert matcher.url("pixels", f"//a.b.T{i}.ZONE{i % 1000}.example.:81/p.gif") == synthetic
        assert matcher.host(f"https://t{i}.zone{i % 1000}.example") == synthetic
        assert matcher.inline(f"s.src = 'https://cdn.t{i}.zone{i % 1000}.example/tag.js';") == synthetic
        assert matcher.url("scripts", f"https://t{i}.zone{(i + 1) % 1000}.example/x.js") is None
        assert matcher.url("scripts", f"https://zone{i % 1000}.example/x.js") is None
    assert matcher.url("scripts", "https://t1000000.zone0.example/x.js") is None
    # the catalogue's answers are unchanged: its services rank before the extra rules
    assert matcher.url("scripts", "//www.google-analytics.com/analytics.js") == Match(GA, "statistics")
    assert matcher.url("scripts", "https://securepubads.g.doubleclick.net/tag/js/gpt.js") == Match("Google Ads",
                                                                                                   "marketing")
    assert matcher.url("scripts", "https://example.com/app.js") is None


def test_lookup_cost_does_not_grow_with_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """A measurement, printed (no timing assert): uncached lookups with the catalogue alone and with 1,000,000
    more host rules."""
    figures = []
    for count in (0, 1_000_000):
        matcher = TrackerMatcher((), extra_hosts=_synthetic(count) if count else None)
        best = float("inf")
        for run in range(3):  # new URLs each run: every lookup misses the cache
            urls = [f"https://cdn{i}.t{i}.zone{run}.example/a/b.js" for i in range(3000)]
            started = time.perf_counter()
            for url in urls:
                matcher.url("scripts", url)
            best = min(best, (time.perf_counter() - started) / len(urls) * 1e6)
        figures.append(best)
    with capsys.disabled():
        print(f"\nuncached url() lookup: {figures[0]:.2f} µs with the catalogue, {figures[1]:.2f} µs with 1,000,000 "
              "more host rules")


# -- inline code that builds a tracker's URL ------------------------------------------------------------------------

_GPT = """
  window.googletag = window.googletag || {cmd: []};
  (function() {
    var gads = document.createElement('script');
    gads.async = true;
    gads.src = 'https://securepubads.g.doubleclick.net/tag/js/gpt.js';
    var node = document.getElementsByTagName('script')[0];
    node.parentNode.insertBefore(gads, node);
  })();
"""
_COMSCORE = """
  var _comscore = _comscore || [];
  _comscore.push({ c1: "2", c2: "1234567" });
  (function() {
    var s = document.createElement("script"), el = document.getElementsByTagName("script")[0]; s.async = true;
    s.src = (document.location.protocol == "https:" ? "https://sb" : "http://b") + ".scorecardresearch.com/beacon.js";
    el.parentNode.insertBefore(s, el);
  })();
"""
_COMSCORE_SHORT = "var s=document.createElement('script');s.src='//sb.scorecardresearch.com/beacon.js';"
_QUANTCAST = """
  var _qevents = _qevents || [];
  (function() {
    var elem = document.createElement('script');
    elem.src = (document.location.protocol == "https:" ? "https://secure" : "http://edge") + ".quantserve.com/quant.js";
    elem.async = true; elem.type = "text/javascript";
    var scpt = document.getElementsByTagName('script')[0]; scpt.parentNode.insertBefore(elem, scpt);
  })();
  _qevents.push({ qacct: "p-abcdef" });
"""
_QUANTCAST_WRITE = """document.write('<script src="//quantserve.com/quant.js"><\\/script>');"""
_CHARTBEAT = """
  (function() {
    var _sf_async_config = window._sf_async_config = (window._sf_async_config || {});
    _sf_async_config.uid = 12345; _sf_async_config.domain = 'example.com';
    function loadChartbeat() {
      var e = document.createElement('script'); var n = document.getElementsByTagName('script')[0];
      e.type = 'text/javascript'; e.async = true; e.src = '//static.chartbeat.com/js/chartbeat.js';
      n.parentNode.insertBefore(e, n);
    }
    loadChartbeat();
  })();
"""
_APSTAG = """
  !function(a9,a,p,s,t,A,g){if(a[a9])return;function q(c,r){a[a9]._Q.push([c,r])}a[a9]={init:function(){q("i",
  arguments)},fetchBids:function(){q("f",arguments)},setDisplayBids:function(){},targetingKeys:function(){return[]},
  _Q:[]};A=p.createElement(s);A.async=!0;A.src=t;g=p.getElementsByTagName(s)[0];g.parentNode.insertBefore(A,g)}
  ("apstag",window,document,"script","//c.amazon-adsystem.com/aax2/apstag.js");
  apstag.init({ pubID: '1234', adServer: 'googletag' });
"""
_OPTIMIZELY = """
  (function(d) { var s = d.createElement('script');
    s.src = "https://cdn.optimizely.com/js/12345678.js"; d.head.appendChild(s); })(document);
"""
_KRUX = """
  window.Krux||((Krux=function(){Krux.q.push(arguments)}).q=[]);
  (function(){
    var k=document.createElement('script');k.type='text/javascript';k.async=true;
    k.src=(location.protocol==='https:'?'https:':'http:')+'//cdn.krxd.net/controltag/abcdef.js';
    var s=document.getElementsByTagName('script')[0];s.parentNode.insertBefore(k,s);
  }());
"""
_PARSELY = """
  (function(s, p, d) {
    var h = d.location.protocol, i = p + "-" + s, e = d.getElementById(i), r = d.getElementById(p + "-root"),
        u = h === "https:" ? "d1z2jf7jlzjs58.cloudfront.net" : "static." + p + ".com";
    if (e) return; e = d.createElement(s); e.id = i; e.async = true; e.src = h + "//" + u + "/p.js";
    r.appendChild(e);
  })("script", "parsely", document);
  var PARSELY = { autotrack: false }; var url = "https://cdn.parsely.com/keys/example.com/p.js";
"""
_NEW_RELIC = """
  ;window.NREUM||(NREUM={});NREUM.init={privacy:{cookies_enabled:true}};
  ;NREUM.loader_config={accountID:"1",trustKey:"1",agentID:"2",licenseKey:"NRJS-x",applicationID:"2"};
  ;NREUM.info={beacon:"bam.eu01.nr-data.net",errorBeacon:"bam.eu01.nr-data.net",licenseKey:"NRJS-x",
  applicationID:"2",sa:1};
"""
_GA_CLASSIC = """
  var _gaq = _gaq || []; _gaq.push(['_setAccount', 'UA-1-1']);
  (function() { var ga = document.createElement('script'); ga.async = true;
    ga.src = ('https:' == document.location.protocol ? 'https://ssl' : 'http://www') + '.google-analytics.com/ga.js';
    var s = document.getElementsByTagName('script')[0]; s.parentNode.insertBefore(ga, s); })();
"""
_JSON_ESCAPED = """window.cfg = {"tag": "https:\\/\\/securepubads.g.doubleclick.net\\/tag\\/js\\/gpt.js"};"""


@pytest.mark.parametrize(("code", "service", "category"), [
    (_GPT, "Google Ads", "marketing"),
    (_COMSCORE, "comScore", "statistics"),
    (_COMSCORE_SHORT, "comScore", "statistics"),
    (_QUANTCAST, "Quantcast", "marketing"),
    (_QUANTCAST_WRITE, "Quantcast", "marketing"),
    (_CHARTBEAT, "Chartbeat", "statistics"),
    (_APSTAG, "Amazon Publisher Services", "marketing"),
    (_OPTIMIZELY, "Optimizely", "statistics"),
    (_KRUX, "Salesforce Audience Studio (Krux)", "marketing"),
    (_PARSELY, "Parse.ly", "statistics"),
    (_NEW_RELIC, "New Relic", "statistics"),
    (_GA_CLASSIC, GA, "statistics"),
    (_JSON_ESCAPED, "Google Ads", "marketing"),
])
def test_inline_code_naming_a_tracker_host(code: str, service: str, category: str) -> None:
    assert HOSTS_ONLY.inline(code) == Match(service, category)  # by the host alone
    found = CATALOGUE.inline(code)  # with signatures too: the same category
    assert found is not None and found.category == category


@pytest.mark.parametrize("code", [
    "var api = 'https://www.example.com/api/v1'; fetch(api);",
    "document.title = 'Shop.example.com'; var x = window.location.hostname;",
    "var share = 'https://www.facebook.com/sharer/sharer.php?u=' + encodeURIComponent(location.href);",
    "var link = 'https://www.google.com/maps/place/x';",
    "import('./chunks/app.min.js'); var f = 'jquery.min.js'; a.b.c = d.ef;",
    "var text = 'we do not use doubleclick'; var host = location.host + '.cdn.example.com';",
])
def test_first_party_code_is_no_tracker(code: str) -> None:
    assert CATALOGUE.inline(code) is None
    assert HOSTS_ONLY.inline(code) is None


def test_look_alike_hosts_in_code_are_no_tracker() -> None:
    # (the catalogue also lists some host names as plain inline signatures, substrings: not asked here)
    assert HOSTS_ONLY.inline("var s = 'scorecardresearch.com.example.net';") is None
    assert HOSTS_ONLY.inline("var t = '//notdoubleclick.net/x.js';") is None
    assert HOSTS_ONLY.inline("var s = 'https://sb.scorecardresearch.co/x.js';") is None


def test_inline_host_with_a_path_rule() -> None:
    assert HOSTS_ONLY.inline("new Image().src = 'https://www.facebook.com/tr?id=1&ev=PageView';") == Match(
        META, "marketing")
    assert HOSTS_ONLY.inline("var u = 'https://www.facebook.com/events';") is None


def test_inline_best_rank_between_signature_and_host() -> None:
    first = ServiceConfig(name="First", category="marketing", hosts=("ads.example.net",))
    second = ServiceConfig(name="Second", category="statistics", inline=("secondTracker(",))
    matcher = TrackerMatcher((first, second), use_catalogue=False, extra_hosts=())
    assert matcher.inline("secondTracker('x');") == Match("Second", "statistics")
    assert matcher.inline("secondTracker('x'); load('//ads.example.net/a.js');") == Match("First", "marketing")


def test_inline_signatures_of_every_first_character_rank_alike() -> None:
    """The signatures are searched one trie per first character: the best rank wins whatever the group, and a
    signature inside another group's match is still found."""
    services = tuple(ServiceConfig(name=name, category="statistics", inline=(signature,)) for name, signature in (
        ("A", "zeta.track("), ("B", "alpha.send("), ("C", "eta.track(")))
    matcher = TrackerMatcher(services, use_catalogue=False, extra_hosts=())
    assert matcher.inline("alpha.send(1); zeta.track(2);") == Match("A", "statistics")
    assert matcher.inline("alpha.send(1);") == Match("B", "statistics")
    assert matcher.inline("zeta.track(2);") == Match("A", "statistics")  # holds eta.track( too: A ranks first
    assert matcher.inline("beta.track(3);") == Match("C", "statistics")


def test_long_inline_code_is_cached_by_digest() -> None:
    matcher = TrackerMatcher(())
    state = "window.__STATE__ = {" + ",".join(f'"k{i}": "v{i}"' for i in range(3000)) + "};"
    code = state + " gtag('config', 'G-1');"
    assert len(code) > 16_384
    assert matcher.inline(code) == matcher.inline(code) is not None
    assert len(matcher._big_inline_cache) == 1 and code not in matcher._inline_cache
    assert matcher.inline(state) is None  # another long snippet, another answer
    assert len(matcher._big_inline_cache) == 2


def test_sites_without_services_share_the_catalogue_tables() -> None:
    first, second = TrackerMatcher(()), TrackerMatcher(())
    assert first._index is second._index and first._inline_res is second._inline_res
    assert first._url_cache is not second._url_cache  # answers stay per site
    own = TrackerMatcher((ServiceConfig(name="Own", category="statistics", hosts=("stats.example.org",)),))
    assert own._index is not first._index
    assert own.url("scripts", "https://stats.example.org/s.js") == Match("Own", "statistics")
    assert first.url("scripts", "https://stats.example.org/s.js") is None
