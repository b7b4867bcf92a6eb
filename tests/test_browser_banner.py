"""Issue 5 acceptance: the consent banner in headless chromium (Playwright), against `consentproxy demo`.

One demo and one browser serve the module; every test has a browser context of
its own, so a fresh cookie jar. What the tracker stand-ins received is read
from the demo's tracker-hits.ndjson: only the lines appended after a mark
(a byte offset) count for a test. No mocks: real processes, real sockets, the
real banner script.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Proxy
from demo_support import Demo
from playwright.sync_api import Browser, BrowserContext, Page, Request

AXE_VERSION = "4.14.1"  # keep in step with the Makefile's AXE_VERSION
AXE_JS = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
NECESSARY_COOKIES = {"cp_consent", "kade_session"}
# The demo configuration's statistics services: Google Analytics and Hotjar.
STATISTICS_COOKIE = re.compile(r"_ga|_ga_.+|_gid|_hjSessionUser_.+|_hjSession_.+")
# Proof that a stand-in did not just get fetched but ran: the request its code sends.
RAN = {"ga": "hit", "facebook": "pixel", "hotjar": "hit", "youtube": "iframe"}
STATISTICS = {"ga", "hotjar"}
MARKETING = {"facebook", "youtube"}
WAIT_MS = 15_000  # upper bound for anything to appear; never asserted as a duration


# --- fixtures ----------------------------------------------------------------------------------------


class Traffic:
    """The browser context's requests in flight, to wait until a page has stopped talking."""

    def __init__(self, context: BrowserContext) -> None:
        self.pending: set[Request] = set()
        context.on("request", self._started)
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)

    def _started(self, request: Request) -> None:
        self.pending.add(request)

    def _ended(self, request: Request) -> None:
        self.pending.discard(request)

    def settle(self, page: Page, quiet_ms: int = 600) -> None:
        """Return once no request has been in flight for `quiet_ms`."""
        quiet = waited = 0
        while quiet < quiet_ms:
            if waited > WAIT_MS:
                raise AssertionError(f"requests still in flight: {sorted(r.url for r in self.pending)}")
            page.wait_for_timeout(100)
            waited += 100
            quiet = quiet + 100 if not self.pending else 0


class Visit:
    """A fresh browser context on the demo, with what it needs to check consent."""

    def __init__(self, demo: Demo, context: BrowserContext) -> None:
        self.demo = demo
        self.context = context
        self.traffic = Traffic(context)
        self.page = context.new_page()
        self.hits_path = demo.data_dir / "tracker-hits.ndjson"
        self.sink_mark = 0  # where the analytics sink stood at the last mark()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.demo.port}{path}"

    def open(self, path: str) -> Page:
        self.page.goto(self.url(path), wait_until="load")
        self.settle()
        return self.page

    def settle(self) -> None:
        self.traffic.settle(self.page)

    # the tracker stand-ins' log
    def mark(self) -> int:
        sink = self.demo.data_dir / "analytics-sink.ndjson"
        self.sink_mark = sink.stat().st_size if sink.exists() else 0
        return self.hits_path.stat().st_size if self.hits_path.exists() else 0

    def hits_since(self, mark: int) -> list[dict[str, Any]]:
        if not self.hits_path.exists():
            return []
        with self.hits_path.open("rb") as log:
            log.seek(mark)
            data = log.read()
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]

    def ran_since(self, mark: int) -> set[str]:
        """The stand-ins whose code ran (sent what only their running code sends).

        Google Analytics sends its hits through the proxy's analytics endpoint to the
        demo's analytics sink, so a GA hit there counts as GA running.
        """
        ran = {hit["tracker"] for hit in self.hits_since(mark) if RAN.get(hit["tracker"]) == hit["kind"]}
        if any(record["path"].startswith("/sink/ga4/") for record in sink_records(self.demo, self.sink_mark)):
            ran.add("ga")
        return ran

    def wait_for_trackers(self, mark: int, trackers: set[str]) -> None:
        deadline = time.monotonic() + WAIT_MS / 1000
        while not trackers <= self.ran_since(mark):
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {sorted(trackers)} to run; the stand-ins received:\n"
                                     + describe(self.hits_since(mark)))
            self.page.wait_for_timeout(100)

    # the cookie jar, HttpOnly cookies included
    def cookie_names(self) -> set[str]:
        return {cookie["name"] for cookie in self.context.cookies()}

    def non_necessary_cookies(self) -> set[str]:
        return self.cookie_names() - NECESSARY_COOKIES

    # the banner
    def decide(self, action: str, scope: str = "#cp-banner") -> None:
        self.page.locator(f"{scope} [data-cp-action={action}]").click()
        self.page.wait_for_selector('#cp-root[data-cp-decided="1"]', state="attached", timeout=WAIT_MS)
        self.page.wait_for_selector("#cp-banner", state="detached", timeout=WAIT_MS)
        self.page.wait_for_selector(".cp-dialog", state="detached", timeout=WAIT_MS)

    def open_settings(self, opener: str = "#cp-banner [data-cp-action=settings]") -> None:
        self.page.locator(opener).click()
        self.page.wait_for_selector(".cp-dialog[role=dialog][aria-modal=true]", timeout=WAIT_MS)

    def granted(self) -> set[str]:
        return set((self.page.get_attribute("#cp-root", "data-cp-granted") or "").split())


