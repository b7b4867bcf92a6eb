"""Issue 16: real pages in a real browser, directly and through a real proxy process (a fixed subset).

The machinery is load_tests/browser_leaks.py's (see its docstring; `--pages all` there is the full
measurement): a local upstream serves each page, a proxy process stands in front of it, and headless
chromium loads every page directly, through the proxy without a decision (then clicks *Accept all*), and
through the proxy with statistics-only consent, recording and aborting every request to another host.

What is asserted is what already holds and must not regress: the banner is shown on every proxied page and
not once a decision is made; blocking is reversible (after *Accept all* every tracker the page requests
directly is requested again); the proxy breaks no page's JavaScript that it did not break before. The
issue's acceptance target -- at least 98 % of the pages that request a tracker request none through the
proxy before consent -- is NOT asserted yet (it fails today): the leak figures are printed instead, and
the assertion is to be added when the blocking work lands.
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
    # the module fixture loads 12 pages three times each: ~1 min on a quiet machine, 4+ at a load of 15
    pytest.mark.timeout(900),
]

#: 12 pages that request trackers when loaded directly, each in its own way: parser-inserted scripts and
#: preloads (newrepublic, timesofindia, ipa.go.jp), ad iframes with srcdoc and pixels (hellogiggles,
#: littlethings, buzzfeed splash), tracking images (bloomberg graphics, phpspot), inline snippets (vulture,
#: wired), a javascript: URL iframe and document.write (latimes old), and a <base href> elsewhere (genius)
PAGES = [
    "newrepublic.com--minutes", "hellogiggles.com", "www.littlethings.com", "www.buzzfeed.com--splash",
    "www.latimes.com--old", "www.wired.com--content-test", "www.vulture.com--content-test",
    "www.bloomberg.com--graphics", "phpspot.org", "www.ipa.go.jp", "timesofindia.indiatimes.com", "genius.com",
]
JOBS = 3
SETTLE = 1.5

# What is broken today on these pages, each with its cause. The tests fail on anything new (a regression);
# a page that comes out fine is reported, so that the entry can go.
BASE_ELSEWHERE = "<base href=//genius.com/> resolves the banner's relative /_consent/ script, CSS and API on genius.com"
KNOWN_ACCEPT_NOT_RECORDED = {"genius.com": BASE_ELSEWHERE}
KNOWN_WIPED: dict[str, str] = {}  # latimes--old was, until the banner caught a released snippet's document.write
KNOWN_NOT_REVERSIBLE = {
    "genius.com": BASE_ELSEWHERE,
    "www.wired.com--content-test": "chartbeat's loader is a window.onload handler: re-run after load, it never fires",
}
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


def test_leak_figures(measured: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's figures on this subset, printed (not asserted yet: see the module's docstring)."""
    totals = measured["totals"]
    with capsys.disabled():
        print(f"\n[issue 16, {len(PAGES)} real pages] pages requesting a tracker directly: "
              f"{totals['pages_direct_requesting_a_tracker']}; of those clean through the proxy before consent: "
              f"{totals['of_those_clean_through_proxy']} ({100 * totals['clean_share']:.0f} %, target 98 %); "
              f"tracker requests direct/proxy: {totals['tracker_requests_direct']}/"
              f"{totals['tracker_requests_proxy_before_consent']}; pages where the proxy adds a JS error: "
              f"{totals['pages_where_proxy_adds_js_error']}")
        for row in measured["hosts"][:10]:
            if row["pages_leaking"]:
                print(f"  leaking: {row['host']} ({row['category']}) on {row['pages_leaking']} of "
                      f"{row['pages_direct']} pages")
    assert totals["pages"] == len(PAGES)
    assert totals["pages_direct_requesting_a_tracker"] > 0  # the subset still measures something


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
    _check_known(added, KNOWN_ADDED_JS_ERRORS, "JavaScript errors the proxy adds before consent")
    for name, page in measured["pages"].items():
        # Thrown in our scripts: their frame on top. (The guard wraps document.write and the DOM's insertion
        # methods, so an error of the page's own code run by them has a /_consent/ frame further down; such
        # an error counts above, as added, when the page's direct load does not raise it.)
        ours = [e for load in page["loads"].values() for e in load["errors"]
                if e["phase"] == "before" and "/_consent/" in (e["stack"].strip().splitlines() or [""])[0]]
        assert not ours, f"{name}: errors in the banner's own script before any decision: {ours}"
