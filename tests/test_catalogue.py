"""The bundled service catalogue (consentproxy/data/services.toml) and the Open Cookie Database's hosts."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from consentproxy.config import ConfigError, load_config
from consentproxy.config.model import CATEGORY_IDS, LANGUAGES, ServiceConfig
from consentproxy.cookies.classify import builtin_services

SITE = """
[sites.shop]
hosts = ["shop.example.nl"]
upstream = "http://127.0.0.1:9000"

[[sites.shop.services]]
name = "Shop chat"
category = "marketing"
hosts = ["chat.example.com"]
"""


def _load(tmp_path: Path, extra: str) -> list[str]:
    """The problems `load_config` reports for SITE with `extra` appended to its service table."""
    path = tmp_path / "consentproxy.toml"
    path.write_text(SITE + extra)
    try:
        load_config(path)
    except ConfigError as error:
        return [str(problem) for problem in error.problems]
    return []


def test_site_service_purpose_is_read(tmp_path: Path) -> None:
    path = tmp_path / "consentproxy.toml"
    path.write_text(SITE + 'purpose = { nl = "Chat met de winkel.", en = " Chat with the shop. " }\n')
    service = load_config(path).sites[0].consent.services[0]
    assert service.purpose == {"nl": "Chat met de winkel.", "en": "Chat with the shop."}
    path.write_text(SITE)
    assert load_config(path).sites[0].consent.services[0].purpose == {}
    path.write_text(SITE + 'purpose = "Chat."\n')
    assert load_config(path).sites[0].consent.services[0].purpose == {language: "Chat." for language in LANGUAGES}


@pytest.mark.parametrize(("extra", "key", "reason"), [
    ('purpose = { es = "Chat." }\n', "sites.shop.services[0].purpose.es", "unknown language"),
    ("purpose = { nl = 3 }\n", "sites.shop.services[0].purpose.nl", "expected a text"),
    ('purpose = { en = "" }\n', "sites.shop.services[0].purpose.en", "expected a text"),
    ("purpose = [\"Chat.\"]\n", "sites.shop.services[0].purpose", "expected a string or a table of languages"),
    ("purpose = 7\n", "sites.shop.services[0].purpose", "expected a string or a table of languages"),
])
def test_site_service_purpose_errors_name_file_key_and_reason(tmp_path: Path, extra: str, key: str,
                                                                reason: str) -> None:
    problems = _load(tmp_path, extra)
    assert len(problems) == 1, problems
    file, found_key, found_reason = problems[0].split(": ", 2)
    assert file == str(tmp_path / "consentproxy.toml")
    assert found_key == key and reason in found_reason


# --- the catalogue --------------------------------------------------------------------------------

#: words that would match ordinary site code if used alone as an inline signature
COMMON_WORDS = frozenset({
    "analytics", "tracking", "tracker", "script", "window", "document", "function", "return", "consent", "cookie",
    "cookies", "google",
    "facebook", "twitter", "pixel", "track", "event", "events", "init", "load", "config", "push", "ready", "optimize",
    "target", "segment", "video", "player", "chat", "widget", "share", "social", "search", "value", "static", "embed",
    "iframe", "image", "source", "async", "defer", "false", "true", "undefined",
})
_HOST_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")


def _site_own(service: ServiceConfig) -> bool:
    """The site's own necessary cookies (framework sessions): no vendor, no URLs."""
    return service.category == "necessary" and service.provider == "the site itself"


def test_catalogue_size_and_fields() -> None:
    services = builtin_services()
    assert len(services) >= 150
    for service in services:
        assert service.category in CATEGORY_IDS, service.name
        assert set(service.purpose) == set(LANGUAGES), service.name
        assert all(10 <= len(text) <= 300 and text.endswith(".") for text in service.purpose.values()), service.name
        if _site_own(service):
            continue
        assert service.provider.strip(), service.name
        assert urlsplit(service.privacy_url).scheme == "https" and urlsplit(service.privacy_url).netloc, service.name
        assert service.hosts or service.scripts or service.iframes or service.pixels, service.name
        for host in service.hosts:
            assert _HOST_RE.match(host), (service.name, host)
        for part in service.scripts + service.iframes + service.pixels:
            assert part == part.lower() and " " not in part, (service.name, part)