BUTTON_LOOK = """(e) => { const s = getComputedStyle(e); return [s.backgroundColor, s.color, s.fontSize,
  s.fontWeight, s.borderTopWidth, s.borderTopColor, s.textDecorationLine, s.opacity].join(' | '); }"""


def describe(hits: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {hit['tracker']} {hit['kind']} {hit['method']} {hit['path']}?{hit['query'][:80]}"
                     for hit in hits) or "  (nothing)"


@pytest.fixture
def visit(demo: Demo, browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="nl-NL")
    try:
        yield Visit(demo, context)
    finally:
        context.close()


# --- first visit -------------------------------------------------------------------------------------


def test_first_visit_shows_the_banner_and_nothing_tracks(visit: Visit, tmp_path: Path) -> None:
    mark = visit.mark()
    page = visit.open("/")
    banner = page.locator("#cp-banner")
    assert banner.is_visible()
    assert banner.get_attribute("role") == "dialog"
    assert page.get_attribute("#cp-root", "data-cp-decided") == "0"
    page.screenshot(path=str(tmp_path / "first-visit.png"))
    assert (tmp_path / "first-visit.png").stat().st_size > 0
    hits = visit.hits_since(mark)
    assert hits == [], "the stand-ins were contacted before any choice:\n" + describe(hits)
    assert visit.non_necessary_cookies() == set()
    assert page.locator("[data-cp-blocked]").count() >= 5  # gtag, its config, pixel, Hotjar, YouTube…
    # Equal weight: the three first-layer buttons have the same size.
    boxes = {}
    for action in ("accept_all", "reject_all", "settings"):
        box = page.locator(f"#cp-banner [data-cp-action={action}]").bounding_box()
        assert box is not None, action
        boxes[action] = box
    accept = boxes["accept_all"]
    for action, box in boxes.items():
        assert abs(box["width"] - accept["width"]) <= 1, (action, boxes)
        assert abs(box["height"] - accept["height"]) <= 1, (action, boxes)
    # …and the same look: no button is dressed down to steer the choice.
    looks = {action: page.locator(f"#cp-banner [data-cp-action={action}]").evaluate(BUTTON_LOOK)
             for action in boxes}
    assert looks["reject_all"] == looks["accept_all"] == looks["settings"], looks


def test_global_privacy_control_is_a_recorded_refusal_without_a_banner(demo: Demo, browser: Browser) -> None:
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    try:
        visit = Visit(demo, context)
        mark = visit.mark()
        page = visit.open("/")
        assert page.locator("#cp-banner").count() == 0  # nothing to ask: the signal is the answer
        assert page.locator("#cp-reopen").is_visible()  # and the visitor can still change it
        page.wait_for_selector('#cp-root[data-cp-decided="1"]', state="attached", timeout=WAIT_MS)
        state = page.evaluate("fetch('/_consent').then(r => r.json())")
        assert state["method"] == "gpc_signal" and state["granted"] == ["necessary"], state
        assert "cp_consent" in visit.cookie_names()  # recorded once; the next pages carry the decision
        visit.open("/en/")
        assert visit.hits_since(mark) == [], describe(visit.hits_since(mark))
        assert visit.non_necessary_cookies() == set()
        assert page.evaluate("fetch('/_consent').then(r => r.json())")["principal"] == state["principal"]
    finally:
        context.close()


# --- the three choices -------------------------------------------------------------------------------


