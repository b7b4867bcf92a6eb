"""The client-side guard in a real browser: what a page's own script loads after the proxy rewrote the page.

The page's first-party script (an external file, which the proxy does not read) writes a tracker script
with document.write while the page is parsed and, after load, inserts a tracker script, iframe, pixel and
markup, and sends a beacon, a fetch and an XHR to catalogued tracker hosts, through the different DOM APIs.
Nothing of it may be requested before consent; after *Accept all* all of it is, in the order attempted;
statistics-only consent releases only the statistics ones. The page's own requests are never held and its
script's result shows in the DOM. Every request to another host is answered here, never sent.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import Proxy, serve_page, site_toml
from playwright.sync_api import Browser, Page

from consentproxy.html.trackers import TrackerMatcher

NONCE = "gu4rdN0nce"
#: (id, what the page's script does, URL, the kind the server would judge it as), in the order attempted
ATTEMPTS = [
    ("write", "document.write while parsing", "https://www.google-analytics.com/analytics.js?cp=write",
     "scripts"),
    ("writeframe", "document.write of an <iframe> while parsing", "https://www.youtube.com/embed/wr?cp=writeframe",
     "iframes"),
    ("script", "createElement + .src + appendChild",
     "https://securepubads.g.doubleclick.net/tag/js/gpt.js?cp=script", "scripts"),
    ("iframe", "setAttribute('src') + insertBefore", "https://www.youtube.com/embed/cpframe?cp=iframe", "iframes"),
    ("pixel", "new Image().src", "https://www.facebook.com/tr?id=1&cp=pixel", "pixels"),
    ("markup", "innerHTML of an <img>", "https://sb.scorecardresearch.com/p?c1=2&cp=markup", "pixels"),
    ("beacon", "navigator.sendBeacon", "https://www.google-analytics.com/g/collect?v=2&cp=beacon", "pixels"),
    ("fetch", "fetch", "https://ib.adnxs.com/ut/v3?cp=fetch", "pixels"),
    ("xhr", "XMLHttpRequest", "https://www.google-analytics.com/j/collect?v=1&cp=xhr", "pixels"),
    ("adjacent", "insertAdjacentHTML of an <iframe>", "https://www.youtube.com/embed/adj?cp=adjacent", "iframes"),
    ("late", "a script, src set after it was inserted", "https://static.hotjar.com/c/hotjar-1.js?cp=late",
     "scripts"),
]
URL = {name: url for name, _, url, _ in ATTEMPTS}


def assert_released_in_order(attempted: list[str], expected: list[str] | None = None) -> None:
    """Every attempt was requested once, and the scripts in the order the page made them (the guard runs them
    one after the other). Other requests start when the browser gets to them — an iframe's navigation, an
    image inserted as markup — so their place in the network's order is timing (seen under load, and with the
    discovery policy's reports): they are checked as released, not for their place."""
    expected = expected if expected is not None else [name for name, *_ in ATTEMPTS]
    scripts = [name for name, *_, kind in ATTEMPTS if kind == "scripts" and name in expected]
    assert sorted(attempted) == sorted(expected), attempted
    assert [n for n in attempted if n in scripts] == scripts, f"scripts out of order: {attempted}"