def test_catalogue_covers_the_trackers_measured_on_real_pages() -> None:
    """GUIDE §4: the hosts and snippets that most often still loaded before consent."""
    from consentproxy.html.trackers import TrackerMatcher

    matcher = TrackerMatcher(())
    for host in ("securepubads.g.doubleclick.net", "www.googletagservices.com", "sb.scorecardresearch.com",
                 "pixel.quantserve.com", "c.amazon-adsystem.com", "cdn.optimizely.com", "static.chartbeat.com",
                 "cdn.krxd.net", "z.moatads.com", "static.criteo.net", "cdn.parsely.com", "ib.adnxs.com",
                 "widgets.outbrain.com", "gapl.hit.gemius.pl", "js-sec.indexww.com", "bam.nr-data.net",
                 "tags.tiqcdn.com", "cdn.segment.com", "s0.2mdn.net"):
        found = matcher.host("https://" + host + "/x.js")
        assert found is not None and found.category in ("statistics", "marketing"), host
    for code, category in (("var _comscore = _comscore || [];", "statistics"),
                           ("var _qevents = _qevents || [];", "marketing"),
                           ("var _sf_async_config = {uid: 1};", "statistics"),
                           ("apstag.init({pubID: '1'});", "marketing"),
                           ("googletag.cmd.push(function() {});", "marketing"),
                           ("var pp_gemius_identifier = 'x';", "statistics"),
                           ("window.optimizely = window.optimizely || [];", "statistics"),
                           ("_linkedin_partner_id = '1';", "marketing"), ("twq('config','x');", "marketing"),
                           ("pintrk('load', '1');", "marketing"), ("ttq.load('X');", "marketing"),
                           ("snaptr('init', 'x');", "marketing"), ("rdt('init','t2_x');", "marketing"),
                           ("var _hsq = window._hsq = window._hsq || []; _hsq.push(['x']);", "marketing"),
                           ("var _paq = window._paq || []; _paq.push(['trackPageView']);", "statistics"),
                           ("pbjs.que.push(function() {});", "marketing")):
        found = matcher.inline(code)
        assert found is not None and found.category == category, code


def test_no_host_in_two_categories_and_none_shadowed() -> None:
    """A host has one category; a more specific host of another service is never hidden behind an earlier,
    broader one (the matcher takes the first service whose host is the host or a parent domain of it)."""
    services = builtin_services()
    category_of: dict[str, tuple[str, str]] = {}
    for service in services:
        for host in service.hosts:
            seen = category_of.setdefault(host, (service.category, service.name))
            assert seen[0] == service.category, (host, seen, service.name)
    for later_index, later in enumerate(services):
        for host in later.hosts:
            for earlier in services[:later_index]:
                for broader in earlier.hosts:
                    if host != broader and host.endswith("." + broader):
                        assert earlier.category == later.category, (host, later.name, broader, earlier.name)


def test_inline_signatures_are_specific() -> None:
    owner: dict[str, str] = {}
    for service in builtin_services():
        for signature in service.inline:
            assert len(signature) >= 5, (service.name, signature)
            assert signature.strip().lower() not in COMMON_WORDS, (service.name, signature)
            assert owner.setdefault(signature, service.name) == service.name, (signature, owner[signature])


def test_catalogue_order() -> None:
    services = builtin_services()
    names = [service.name for service in services]
    assert names.index("Google Ads") < names.index("Google Analytics")
    necessary = [i for i, service in enumerate(services) if service.category == "necessary"]
    others = [i for i, service in enumerate(services) if service.category != "necessary"]
    assert max(others) < min(necessary)  # consent managers and framework cookies last: trackers win inline


# --- the Open Cookie Database's hosts ----------------------------------------------------------------

WRONG_HOSTS = ("", "*", "com", "net", "google.com", "facebook.com", "shopify.com", "github.com", "wix.com",
               "yandex.ru", "207.net", "bing.com", "microsoft.com", "twitter.com", "t.co", "linkedin.com")


def _sane(host: str) -> bool:
    return (bool(_HOST_RE.match(host)) and host == host.lower() and "*" not in host and " " not in host
            and "[" not in host and "." in host.strip(".") and host not in WRONG_HOSTS)


def test_open_cookie_database_hosts_are_sane() -> None:
    from consentproxy.trackers_data import open_cookie_database_hosts

    everything = open_cookie_database_hosts(catalogue_wins=False)
    assert len(everything) >= 100
    for host, platform, category in everything:
        assert _sane(host), host
        assert platform.strip() and category in ("statistics", "marketing"), (host, platform, category)
    hosts = [host for host, _, _ in everything]
    assert len(hosts) == len(set(hosts)) and hosts == sorted(hosts)
    assert ("nl.sitestat.com" in hosts and "adform.net" in hosts  # "adform.net (3rd party)"
            and "demdex.net" in hosts and "commander1.com" in hosts)  # "or demdex.net …", a zero-width space


def test_open_cookie_database_hosts_leave_catalogue_hosts_to_the_catalogue() -> None:
    from consentproxy.trackers_data import open_cookie_database_hosts

    catalogue = {host for service in builtin_services() for host in service.hosts}
    remaining = open_cookie_database_hosts()
    assert len(remaining) >= 50
    for host, _, _ in remaining:
        labels = host.split(".")
        assert not any(".".join(labels[i:]) in catalogue for i in range(len(labels) - 1)), host
    remaining_hosts = {host for host, _, _ in remaining}
    assert {"adnxs.com", "scorecardresearch.com", "google-analytics.com"}.isdisjoint(remaining_hosts)
    assert {"zeotap.com", "weborama.fr", "smaato.net"} <= remaining_hosts