def test_reject_all_keeps_every_tracker_out_across_pages(visit: Visit) -> None:
    mark = visit.mark()
    page = visit.open("/")
    visit.decide("reject_all")
    assert visit.granted() == {"necessary"}
    for label in ("Diensten", "Contact", "Privacy"):
        with page.expect_navigation(wait_until="load"):
            page.locator("nav.site-nav").get_by_role("link", name=label, exact=True).click()
        visit.settle()
        assert page.locator("#cp-banner").count() == 0, f"banner back on {page.url}"
        assert page.get_attribute("#cp-root", "data-cp-decided") == "1"
        assert page.locator("#cp-reopen").is_visible(), f"no re-open control on {page.url}"
    assert page.url.endswith("/privacy")
    hits = visit.hits_since(mark)
    assert hits == [], "the stand-ins were contacted after Reject all:\n" + describe(hits)
    assert visit.non_necessary_cookies() == set()
    assert "cp_consent" in visit.cookie_names()  # the refusal is remembered


def test_accept_all_runs_the_blocked_trackers_without_a_reload(visit: Visit) -> None:
    page = visit.open("/")
    mark = visit.mark()
    page.evaluate("window.__cp_marker = 1")
    visit.decide("accept_all")
    visit.wait_for_trackers(mark, STATISTICS | MARKETING)
    assert page.evaluate("window.__cp_marker") == 1, "the page was reloaded"
    assert visit.granted() == {"necessary", "preferences", "statistics", "marketing"}
    assert page.locator("[data-cp-blocked]").count() == 0
    visit.settle()
    names = visit.cookie_names()
    assert {"_ga", "_gid", "_ga_DEMO12345", "_fbp"} <= names, names
    assert any(name.startswith("_hjSessionUser_") for name in names), names


def test_statistics_only_runs_only_the_statistics_trackers(visit: Visit) -> None:
    page = visit.open("/")
    mark = visit.mark()
    visit.open_settings()
    switches = page.locator(".cp-dialog input[role=switch][data-cp-category]")
    assert switches.count() == 4
    states = {switches.nth(i).get_attribute("data-cp-category"): switches.nth(i).is_checked()
              for i in range(switches.count())}
    assert states == {"necessary": True, "preferences": False, "statistics": False, "marketing": False}, \
        "only the necessary switch may be on before a choice"
    assert page.locator(".cp-dialog input[data-cp-category=necessary]").is_disabled()
    page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
    assert page.locator(".cp-dialog input[data-cp-category=statistics]").is_checked()
    visit.decide("save_selection", ".cp-dialog")
    assert visit.granted() == {"necessary", "statistics"}
    visit.wait_for_trackers(mark, STATISTICS)
    visit.settle()
    assert visit.ran_since(mark) == STATISTICS
    assert not {hit["tracker"] for hit in visit.hits_since(mark)} & MARKETING, describe(visit.hits_since(mark))
    assert all(STATISTICS_COOKIE.fullmatch(name) for name in visit.non_necessary_cookies()), visit.cookie_names()
    assert "_ga" in visit.cookie_names()

    mark = visit.mark()
    page.reload(wait_until="load")
    visit.settle()
    assert page.locator("#cp-banner").count() == 0
    assert visit.ran_since(mark) == STATISTICS
    assert not {hit["tracker"] for hit in visit.hits_since(mark)} & MARKETING, describe(visit.hits_since(mark))
    assert page.locator("[data-cp-blocked=marketing]").count() > 0
    assert page.locator("[data-cp-blocked=statistics]").count() == 0
    assert all(STATISTICS_COOKIE.fullmatch(name) for name in visit.non_necessary_cookies()), visit.cookie_names()


def test_withdrawing_removes_the_cookies_and_blocks_the_trackers_again(visit: Visit) -> None:
    page = visit.open("/")
    mark = visit.mark()
    visit.decide("accept_all")
    visit.wait_for_trackers(mark, STATISTICS | MARKETING)
    # The next page brings the site's own HttpOnly marketing cookie, which no script could remove.
    with page.expect_navigation(wait_until="load"):
        page.locator("nav.site-nav").get_by_role("link", name="Diensten", exact=True).click()
    visit.settle()
    assert {"_ga", "_fbp", "_gcl_au"} <= visit.cookie_names(), visit.cookie_names()
    assert next(c for c in visit.context.cookies() if c["name"] == "_gcl_au")["httpOnly"]

    visit.open_settings("#cp-reopen")
    withdraw = page.locator(".cp-dialog [data-cp-action=withdraw]")
    assert withdraw.is_visible()
    mark = visit.mark()
    page.evaluate("window.__cp_marker = 1")
    with page.expect_navigation(wait_until="load", timeout=WAIT_MS):
        withdraw.click()
    visit.settle()
    assert page.evaluate("window.__cp_marker") is None, "the page was not reloaded"
    leftover = visit.non_necessary_cookies()
    assert leftover == set(), f"still in the jar after withdrawing: {sorted(leftover)}"
    assert page.url.endswith("/diensten")
    assert visit.granted() == {"necessary"}
    assert page.locator("[data-cp-blocked=statistics]").count() > 0
    assert page.locator("[data-cp-blocked=marketing]").count() > 0
    hits = visit.hits_since(mark)
    assert hits == [], "the stand-ins were contacted after withdrawing:\n" + describe(hits)
    assert page.locator("#cp-reopen").count() == 1


