"""Issue 16's acceptance, in a real browser: the real pages that request a tracker, directly and through a proxy.

The machinery is load_tests/browser_leaks.py's (see its docstring; `--pages all` there measures the whole
corpus and prints the per-host leak table): a local upstream serves each page, a real proxy process stands
in front of it, and headless chromium loads every page directly, through the proxy without a decision
(then clicks *Accept all*), and through the proxy with statistics-only consent, recording and aborting every
request to another host. Trackers are judged by load_tests/tracker_oracle.py, written for this test and
independent of the catalogue under test.

The pages are the 45 of the 170 whose direct load requests a tracker (measured on the whole corpus; the
rest request none, so they cannot leak): the whole corpus takes ~10 minutes, these ~3. Asserted, as the
issue asks: at least 98 % of them request no tracker through the proxy before consent; the proxy adds a
JavaScript error on at most 5 % of them (and on none but the known ones); after *Accept all* they request
their trackers again (blocking is reversible); with statistics-only consent no marketing host is requested;
the banner is shown until a decision.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, ROOT

sys.path.insert(0, str(ROOT / "load_tests"))
import browser_leaks

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)"),
    # the module fixture loads 45 pages three times each: ~3 min on a quiet machine, 10+ at a load of 15
    pytest.mark.timeout(1500),
]

#: the pages whose direct load requests a tracker (load_tests/browser_leaks.py --pages all, 2026-12-06): parser-
#: inserted scripts and preloads, ad iframes with srcdoc, tracking images, inline snippets, document.write,
#: stylesheets and media from ad hosts, a <base href> elsewhere (genius)
PAGES = [
    "blisterreview.com", "buzzap.jp", "genius.com", "getnews.jp", "gothamist.com", "hellogiggles.com",
    "ici.radio-canada.ca", "japan.cnet.com", "japan.zdnet.com", "mashable.com", "newrepublic.com--minutes",
    "pagesix.com", "phpspot.org", "techlog.iij.ad.jp", "thefederalistpapers.org", "timesofindia.indiatimes.com",
    "weekly.ascii.jp", "www.aol.com", "www.apartmenttherapy.com", "www.asahi.com", "www.bloomberg.com",
    "www.bloomberg.com--graphics", "www.broadwayworld.com", "www.buzzfeed.com", "www.buzzfeed.com--splash",
    "www.cnbc.com", "www.cnbc.com--redesign", "www.cnn.com", "www.fastcompany.com", "www.gizmodo.jp",
    "www.ipa.go.jp", "www.latimes.com--old", "www.lifehacker.jp", "www.littlethings.com", "www.msn.com",
    "www.ndtv.com", "www.opposingviews.com", "www.phoronix.com", "www.publickey1.jp", "www.si.com",
    "www.thepoliticalinsider.com", "www.usmagazine.com", "www.vulture.com--content-test",
    "www.westernjournalism.com", "www.wired.com--content-test",
]
#: the 12 pages this test ran before the whole tracker set: on them any new JavaScript error fails, as before; on
#: the others the issue's target applies (at most 5 % of the pages), and a new error is reported
STRICT = frozenset({
    "newrepublic.com--minutes", "hellogiggles.com", "www.littlethings.com", "www.buzzfeed.com--splash",
    "www.latimes.com--old", "www.wired.com--content-test", "www.vulture.com--content-test",
    "www.bloomberg.com--graphics", "phpspot.org", "www.ipa.go.jp", "timesofindia.indiatimes.com", "genius.com",
})
CLEAN_TARGET = 0.98
ERROR_TARGET = 0.05
JOBS = 3
SETTLE = 1.5

# What is broken today on these pages, each with its cause. The tests fail on anything new (a regression);
# a page that comes out fine is reported, so that the entry can go.
# (genius.com's <base href=//genius.com/> sent the banner's /_consent/ files and API there, until what we inject
# named the request's origin after a base URL)
KNOWN_ACCEPT_NOT_RECORDED: dict[str, str] = {}
KNOWN_WIPED: dict[str, str] = {}  # latimes--old was, until the banner caught a released snippet's document.write
KNOWN_NOT_REVERSIBLE: dict[str, str] = {}  # wired's onload Chartbeat loader: since the banner runs it; genius
KNOWN_ADDED_JS_ERRORS = {
    "www.wired.com--content-test": "the inline script defining the site's CN object (it names Omniture's s_account) "
                                   "is blocked as Adobe Analytics: the site's own later scripts throw",
}


def _check_known(failing: dict[str, Any], known: dict[str, str], what: str) -> None:
    new = {name: why for name, why in failing.items() if name not in known}
    assert not new, f"{what}: {new}"
    fixed = sorted(set(known) & set(PAGES) - set(failing))
    if fixed:
        warnings.warn(f"{what}: no longer on {fixed}; remove them from the test's known list", stacklevel=2)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("browser-real-pages")
    results = asyncio.run(browser_leaks.measure(PAGES, JOBS, SETTLE, 45, base, progress=False))
    data = browser_leaks.report(results, explain_top=5)
    (base / "report.json").write_text(json.dumps(data, indent=1, default=sorted))
    yield data


def test_at_least_98_percent_of_the_tracker_pages_request_no_tracker_before_consent(
        measured: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    totals = measured["totals"]
    leaking = {name: page["proxy_trackers_before_consent"] for name, page in measured["pages"].items()
               if page["direct_trackers"] and page["proxy_trackers_before_consent"]}
    with capsys.disabled():
        print(f"\n[issue 16, {len(PAGES)} real pages] requesting a tracker directly: "
              f"{totals['pages_direct_requesting_a_tracker']}; of those clean through the proxy before consent: "
              f"{totals['of_those_clean_through_proxy']} ({100 * totals['clean_share']:.1f} %, target 98 %); "
              f"tracker requests direct/proxy: {totals['tracker_requests_direct']}/"
              f"{totals['tracker_requests_proxy_before_consent']}; pages where the proxy adds a JS error: "
              f"{totals['pages_where_proxy_adds_js_error']}; leaking: {leaking}")
    assert totals["pages"] == len(PAGES)
    # the list is still the corpus' tracker pages (a page's direct load is the page's own HTML and scripts)
    assert totals["pages_direct_requesting_a_tracker"] >= 0.9 * len(PAGES)
    assert totals["clean_share"] >= CLEAN_TARGET, f"tracker pages leaking before consent: {leaking}"


def test_with_statistics_only_no_marketing_host_is_requested(measured: dict[str, Any]) -> None:
    marketing = {name: page["statistics_only_marketing"] for name, page in measured["pages"].items()
                 if page["statistics_only_marketing"]}
    assert not marketing


def test_the_banner_is_on_every_proxied_page_until_a_decision(measured: dict[str, Any]) -> None:
    for name, page in measured["pages"].items():
        assert page["banner"] is True, f"{name}: no visible banner through the proxy"
        assert page["loads"]["statistics"]["banner"] is False, f"{name}: banner shown after a decision"
    not_working = {name: page["accepted"] for name, page in measured["pages"].items() if page["accepted"] != "click"}
    _check_known(not_working, KNOWN_ACCEPT_NOT_RECORDED, "Accept all is not a plain click that records a decision")


def test_blocking_is_reversible(measured: dict[str, Any]) -> None:
    """After Accept all, every tracker the page requests directly is requested through the proxy too, and
    the page is still there."""
    missing = {name: page["missing_after_accept_all"] for name, page in measured["pages"].items()
               if page["missing_after_accept_all"]}
    _check_known(missing, KNOWN_NOT_REVERSIBLE, "trackers never requested after Accept all")
    wiped = {name: page["elements_before_after_accept"] for name, page in measured["pages"].items()
             if page["page_wiped_by_accept_all"]}
    _check_known(wiped, KNOWN_WIPED, "documents wiped out by Accept all (elements before, after)")


def test_the_proxy_breaks_no_more_javascript_than_today(measured: dict[str, Any]) -> None:
    added = {name: page["js_errors_added_by_proxy"] for name, page in measured["pages"].items()
             if page["js_errors_added_by_proxy"]}
    assert len(added) <= ERROR_TARGET * len(PAGES), added
    _check_known({name: errors for name, errors in added.items() if name in STRICT}, KNOWN_ADDED_JS_ERRORS,
                 "JavaScript errors the proxy adds before consent")
    others = {name: errors for name, errors in added.items()
              if name not in STRICT and name not in KNOWN_ADDED_JS_ERRORS}
    if others:
        warnings.warn(f"JavaScript errors the proxy adds before consent (within the 5 % target): {others}",
                      stacklevel=2)
    for name, page in measured["pages"].items():
        # Thrown in our scripts: their frame on top. (The guard wraps document.write and the DOM's insertion
        # methods, so an error of the page's own code run by them has a /_consent/ frame further down; such
        # an error counts above, as added, when the page's direct load does not raise it.)
        ours = [e for load in page["loads"].values() for e in load["errors"]
                if e["phase"] == "before" and "/_consent/" in (e["stack"].strip().splitlines() or [""])[0]]
        assert not ours, f"{name}: errors in the banner's own script before any decision: {ours}"