# The page's own script. Under Trusted Types it goes through its own policy, as such a page must.
APP = """(function () {
  var tt = window.trustedTypes && window.trustedTypes.createPolicy ?
    trustedTypes.createPolicy('app-policy', {createHTML: function (s) { return s; },
                                             createScriptURL: function (s) { return s; }}) : null;
  function html(s) { return tt ? tt.createHTML(s) : s; }
  function url(s) { return tt ? tt.createScriptURL(s) : s; }
  var U = %(urls)s;
  // every load event of an iframe: a held one must not report its empty document as loaded
  window.frameLoads = [];
  document.addEventListener('load', function (e) {
    if (e.target.tagName === 'IFRAME') frameLoads.push(e.target.src);
  }, true);
  document.write(html('<script src="' + U.write + '"><\\/script>'));
  document.write(html('<iframe src="' + U.writeframe + '"></iframe>'));
  document.write(html('<p id="written">written by the page</p>'));
  window.addEventListener('load', function () {
    var s = document.createElement('script');
    s.src = url(U.script);
    document.head.appendChild(s);
    var f = document.createElement('iframe');
    f.setAttribute('src', U.iframe);
    document.body.insertBefore(f, document.body.firstChild);
    new Image().src = U.pixel;
    var box = document.createElement('div');
    box.innerHTML = html('<span>markup</span><img alt="" src="' + U.markup + '">');
    document.body.appendChild(box);
    navigator.sendBeacon(U.beacon, 'x');
    window.heldFetch = fetch(U.fetch).then(function (r) { return r.status; });
    var x = new XMLHttpRequest();
    x.open('GET', U.xhr);
    x.send();
    box.insertAdjacentHTML('beforeend', html('<iframe src="' + U.adjacent + '"></iframe>'));
    var late = document.createElement('script');
    document.body.append(late);
    late.setAttribute('src', url(U.late));
    // first party: never held
    var own = document.createElement('script');
    own.src = url('/own.js');
    document.head.appendChild(own);
    new Image().src = '/own.png';
    fetch('/api.json').then(function (r) { return r.json(); }).then(function (data) {
      document.getElementById('result').textContent = 'page script ran: ' + data.answer;
    });
  });
})();"""
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Guarded</title>
<script%(nonce)s>window.pageInline = true;</script></head>
<body><h1>Guarded page</h1><p id="result">waiting</p>
<script%(nonce)s src="/app.js"></script><p id="after">after the script</p></body></html>"""
#: a nonce policy with Trusted Types ('strict-dynamic': the page's scripts may load others)
POLICY = (f"script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'; base-uri 'none'; "
          "require-trusted-types-for 'script'; trusted-types app-policy")
WATCH = """
window.__problems = [];
document.addEventListener('securitypolicyviolation', function (e) {
  // what a policy enforced; the proxy's sampled Report-Only policy (discovery) only reports
  if (e.disposition !== 'enforce') return;
  window.__problems.push('violation ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});
"""


def files() -> dict[str, tuple[str, str]]:
    app = APP % {"urls": json.dumps(URL)}
    return {"/app.js": (app, "text/javascript"), "/own.js": ("window.ownRan = true;", "text/javascript"),
            "/own.png": ("", "image/png"), "/api.json": ('{"answer": "first party ok"}', "application/json")}


@pytest.fixture(scope="module")
def plain_site() -> Iterator[int]:
    with serve_page(PAGE % {"nonce": ""}, files=files()) as port:
        yield port


@pytest.fixture(scope="module")
def strict_site() -> Iterator[int]:
    with serve_page(PAGE % {"nonce": f' nonce="{NONCE}"'}, {"Content-Security-Policy": POLICY},
                    files=files()) as port:
        yield port


@dataclass
class Visit:
    page: Page
    trackers: list[str] = field(default_factory=list)  # every request to another host, in order
    own: list[str] = field(default_factory=list)  # every request to the proxy
    problems: list[str] = field(default_factory=list)  # console errors, page errors

    def attempted(self) -> list[str]:
        """The attempts requested so far, by id, in request order (each once)."""
        out: list[str] = []
        for url in self.trackers:
            name = next((name for name, target in URL.items() if url == target), url)
            if name not in out:
                out.append(name)
        return out

    def wait_for(self, names: set[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not names <= set(self.attempted()) and time.monotonic() < deadline:
            self.page.wait_for_timeout(100)


def poll(page: Page, expression: str, timeout: float = 15) -> None:
    """Wait until `expression` is true in the page. (Playwright's wait_for_function evaluates a string
    with eval inside the page, which a policy without 'unsafe-eval' refuses; evaluate itself is exempt.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)


def visit(browser: Browser, proxy: Proxy) -> Visit:
    context = browser.new_context()
    page = context.new_page()
    seen = Visit(page)

    def answer(route: Any) -> None:  # nothing leaves this machine
        url = route.request.url
        seen.trackers.append(url)
        if ".js" in url.split("?")[0]:
            route.fulfill(status=200, content_type="text/javascript",
                          body=f"(window.trackersRan = window.trackersRan || []).push({json.dumps(url)});")
        elif "/embed/" in url:
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><p>embed</p>")
        else:
            route.fulfill(status=204, body="", headers={"access-control-allow-origin": "*"})

    context.route("https://**/*", answer)
    context.add_init_script(WATCH)
    page.on("request", lambda request: seen.own.append(request.url) if request.url.startswith(proxy.url) else None)
    # a report-only policy's console lines are reports (the proxy's discovery samples pages so), not errors
    page.on("console", lambda message: seen.problems.append("console " + message.text)
            if message.type == "error" and "report-only Content Security Policy" not in message.text else None)
    page.on("pageerror", lambda error: seen.problems.append(f"pageerror {error}"))
    page.goto(proxy.url + "/", wait_until="load")
    poll(page, "document.getElementById('result').textContent !== 'waiting'")
    page.wait_for_timeout(800)  # whatever the page's script would load has been asked for by now
    return seen


def categories() -> dict[str, str]:
    matcher = TrackerMatcher(())
    out = {}
    for name, _, url, kind in ATTEMPTS:
        match = matcher.url(kind, url)  # type: ignore[arg-type]
        assert match is not None, f"{url} is no catalogued tracker: the test needs another host"
        out[name] = match.category
    return out


def assert_page_works(seen: Visit, first_load: bool = True) -> None:
    page = seen.page
    assert page.locator("#result").text_content() == "page script ran: first party ok"
    assert page.evaluate("window.pageInline === true && window.ownRan === true")
    assert page.evaluate("document.getElementById('written').nextElementSibling.id") == "after", \
        "a write without a tracker stays the browser's own"
    for path in ("/own.js", "/own.png", "/api.json") if first_load else ():  # (a reload may take them from cache)
        assert seen.own.count(f"{seen.page.url.rstrip('/')}{path}") == 1, f"{path} not requested once"


def test_nothing_before_consent_then_everything_in_order(start_proxy: Any, plain_site: int,
                                                         browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("guarded", f"http://127.0.0.1:{plain_site}"))
    seen = visit(browser, proxy)
    page = seen.page
    try:
        guard = page.locator("script[src*='/_consent/guard.']")
        assert guard.count() == 1
        assert page.evaluate("document.scripts[0].src.indexOf('/_consent/guard.') > 0"), "the guard runs first"
        assert seen.trackers == [], "requested before consent"
        assert_page_works(seen)
        assert page.evaluate("typeof window.trackersRan") == "undefined"
        assert page.evaluate("window.frameLoads") == [], "a held iframe reported a load"
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        seen.wait_for(set(URL))
        assert_released_in_order(seen.attempted())
        poll(page, "(window.trackersRan || []).length === 3")  # the held scripts ran
        assert page.evaluate("window.heldFetch") == 204, "the held fetch settles once released"
        poll(page, "window.frameLoads.length >= 3")
        page.wait_for_timeout(200)
        assert sorted(page.evaluate("window.frameLoads")) == sorted(
            URL[name] for name, _, _, kind in ATTEMPTS if kind == "iframes"), "each released frame loads once"
        assert_page_works(seen)
        assert seen.problems == []
        assert page.evaluate("window.__problems") == []
    finally:
        page.context.close()


def test_statistics_only_releases_only_statistics(start_proxy: Any, plain_site: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("guarded", f"http://127.0.0.1:{plain_site}"))
    by_category = categories()
    statistics = [name for name, *_ in ATTEMPTS if by_category[name] == "statistics"]
    assert statistics and len(statistics) < len(ATTEMPTS)
    seen = visit(browser, proxy)
    page = seen.page
    try:
        assert seen.trackers == []
        page.locator("#cp-banner [data-cp-action=settings]").click()
        page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
        page.locator(".cp-dialog [data-cp-action=save_selection]").click()
        seen.wait_for(set(statistics))
        page.wait_for_timeout(1000)  # time for anything else to be (wrongly) released
        assert_released_in_order(seen.attempted(), statistics)  # statistics only
        # granted on the next page: the guard starts from the response's state, and still holds marketing
        seen.trackers.clear()
        page.reload(wait_until="load")
        poll(page, "document.getElementById('result').textContent !== 'waiting'")
        page.wait_for_timeout(800)
        assert page.locator("script[src*='/_consent/guard.']").get_attribute("data-cp-granted") == \
            "necessary statistics"
        assert set(seen.attempted()) == set(statistics)
        assert_page_works(seen, first_load=False)
        assert seen.problems == []
    finally:
        page.context.close()


def test_no_guard_once_everything_is_granted(start_proxy: Any, plain_site: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("guarded", f"http://127.0.0.1:{plain_site}"))
    seen = visit(browser, proxy)
    try:
        seen.page.locator("#cp-banner [data-cp-action=accept_all]").click()
        seen.wait_for(set(URL))
        seen.trackers.clear()
        seen.page.reload(wait_until="load")
        poll(seen.page, "document.getElementById('result').textContent !== 'waiting'")
        seen.wait_for(set(URL))
        assert seen.page.locator("script[src*='/_consent/guard.']").count() == 0
        assert set(seen.attempted()) == set(URL)  # the page loads its trackers itself, as it would directly
    finally:
        seen.page.context.close()


def test_a_nonce_policy_with_trusted_types_raises_no_violation(start_proxy: Any, strict_site: int,
                                                               browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("strict", f"http://127.0.0.1:{strict_site}", discovery_sample=1.0))
    seen = visit(browser, proxy)
    page = seen.page
    try:
        assert page.evaluate("document.scripts[0].src.indexOf('/_consent/guard.') > 0")
        assert page.evaluate("document.scripts[0].nonce") == NONCE
        assert seen.trackers == []
        assert_page_works(seen)
        page.locator("#cp-banner [data-cp-action=accept_all]").click()
        seen.wait_for(set(URL))
        assert_released_in_order(seen.attempted())
        poll(page, "(window.trackersRan || []).length === 3")
        page.wait_for_timeout(300)
        assert page.evaluate("window.__problems") == []
        assert seen.problems == []
    finally:
        page.context.close()


def guard_disagrees(browser: Browser, proxy: Proxy, urls: dict[str, bool]) -> dict[str, bool]:
    """The URLs whose script the guard holds other than `urls` says (url → whether the server blocks it). A
    detached script fetches nothing: whether its src attribute was set says whether the guard held it."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(proxy.url + "/", wait_until="load")
        held = page.evaluate("""urls => urls.filter(url => {
          const s = document.createElement('script');
          s.src = url;
          return !s.hasAttribute('src');
        })""", list(urls))
    finally:
        context.close()
    return {url: blocked for url, blocked in urls.items() if blocked != (url in held)}


def test_the_guard_holds_what_the_server_blocks_for_every_catalogued_host(start_proxy: Any, plain_site: int,
                                                                          browser: Browser) -> None:
    """guard.js itself, with the bundled catalogue's table, against the server's matcher: for each host rule
    the host and a subdomain, with the rule's path prefix and with a path under no rule. A detached script
    fetches nothing: whether its src attribute was set says whether the guard held it."""
    proxy: Proxy = start_proxy(site_toml("guarded", f"http://127.0.0.1:{plain_site}"))
    matcher = TrackerMatcher(())
    urls: dict[str, bool] = {}
    for host, prefix, _ in matcher.host_rules():
        path = prefix if prefix.startswith("/") else "/" + prefix
        for name in (host, "sub." + host):
            for url in (f"https://{name}{path}", f"https://{name}/zz-under-no-rule"):
                urls[url] = any(m is not None and m.category != "necessary"
                                for m in (matcher.url(kind, url) for kind in ("scripts", "iframes", "pixels")))
    assert len(urls) > 1000 and sum(urls.values()) > 500
    assert guard_disagrees(browser, proxy, urls) == {}


# -- third_party = "hold": the guard holds what page scripts load from hosts no rule knows ----------------------

DECLARED = "declared-maps.example"
#: (id, URL, held before Accept all): an unknown vendor's script, pixel and fetch; a CDN on the functional
#: list; a host the site declared in functional_hosts
HOLD_ATTEMPTS = [
    ("uscript", "https://widgets.unknown-vendor.example/w.js?cp=uscript", True),
    ("upixel", "https://img.unknown-cdn.example/p.png?cp=upixel", True),
    ("ufetch", "https://api.unknown-api.example/v1?cp=ufetch", True),
    ("functional", "https://cdnjs.cloudflare.com/ajax/libs/lib/1/lib.js?cp=functional", False),
    ("declared", f"https://tiles.{DECLARED}/t.png?cp=declared", False),
]
HOLD_APP = """window.addEventListener('load', function () {
  var U = %(urls)s;
  var s = document.createElement('script');
  s.src = U.uscript;
  document.head.appendChild(s);
  new Image().src = U.upixel;
  fetch(U.ufetch).catch(function () {});
  var lib = document.createElement('script');
  lib.src = U.functional;
  document.head.appendChild(lib);
  new Image().src = U.declared;
  document.getElementById('result').textContent = 'page script ran';
});"""


@pytest.fixture(scope="module")
def hold_site() -> Iterator[int]:
    app = HOLD_APP % {"urls": json.dumps({name: url for name, url, _ in HOLD_ATTEMPTS})}
    with serve_page(PAGE % {"nonce": ""}, files={"/app.js": (app, "text/javascript")}) as port:
        yield port


def _ids(seen: Visit) -> set[str]:
    return {url.rsplit("cp=", 1)[-1] for url in seen.trackers if "cp=" in url}


def test_under_hold_unknown_hosts_wait_for_accept_all_and_functional_ones_do_not(
        start_proxy: Any, hold_site: int, browser: Browser) -> None:
    proxy: Proxy = start_proxy(site_toml("held", f"http://127.0.0.1:{hold_site}", third_party="hold",
                                         functional_hosts=[DECLARED]))
    free = {name for name, _, held in HOLD_ATTEMPTS if not held}
    seen = visit(browser, proxy)
    page = seen.page
    try:
        assert page.locator("#result").text_content() == "page script ran"
        assert _ids(seen) == free, "before consent only the functional and declared hosts load"
        page.locator("#cp-banner [data-cp-action=settings]").click()
        page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
        page.locator(".cp-dialog [data-cp-action=save_selection]").click()
        page.wait_for_timeout(1000)
        assert _ids(seen) == free, "statistics only releases no unknown third party (held as marketing)"
        page.locator("#cp-reopen, [data-cp-action=reopen]").first.click()
        page.locator("#cp-banner [data-cp-action=accept_all], .cp-dialog [data-cp-action=accept_all]").first.click()
        deadline = time.monotonic() + 15
        while _ids(seen) != {name for name, *_ in HOLD_ATTEMPTS} and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert _ids(seen) == {name for name, *_ in HOLD_ATTEMPTS}
        assert seen.problems == []
    finally:
        page.context.close()


def test_under_hold_the_guard_decides_as_the_server_does(start_proxy: Any, hold_site: int,
                                                         browser: Browser) -> None:
    """For unknown hosts, the functional list (with and without its path prefixes), declared and own hosts
    and catalogued trackers: the guard holds exactly the URLs the server would hold."""
    from consentproxy.html.functional import FUNCTIONAL, ThirdParties

    proxy: Proxy = start_proxy(site_toml("held", f"http://127.0.0.1:{hold_site}", third_party="hold",
                                         functional_hosts=[DECLARED]))
    parties = ThirdParties(("127.0.0.1", "localhost"), (DECLARED,), hold=True)
    matcher = TrackerMatcher(())
    functional_hosts = [entry.split("/", 1)[0] for entry in FUNCTIONAL]
    lookalikes = [f"not{host}" for host in functional_hosts] + [f"{host}.other.example" for host in functional_hosts]
    trackers = [host for host, _, _ in itertools.islice(matcher.host_rules(), 300)]
    names = functional_hosts + lookalikes + trackers + [
        DECLARED, "localhost", "unknown-vendor.example", "www.google-analytics.com", "cdn.cookielaw.org"]
    urls: dict[str, bool] = {}
    for entry in list(FUNCTIONAL) + names:
        host, _, path = entry.partition("/")
        for name in (host, "sub." + host):
            for url in (f"https://{name}/{path}x.js", f"https://{name}/zz-under-no-rule.js"):
                tracker = next((m for m in (matcher.url(kind, url) for kind in ("scripts", "iframes", "pixels"))
                                if m is not None), None)
                urls[url] = tracker.category != "necessary" if tracker is not None else \
                    parties.party(url).origin == "unknown"
    assert sum(urls.values()) > 100 and sum(not held for held in urls.values()) > 100
    wrong = guard_disagrees(browser, proxy, urls)
    assert wrong == {}, sorted(wrong.items())