# --- keyboard ------------------------------------------------------------------------------------------

# The banner is in the shadow root of #cp-root: the document's activeElement is then #cp-root itself.
DEEP_ACTIVE = "const deep = () => { let e = document.activeElement; " \
              "while (e && e.shadowRoot && e.shadowRoot.activeElement) e = e.shadowRoot.activeElement; return e; };"
ACTIVE = f"""() => {{ {DEEP_ACTIVE} const e = deep(); return e ? (e.getAttribute('data-cp-action')
  || e.getAttribute('data-cp-category') || e.id || e.localName) : null; }}"""
FOCUS_RING = f"""(selector) => {{ {DEEP_ACTIVE} const e = deep(); const s = getComputedStyle(
  selector ? e.parentElement.querySelector(selector) : e);
  return {{outline: s.outlineStyle + ' ' + s.outlineWidth, shadow: s.boxShadow}}; }}"""
IN_DIALOG = f"""() => {{ {DEEP_ACTIVE} const root = document.getElementById('cp-root').shadowRoot;
  const dialog = root && root.querySelector('.cp-dialog'); return !!dialog && dialog.contains(deep()); }}"""


def tab_to(page: Page, target: str, limit: int = 60) -> None:
    """Press Tab until the focused element is `target` (as named by ACTIVE)."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(ACTIVE))
        if seen[-1] == target:
            return
    raise AssertionError(f"Tab never reached {target}; focus went through {seen}")


def assert_focus_visible(page: Page, ring_on: str | None = None) -> None:
    ring = page.evaluate(FOCUS_RING, ring_on)
    assert not ring["outline"].startswith("none") or ring["shadow"] != "none", \
        f"no visible focus on {page.evaluate(ACTIVE)}: {ring}"


def test_keyboard_only_through_both_layers(visit: Visit) -> None:
    page = visit.open("/")
    for action in ("accept_all", "reject_all", "settings"):
        tab_to(page, action)
        assert_focus_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_selector(".cp-dialog", timeout=WAIT_MS)
    assert page.evaluate(IN_DIALOG), f"focus stayed outside the dialog, on {page.evaluate(ACTIVE)}"
    visited = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        assert page.evaluate(IN_DIALOG), f"Tab left the dialog, to {page.evaluate(ACTIVE)}"
        visited.add(page.evaluate(ACTIVE))
    assert {"close", "save_selection", "accept_all", "reject_all", "statistics", "marketing"} <= visited, visited
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(IN_DIALOG), f"Shift+Tab left the dialog, to {page.evaluate(ACTIVE)}"

    tab_to(page, "statistics")
    assert_focus_visible(page, ".cp-track")
    statistics = page.locator(".cp-dialog input[data-cp-category=statistics]")
    assert not statistics.is_checked()
    page.keyboard.press("Space")
    assert statistics.is_checked()
    page.keyboard.press("Space")
    assert not statistics.is_checked()

    page.keyboard.press("Escape")
    page.wait_for_selector(".cp-dialog", state="detached", timeout=WAIT_MS)
    assert page.evaluate(ACTIVE) == "settings", "focus did not return to the button that opened the settings"
    assert page.locator("#cp-banner").is_visible(), "Escape closes the settings, not the first layer"
    assert page.get_attribute("#cp-root", "data-cp-decided") == "0"

    page.keyboard.press("Enter")
    page.wait_for_selector(".cp-dialog", timeout=WAIT_MS)
    tab_to(page, "statistics")
    page.keyboard.press("Space")
    tab_to(page, "save_selection")
    assert_focus_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_selector('#cp-root[data-cp-decided="1"]', state="attached", timeout=WAIT_MS)
    page.wait_for_selector(".cp-dialog", state="detached", timeout=WAIT_MS)
    assert visit.granted() == {"necessary", "statistics"}
    assert page.evaluate(ACTIVE) == "cp-reopen", "focus was lost after saving"
    assert_focus_visible(page)


def test_the_first_tab_goes_to_the_first_layer(visit: Visit) -> None:
    """#cp-root is the last child of <html> (out of <body>'s opacity, filter and transform): while the first
    layer shows, Tab from the start of the page goes to it before the page's links."""
    page = visit.open("/")
    assert page.evaluate("document.documentElement.lastElementChild.id") == "cp-root"
    assert page.locator("nav.site-nav a").count() > 0  # links that come first in the document
    page.keyboard.press("Tab")
    in_banner = f"() => {{ {DEEP_ACTIVE} const e = deep(); return !!e && !!e.closest('#cp-banner'); }}"
    assert page.evaluate(in_banner), f"the first Tab went to {page.evaluate(ACTIVE)}"
    assert_focus_visible(page)
    visit.decide("reject_all")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")  # no first layer any more: the page's own order
    assert page.evaluate("document.activeElement.id") != "cp-root"  # the host, when focus is in the banner


# --- axe-core --------------------------------------------------------------------------------------------

AXE_RUN = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
  });
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}));
}"""


# The banner alone: everything inside the shadow root of #cp-root (axe names such a node by a list of
# selectors, one per tree); what axe checked there, to know that it did look inside.
AXE_RUN_SHADOW = """async () => {
  const result = await axe.run({fromShadowDom: ['#cp-root', '#cp-ui']}, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
  });
  const inside = (r) => r.nodes.filter(n => Array.isArray(n.target[0]) && n.target[0][0] === '#cp-root').length;
  return {violations: result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: JSON.stringify(n.target), summary: n.failureSummary}))})),
    passed: result.passes.map(inside).reduce((a, b) => a + b, 0)};
}"""


def axe_scan(page: Page) -> list[dict[str, Any]]:
    if not AXE_JS.exists():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: run `make axe`")
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    assert page.evaluate("axe.version") == AXE_VERSION
    violations: list[dict[str, Any]] = page.evaluate(AXE_RUN)
    return violations


def axe_scan_shadow(page: Page) -> list[dict[str, Any]]:
    """The violations axe finds inside the banner's shadow root; fails unless it checked nodes there."""
    axe_scan(page)  # loads axe
    result: dict[str, Any] = page.evaluate(AXE_RUN_SHADOW)
    assert result["passed"] > 10, f"axe checked nothing inside the shadow root: {result}"
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def in_banner(violation: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of a violation that are ours: the banner, its dialog, the re-open control, placeholders."""
    return [node for node in violation["nodes"] if re.search(r"#cp-|\.cp-|cp-embed", node["target"])]


def serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in violations if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("path", ["/", "/en/"])
def test_axe_finds_no_serious_violation_in_either_layer(visit: Visit, path: str) -> None:
    page = visit.open(path)
    first = axe_scan(page)
    assert serious(first) == [], "first layer"

    visit.open_settings()
    for summary in page.locator(".cp-dialog summary").all():
        summary.click()  # the service and cookie tables too
    assert page.locator(".cp-dialog table").count() > 0
    second = axe_scan(page)
    assert serious(second) == [], "settings layer"
    ours = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in in_banner(v)]}"
            for v in first + second if in_banner(v)]
    assert ours == [], "the banner has accessibility findings"
    inside = axe_scan_shadow(page)  # the dialog is open: both layers are in the shadow root
    assert inside == [], "findings inside the banner's shadow root"


# --- asking again --------------------------------------------------------------------------------------


def demo_site_config(demo: Demo, revision: int) -> str:
    """The demo's own [sites.demo] tables (services, cookies) with the given notice revision."""
    text = (demo.data_dir / "consentproxy.toml").read_text("utf-8")
    sites = text[text.index("[sites.demo]"):]
    sites, count = re.subn(r"^revision = \d+$", f"revision = {revision}", sites, flags=re.MULTILINE)
    assert count == 1
    # its regimes need the [geoip] table that comes before the sites
    geoip = text[text.index("[geoip]"):text.index("[sites.demo]")] if "[geoip]" in text else ""
    return geoip + sites


def reload_proxy(proxy: Proxy, revision: int) -> None:
    """Raise the revision in the proxy's configuration file and send SIGHUP, as an operator would."""
    text = proxy.config_path.read_text("utf-8")
    text, count = re.subn(r"^revision = \d+$", f"revision = {revision}", text, flags=re.MULTILINE)
    assert count == 1
    reloads = proxy.log().count("configuration reloaded")
    proxy.config_path.write_text(text, "utf-8")
    proxy.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_MS / 1000
    while proxy.log().count("configuration reloaded") == reloads:
        assert proxy.process.poll() is None, proxy.log()
        assert "reload refused" not in proxy.log(), proxy.log()
        assert time.monotonic() < deadline, f"the proxy did not reload:\n{proxy.log()}"
        time.sleep(0.1)


@pytest.mark.parametrize("action", ["reject_all", "accept_all"])
def test_a_new_notice_revision_asks_again(demo: Demo, browser: Browser, start_proxy: Callable[..., Proxy],
                                          action: str) -> None:
    proxy = start_proxy(demo_site_config(demo, revision=1))
    # Another visitor's view first: it teaches the new proxy the vendors in the page's body, which this
    # visitor's banner then names (else their consent would not name them, and they would be asked again).
    urllib.request.urlopen(proxy.url + "/", timeout=30).read()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(proxy.url + "/", wait_until="load")
        page.locator(f"#cp-banner [data-cp-action={action}]").click()
        page.wait_for_selector("#cp-banner", state="detached", timeout=WAIT_MS)
        page.reload(wait_until="load")
        assert page.locator("#cp-banner").count() == 0, "the decision was not remembered"
        assert page.get_attribute("#cp-root", "data-cp-decided") == "1"

        reload_proxy(proxy, revision=2)
        page.reload(wait_until="load")
        assert page.locator("#cp-banner").is_visible(), "a new revision must ask again"
        assert page.get_attribute("#cp-root", "data-cp-decided") == "0"
        assert page.locator("[data-cp-blocked=statistics]").count() > 0, "trackers held back until asked again"
    finally:
        context.close()


# --- languages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "texts"), [
    ("/", ["Alles accepteren", "Alles weigeren", "Instellingen"]),
    ("/en/", ["Accept all", "Reject all", "Settings"]),
])
def test_the_banner_speaks_the_page_language(visit: Visit, path: str, texts: list[str]) -> None:
    page = visit.open(path)
    buttons = [page.locator(f"#cp-banner [data-cp-action={action}]").inner_text().strip()
               for action in ("accept_all", "reject_all", "settings")]
    assert buttons == texts
    assert page.get_attribute("#cp-root", "lang") == ("nl" if path == "/" else "en")


# --- analytics through the proxy ---------------------------------------------------------------------


def sink_records(demo: Demo, mark: int) -> list[dict[str, Any]]:
    path = demo.data_dir / "analytics-sink.ndjson"
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(mark)
        return [json.loads(line) for line in log.read().decode("utf-8").splitlines() if line.strip()]


def test_analytics_hits_go_through_the_proxy_and_follow_the_choice(demo: Demo, browser: Browser) -> None:
    # "localhost", so that the page's own URL is not the visitor's address (127.0.0.1 or ::1)
    context = browser.new_context()
    try:
        visit = Visit(demo, context)
        sink = demo.data_dir / "analytics-sink.ndjson"
        mark = sink.stat().st_size if sink.exists() else 0
        hits_mark = visit.mark()
        page = visit.page
        page.goto(f"http://localhost:{demo.port}/en/", wait_until="load")
        visit.settle()
        assert sink_records(demo, mark) == []  # nothing before a decision
        visit.decide("accept_all")
        deadline = time.monotonic() + WAIT_MS / 1000
        while not sink_records(demo, mark) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        records = sink_records(demo, mark)
        assert records, "no analytics hit reached the sink after Accept all"
        hit = records[0]
        assert hit["path"] == "/sink/ga4/g/collect"
        query = dict(pair.split("=", 1) for pair in hit["query"].split("&") if "=" in pair)
        assert query["en"] == "page_view" and query["gcs"] == "G111"
        assert query["_uip"] in ("127.0.0.0", "%3A%3A", "0.0.0.0")  # reduced, never the visitor's address
        # The visitor is 127.0.0.1 here; the sink's own Host header (the backend's address) aside, it is nowhere.
        for record in records:
            sent = json.dumps([record["query"], record["body"],
                               [h for h in record["headers"] if h[0].lower() != "host"]])
            assert "127.0.0.1" not in sent and "::1" not in sent, sent
        # the GA stand-in sent its hits to the proxy, not to its own (third-party) host
        assert not [h for h in visit.hits_since(hits_mark) if h["tracker"] == "ga" and h["kind"] == "hit"]
    finally:
        context.close()
