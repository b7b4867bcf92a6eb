#!/usr/bin/env python3
"""Issue 16's acceptance measurement: what the real pages request before consent, in a real browser.

What: every page of tests/data/real-pages is served by a local upstream (aiohttp, in a thread, at
``/<page-name>`` as ``text/html; charset=utf-8``) with a real consentproxy process in front of it (started
as an operator would, ``python -m consentproxy serve -c FILE``, through tests/conftest.launch_proxy).
Headless chromium (Playwright) loads each page three times, each in a fresh browser context:

- ``direct``: from the upstream itself, as the site would be without the proxy;
- ``proxy``: through the proxy with no consent decision (phase ``before``); then the banner's
  *Accept all* button is clicked and what follows is phase ``accept`` (the banner re-activates what was
  blocked, without a reload);
- ``statistics``: through the proxy with a consent cookie granting only ``necessary`` and ``statistics``
  (signed with the proxy's own key, as the consent API issues it).

Every request to a host other than the page's own origin (127.0.0.1:port) is recorded -- URL, Playwright's
resource type, and Chromium's initiator (``parser``, ``script`` with the script's URL, ``preload``, ``other``,
from the DevTools protocol) -- and aborted, so the run needs no network and a third-party script never
runs. A consequence to keep in mind: what a tracker's own script would load next (gtm.js loading
analytics.js, an ad library loading its bidders) never happens in any of the loads; what is measured is what
the page itself (its HTML and its inline and first-party scripts) asks for. After the load event the page is
left ``--settle`` seconds (networkidle means nothing when everything is aborted). JavaScript errors
(``pageerror``) are recorded in every load.

Requests are judged by load_tests/tracker_oracle.py, a list of tracker domains written for this test and
independent of the proxy's catalogue and matcher.

Run:   .venv/bin/python load_tests/browser_leaks.py --pages all --jobs 3 --out report.json
       (--pages 12 takes 12 pages spread over the corpus; --pages a,b takes those pages by name)
Needs: Debian's chromium at /usr/bin/chromium (`make system-deps`), Playwright's Python package (dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOAD_TESTS = Path(__file__).resolve().parent
REPO = LOAD_TESTS.parent
CORPUS = REPO / "tests" / "data" / "real-pages"
for _path in (str(LOAD_TESTS), str(REPO / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import tracker_oracle as oracle  # noqa: E402
from aiohttp import web  # noqa: E402
from conftest import CHROMIUM, Proxy, free_port, launch_proxy, mint, serve_app, site_toml  # noqa: E402

ALL_PAGES = sorted(p.name.removesuffix(".html.gz") for p in CORPUS.glob("*.html.gz"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COOKIE_NAME = "cp_consent"
ACCEPT_BUTTON = "#cp-banner [data-cp-action=accept_all]"
STATISTICS_ONLY = {"necessary", "statistics"}
TARGET_CLEAN = 0.98  # share of tracker-requesting pages that must request none through the proxy
TARGET_JS_ERRORS = 0.05  # share of pages where the proxy may add a JavaScript error


# --- the pages and the servers ----------------------------------------------------------------------------


def page_html(name: str) -> bytes:
    return gzip.decompress((CORPUS / f"{name}.html.gz").read_bytes())


def site_domain(name: str) -> str:
    """The registrable domain of the site a page was captured from (``www.wired.com--other`` -> wired.com)."""
    return oracle.registrable(name.split("--")[0])


def choose_pages(spec: str) -> list[str]:
    """``all``, a number (that many pages spread evenly over the sorted corpus), or page names with commas."""
    if spec == "all":
        return list(ALL_PAGES)
    if spec.isdigit():
        count = min(int(spec), len(ALL_PAGES))
        return [ALL_PAGES[i * len(ALL_PAGES) // count] for i in range(count)]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_PAGES]
    if unknown:
        raise SystemExit(f"not in {CORPUS}: {', '.join(unknown)}")
    return names


def upstream_app(pages: list[str]) -> web.Application:
    """Each page at /<name>, as text/html; charset=utf-8; anything else is a 404 (the page's relative URLs)."""
    return bodies_app({name: page_html(name) for name in pages})


def bodies_app(bodies: dict[str, bytes]) -> web.Application:
    """Each body at /<name>, as text/html; charset=utf-8; anything else is a 404."""
    async def serve(request: web.Request) -> web.Response:
        body = bodies.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


@dataclass
class Servers:
    upstream_url: str
    proxy: Proxy
    cookies: dict[str, str]  # consent state -> cookie value


@contextlib.contextmanager
def servers(pages: list[str], base: Path) -> Iterator[Servers]:
    """The upstream (a thread of this process) and a proxy process in front of it, for the block's duration."""
    port = free_port()
    with serve_app(upstream_app(pages), port):
        upstream_url = f"http://127.0.0.1:{port}"
        proxy = launch_proxy(base, 0, site_toml("pages", upstream_url))
        try:
            yield Servers(upstream_url, proxy, {"statistics": mint(proxy, STATISTICS_ONLY)})
        finally:
            proxy.stop()


# --- one load in chromium ----------------------------------------------------------------------------------


@dataclass
class Load:
    """One page view in a fresh browser context: every third-party request and every JavaScript error."""

    kind: str  # direct, proxy, statistics
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)  # url, host, type, initiator, initiator_url, phase
    errors: list[dict[str, str]] = field(default_factory=list)  # phase, message, stack (first lines)
    banner: bool | None = None  # the banner in the page and visible (proxied loads without a decision)
    blocked_elements: int | None = None  # [data-cp-blocked] elements in the page before any decision
    accepted: str = ""  # how Accept all was given: click, script-click (the button was covered), no-banner...
    elements: dict[str, int] = field(default_factory=dict)  # elements in the document before/after Accept all
    load_error: str = ""
    final_url: str = ""
    seconds: float = 0.0

    def tracker_requests(self, *phases: str) -> list[dict[str, str]]:
        return [r for r in self.requests if r["category"] and (not phases or r["phase"] in phases)]


def _initiator(event: dict[str, Any]) -> tuple[str, str]:
    """Chromium's initiator of a request: its type, and the document or script that started it."""
    initiator = event.get("initiator") or {}
    kind = str(initiator.get("type", ""))
    if initiator.get("url"):
        return kind, str(initiator["url"])
    stack = initiator.get("stack")
    while stack:
        for frame in stack.get("callFrames", []):
            if frame.get("url"):
                return kind, str(frame["url"])
        stack = stack.get("parent")
    return kind, ""


#: after Accept all, how long to wait at most for the trackers of the direct load to be requested again
#: (beyond `settle`): a loaded machine can take seconds to re-run released scripts
ACCEPT_WAIT = 20.0


async def load_page(browser: Any, url: str, kind: str, settle: float, timeout: float,
                    cookie: str | None = None, accept: bool = False, expect: frozenset[str] = frozenset()) -> Load:
    """Load `url`, record and abort every request to another origin, settle; optionally click Accept all and
    wait (up to ACCEPT_WAIT more) until the oracle entries in `expect` have been requested again."""
    started = time.monotonic()
    result = Load(kind, url)
    origin = urlsplit(url).netloc
    phase = {"now": "before"}
    seen: list[tuple[str, str, str]] = []  # url, resource type, phase
    initiators: dict[str, list[tuple[str, str]]] = defaultdict(list)
    context = await browser.new_context(service_workers="block", viewport={"width": 1280, "height": 900})
    try:
        if cookie is not None:
            await context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": url}])

        async def route(route: Any) -> None:
            request = route.request
            parts = urlsplit(request.url)
            if parts.scheme in ("http", "https") and parts.netloc != origin:
                seen.append((request.url, request.resource_type, phase["now"]))
                await route.abort()
            else:
                await route.continue_()

        await context.route("**/*", route)
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent",
               lambda event: initiators[event["request"]["url"]].append(_initiator(event)))
        await cdp.send("Network.enable")

        def on_error(error: Any) -> None:
            stack = "\n".join((getattr(error, "stack", "") or "").splitlines()[1:4])
            result.errors.append({"phase": phase["now"], "message": f"{error.name}: {error.message}"[:500],
                                  "stack": stack[:500]})

        page.on("pageerror", on_error)
        try:
            await page.goto(url, wait_until="load", timeout=timeout * 1000)
        except Exception as exc:  # a page whose load never fires is measured all the same
            result.load_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        await page.wait_for_timeout(settle * 1000)
        if kind == "proxy" or (kind == "statistics"):
            banner = page.locator("#cp-banner")
            result.banner = await banner.count() > 0 and await banner.first.is_visible()
            result.blocked_elements = await page.locator("[data-cp-blocked]").count()
        if accept:
            result.elements["before"] = await _element_count(page)
            phase["now"] = "accept"
            result.accepted = await _accept_all(context, page)
            await page.wait_for_timeout(settle * 1000)
            deadline = time.monotonic() + ACCEPT_WAIT
            while time.monotonic() < deadline and not expect <= _entries_seen(seen, "before", "accept"):
                await page.wait_for_timeout(100)
            result.elements["after"] = await _element_count(page)
        result.final_url = page.url
    finally:
        await context.close()
    for request_url, resource_type, request_phase in seen:
        queue = initiators.get(request_url)
        initiator, initiator_url = queue.pop(0) if queue else ("", "")
        judged = oracle.classify(request_url)
        result.requests.append({
            "url": request_url[:600], "host": oracle.host_of(request_url), "type": resource_type,
            "initiator": initiator, "initiator_url": _short(initiator_url, url), "phase": request_phase,
            "category": judged[0] if judged else "", "vendor": judged[1] if judged else "",
            "entry": judged[2] if judged else "",
        })
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _entries_seen(seen: list[tuple[str, str, str]], *phases: str) -> set[str]:
    """The oracle entries of the tracker requests seen so far in `phases`."""
    found = set()
    for request_url, _, phase in seen:
        judged = oracle.classify(request_url) if phase in phases else None
        if judged:
            found.add(judged[2])
    return found


async def _element_count(page: Any) -> int:
    try:
        return int(await page.evaluate("document.getElementsByTagName('*').length"))
    except Exception:  # the page navigated away
        return -1


async def _accept_all(context: Any, page: Any) -> str:
    """Click the banner's Accept all; "click" when that made the consent API set its cookie."""
    button = page.locator(ACCEPT_BUTTON)
    if await button.count() == 0:
        return "no-banner"
    how = "click"
    try:
        await button.first.click(timeout=5000)
    except Exception:  # covered by the page's own overlay, or off screen: a script click still decides
        how = "script-click"
        await button.first.evaluate("b => b.click()")
    # The decision is the cookie the consent API sets (the page's DOM may be gone by the time we look).
    for _ in range(100):
        if any(cookie["name"] == COOKIE_NAME for cookie in await context.cookies()):
            return how
        await page.wait_for_timeout(100)
    return how + ", no decision recorded"


def _short(initiator_url: str, page_url: str) -> str:
    """The initiator's URL, with the page itself called "(page)" and our own origin dropped."""
    if not initiator_url:
        return ""
    if initiator_url.split("#")[0] == page_url:
        return "(page)"
    parts = urlsplit(initiator_url)
    if parts.netloc == urlsplit(page_url).netloc:
        return parts.path
    return initiator_url[:200]


# --- one page: the three loads and what they show -------------------------------------------------------


@dataclass
class PageResult:
    name: str
    direct: Load
    proxy: Load
    statistics: Load
    proxied_html: str = field(default="", repr=False)

    # trackers, by the oracle's matched entry (stable across loads; the hosts themselves may vary)
    def entries(self, load: Load, *phases: str) -> set[str]:
        return {r["entry"] for r in load.tracker_requests(*phases)}

    def summary(self) -> dict[str, Any]:
        direct = self.entries(self.direct)
        before = self.entries(self.proxy, "before")
        after = self.entries(self.proxy, "before", "accept")
        stats_marketing = {r["entry"] for r in self.statistics.tracker_requests() if r["category"] == "marketing"}
        added = added_errors(self.direct, self.proxy)
        elements = self.proxy.elements
        return {
            "direct_tracker_requests": len(self.direct.tracker_requests()),
            "direct_trackers": sorted(direct),
            "proxy_tracker_requests_before_consent": len(self.proxy.tracker_requests("before")),
            "proxy_trackers_before_consent": sorted(before),
            "trackers_after_accept_all": sorted(after),
            "missing_after_accept_all": sorted(direct - after),
            "statistics_only_marketing": sorted(stats_marketing),
            # ...of which the proxy blocked before consent: let through by the statistics consent itself
            "statistics_only_marketing_not_leaking_before": sorted(stats_marketing - before),
            "statistics_only_statistics": sorted(
                {r["entry"] for r in self.statistics.tracker_requests() if r["category"] == "statistics"}),
            "js_errors_direct": len(self.direct.errors),
            "js_errors_proxy": len([e for e in self.proxy.errors if e["phase"] == "before"]),
            "js_errors_added_by_proxy": added,
            "js_errors_after_accept": [e["message"] for e in self.proxy.errors if e["phase"] == "accept"],
            "banner": self.proxy.banner,
            # the banner's own files or API asked for on another host (a <base href> elsewhere resolves them there)
            "banner_assets_elsewhere": sorted({
                r["url"] for load in (self.proxy, self.statistics) for r in load.requests
                if urlsplit(r["url"]).path.startswith("/_consent/")}),
            "blocked_elements": self.proxy.blocked_elements,
            "accepted": self.proxy.accepted,
            "elements_before_after_accept": [elements.get("before", -1), elements.get("after", -1)],
            "page_wiped_by_accept_all": elements.get("after", 0) < elements.get("before", 0) / 2,
            "load_errors": {k: load.load_error for k, load in self.loads().items() if load.load_error},
        }

    def loads(self) -> dict[str, Load]:
        return {"direct": self.direct, "proxy": self.proxy, "statistics": self.statistics}


_ORIGIN = re.compile(r"https?://127\.0\.0\.1:\d+")
_LONG_NUMBER = re.compile(r"\d{4,}")


def normalise_error(message: str) -> str:
    return _LONG_NUMBER.sub("N", _ORIGIN.sub("ORIGIN", message))


def added_errors(direct: Load, proxy: Load) -> list[str]:
    """The JavaScript errors of the proxied load before consent that the direct load did not have."""
    had = Counter(normalise_error(e["message"]) for e in direct.errors)
    got = Counter(normalise_error(e["message"]) for e in proxy.errors if e["phase"] == "before")
    return sorted((got - had).elements())


async def measure_page(browser: Any, gate: asyncio.Semaphore, servers_: Servers, name: str, settle: float,
                       timeout: float) -> PageResult:
    async def one(url: str, kind: str, **options: Any) -> Load:
        async with gate:
            return await load_page(browser, url, kind, settle, timeout, **options)

    async def direct_then_proxy() -> tuple[Load, Load]:
        # the proxied load waits after Accept all for what the direct load requested: not a fixed time
        direct = await one(f"{servers_.upstream_url}/{name}", "direct")
        expect = frozenset(r["entry"] for r in direct.tracker_requests())
        return direct, await one(f"{servers_.proxy.url}/{name}", "proxy", accept=True, expect=expect)

    (direct, proxy), statistics = await asyncio.gather(
        direct_then_proxy(),
        one(f"{servers_.proxy.url}/{name}", "statistics", cookie=servers_.cookies["statistics"]),
    )
    with urllib.request.urlopen(f"{servers_.proxy.url}/{name}", timeout=30) as response:
        proxied = response.read().decode("utf-8", "replace")
    return PageResult(name, direct, proxy, statistics, proxied)


async def measure(pages: list[str], jobs: int, settle: float, timeout: float, base: Path,
                  progress: bool = True) -> list[PageResult]:
    from playwright.async_api import async_playwright

    with servers(pages, base) as running:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                gate = asyncio.Semaphore(jobs)
                tasks = [asyncio.create_task(measure_page(browser, gate, running, name, settle, timeout))
                         for name in pages]
                results = []
                for done, task in enumerate(asyncio.as_completed(tasks), 1):
                    result = await task
                    results.append(result)
                    if progress:
                        s = result.summary()
                        print(f"[{done:3}/{len(pages)}] {result.name}: direct {s['direct_tracker_requests']}, "
                              f"proxy {s['proxy_tracker_requests_before_consent']} tracker requests",
                              file=sys.stderr, flush=True)
            finally:
                await browser.close()
    return sorted(results, key=lambda r: r.name)


# --- where a leaking host is named in a page's source ---------------------------------------------------------

_BUILDS = (("document.write", "document.write"), ("createElement", "createelement"), ("new Image", "new image"),
           ("insertBefore", "insertbefore"), ("appendChild", "appendchild"), ("innerHTML", "innerhtml"))


def _needle(needle: str) -> re.Pattern[str]:
    """`needle` as a whole host name: not part of a longer label (t.co is not in omniconvert.com)."""
    return re.compile(r"(?:(?<![a-z0-9-])|(?<=%2f))" + re.escape(needle.lower()) + r"(?![a-z0-9-])")


def _script_notes(code: str, at: int) -> list[str]:
    """What an inline script seems to do with a URL at `at`: markup it writes, DOM calls it makes."""
    near = code[max(0, at - 200):at].lower()
    built = [f"writes <{tag}>" for tag in ("script", "iframe", "img") if f"<{tag}" in near or f"%3c{tag}" in near]
    lower = code.lower()
    return built + [word for word, marker in _BUILDS if marker in lower]


class _Finder(HTMLParser):
    """Every place a host is named in a document: an element's attribute, an inline script, a comment, text."""

    def __init__(self, pattern: re.Pattern[str], limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.pattern = pattern
        self.limit = limit
        self.found: list[dict[str, str]] = []
        self.script: list[tuple[str, str | None]] | None = None  # the open <script>'s attributes
        self.noscript = 0

    def _add(self, where: str, text: str, at: int, blocked: bool) -> None:
        if len(self.found) < self.limit:
            snippet = " ".join(text[max(0, at - 100):at + 140].split())
            self.found.append({"where": where, "snippet": snippet[:260], "blocked": "yes" if blocked else ""})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        blocked = "data-cp-blocked" in names or (names.get("type") or "") == "text/plain"
        for name, value in attrs:
            match = self.pattern.search((value or "").lower())
            if not match:
                continue
            where = f"<{tag} {name}=>"
            if tag == "link" and names.get("rel"):
                where += f" rel={names['rel']}"
            if (value or "").strip().lower().startswith("javascript:"):
                where += " javascript: URL" + ("".join(f", {n}" for n in _script_notes(value or "", match.start())))
            elif name == "srcdoc":
                inner = source_contexts(value or "", self.pattern, 1)
                where += f" (inside: {inner[0]['where']})" if inner else ""
            elif name == "style":
                where += " CSS url()"
            if self.noscript:
                where += " in <noscript>"
            self._add(where, self.get_starttag_text() or "", (self.get_starttag_text() or "").lower().find(
                match.group(0)), blocked or any(n.startswith("data-cp-") for n in names))
        if tag == "script":
            self.script = attrs
        elif tag == "noscript":
            self.noscript += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.script = None
        elif tag == "noscript":
            self.noscript = max(0, self.noscript - 1)

    def handle_data(self, data: str) -> None:
        for match in self.pattern.finditer(data.lower()):
            if self.script is not None:
                names = dict(self.script)
                notes = _script_notes(data, match.start())
                where = "inline script" + (f" ({', '.join(notes)})" if notes else "")
                blocked = "data-cp-blocked" in names or (names.get("type") or "") == "text/plain"
            else:
                where, blocked = ("text in <noscript>" if self.noscript else "text"), False
            self._add(where, data, match.start(), blocked)

    def handle_comment(self, data: str) -> None:
        match = self.pattern.search(data.lower())
        if match:
            self._add("comment", data, match.start(), False)


def source_contexts(html: str, needle: str | re.Pattern[str], limit: int = 40) -> list[dict[str, str]]:
    """Where the host `needle` is named in `html` (Python's HTML parser; one level into iframe srcdoc)."""
    finder = _Finder(needle if isinstance(needle, re.Pattern) else _needle(needle), limit)
    with contextlib.suppress(AssertionError):  # html.parser gives up on a few malformed declarations
        finder.feed(html)
        finder.close()
    return finder.found


#: for a request's resource type, the places in the source that would explain it best
_FITS = {"script": ("<script", "inline script"), "document": ("<iframe", "<frame", "inline script"),
         "image": ("<img", "<source", "inline script", "noscript"), "stylesheet": ("<link",),
         "font": ("<link", "inline"), "xhr": ("inline script",), "fetch": ("inline script",),
         "ping": ("inline script", "<a")}


def _host_key(host: str) -> str:
    """A host with random labels folded (``<hex>.safeframe.googlesyndication.com`` -> ``*.safeframe...``)."""
    return ".".join("*" if re.fullmatch(r"[0-9a-f]{16,}", label) else label for label in host.split("."))


def explain_host(results: list[PageResult], key: str, limit_pages: int = 40) -> dict[str, Any]:
    """How a host (a leak table key) leaking before consent is asked for: initiators, resource types, and
    where the page's source names it, as served and as the proxy rewrote it (blocked or not)."""
    types: Counter[str] = Counter()
    initiators: Counter[str] = Counter()
    wheres: Counter[str] = Counter()
    proxied_wheres: Counter[str] = Counter()
    samples: list[dict[str, str]] = []
    for result in results:
        leaked = [r for r in result.proxy.requests if r["phase"] == "before" and _host_key(r["host"]) == key]
        if not leaked:
            continue
        limit_pages -= 1
        if limit_pages < 0:
            break
        for request in leaked:
            types[request["type"]] += 1
            initiators[f"{request['initiator']} {request['initiator_url']}".strip()] += 1
        host = key.split("*.")[-1]
        entry = leaked[0]["entry"]
        # the host, then the matched entry, then the entry's name alone (snippets assemble "static."+p+".com")
        needles = [host, entry, entry.split(".")[0]]
        html = page_html(result.name).decode("utf-8", "replace")
        contexts: list[dict[str, str]] = []
        needle = host
        for needle in needles:
            if "/" not in needle:
                contexts = source_contexts(html, needle)
                if contexts:
                    break
        if not contexts:
            wheres["not named in the source (a script builds it)"] += 1
        elif needle != host:
            contexts = [{**c, "where": f"{c['where']} [names only {needle!r}]"} for c in contexts]
        for context in contexts:
            wheres[context["where"]] += 1
        for context in source_contexts(result.proxied_html, needle):
            proxied_wheres[f"{context['where']}{' [blocked]' if context['blocked'] else ''}"] += 1
        # a sample per page: the place that best explains the request (a preconnect <link> only names the host)
        fits = _FITS.get(types.most_common(1)[0][0], ())
        telling = sorted(contexts, key=lambda c: (not c["where"].startswith(fits), c["where"].startswith("<link"),
                                                  c["where"] in ("text", "comment")))
        if telling and len(samples) < 6:
            samples.append({"page": result.name, **telling[0]})
    return {"types": dict(types.most_common()), "initiators": dict(initiators.most_common(8)),
            "source": dict(wheres.most_common()), "proxied_source": dict(proxied_wheres.most_common()),
            "samples": samples}


# --- the report ---------------------------------------------------------------------------------------------------


def report(results: list[PageResult], explain_top: int | None = None) -> dict[str, Any]:
    """The figures, the leak table, the functional hosts, and how leaking hosts are asked for (`explain_top`
    of them, default all)."""
    summaries = {r.name: r.summary() for r in results}
    tracking = [r for r in results if summaries[r.name]["direct_trackers"]]
    clean = [r for r in tracking if not summaries[r.name]["proxy_trackers_before_consent"]]
    leaking_any = [r for r in results if summaries[r.name]["proxy_trackers_before_consent"]]
    with_added_errors = [r for r in results if summaries[r.name]["js_errors_added_by_proxy"]]
    all_again = [r for r in tracking if not summaries[r.name]["missing_after_accept_all"]]
    some_again = [r for r in tracking
                  if set(summaries[r.name]["direct_trackers"]) & set(summaries[r.name]["trackers_after_accept_all"])]
    stats_marketing = [r for r in results if summaries[r.name]["statistics_only_marketing"]]
    stats_marketing_new = [r for r in results if summaries[r.name]["statistics_only_marketing_not_leaking_before"]]
    wiped = [r.name for r in results if summaries[r.name]["page_wiped_by_accept_all"]]
    no_banner = [r.name for r in results if not r.proxy.banner]
    not_recorded = [r.name for r in results if r.proxy.accepted != "click"]

    hosts: dict[str, dict[str, Any]] = {}
    for result in results:
        for load, key in ((result.direct, "pages_direct"), (result.proxy, "pages_leaking")):
            phase = ("before",) if load is result.proxy else ()
            for request in load.tracker_requests(*phase):
                entry = hosts.setdefault(_host_key(request["host"]), {
                    "host": _host_key(request["host"]), "category": request["category"], "vendor": request["vendor"],
                    "pages_leaking": set(), "pages_direct": set(), "requests_leaking": 0})
                entry[key].add(result.name)
                if key == "pages_leaking":
                    entry["requests_leaking"] += 1
    host_rows = sorted(hosts.values(), key=lambda h: (-len(h["pages_leaking"]), -len(h["pages_direct"]), h["host"]))
    leak_table = [{**h, "pages_leaking": len(h["pages_leaking"]), "pages_direct": len(h["pages_direct"]),
                   "leaking_on": sorted(h["pages_leaking"])} for h in host_rows]

    functional: dict[str, dict[str, Any]] = {}
    for result in results:
        own = site_domain(result.name)
        for request in result.direct.requests:
            if request["category"]:
                continue
            domain = oracle.registrable(request["host"])
            label = oracle.functional_label(request["host"], own)
            key = "(the site's own hosts)" if label == "the site's own host" else domain
            row = functional.setdefault(key, {"domain": key, "label": label, "pages": set(), "hosts": set()})
            row["pages"].add(result.name)
            row["hosts"].add(request["host"])
    functional_rows = sorted(({**row, "pages": len(row["pages"]), "hosts": sorted(row["hosts"])[:8]}
                              for row in functional.values()), key=lambda row: (-row["pages"], row["domain"]))

    explained = {row["host"]: explain_host(results, row["host"]) for row in leak_table[:explain_top]
                 if row["pages_leaking"]}  # the table is sorted by pages leaking: the leaking hosts come first
    share = (len(clean) / len(tracking)) if tracking else 1.0
    error_share = len(with_added_errors) / len(results) if results else 0.0
    totals = {
        "pages": len(results),
        "pages_direct_requesting_a_tracker": len(tracking),
        "of_those_clean_through_proxy": len(clean),
        "clean_share": round(share, 4),
        "clean_target": TARGET_CLEAN,
        "pages_leaking_before_consent": len(leaking_any),
        "tracker_requests_direct": sum(s["direct_tracker_requests"] for s in summaries.values()),
        "tracker_requests_proxy_before_consent": sum(s["proxy_tracker_requests_before_consent"]
                                                     for s in summaries.values()),
        "pages_where_proxy_adds_js_error": len(with_added_errors),
        "js_error_share": round(error_share, 4),
        "js_error_target": TARGET_JS_ERRORS,
        "pages_without_visible_banner": no_banner,
        "pages_where_accept_all_was_not_a_working_click": not_recorded,
        "pages_with_banner_assets_on_another_host": [r.name for r in results
                                                     if summaries[r.name]["banner_assets_elsewhere"]],
        "accept_all_all_trackers_again": len(all_again),
        "accept_all_some_tracker_again": len(some_again),
        "accept_all_how": dict(Counter(r.proxy.accepted for r in results)),
        "accept_all_missing": {r.name: summaries[r.name]["missing_after_accept_all"] for r in tracking
                               if summaries[r.name]["missing_after_accept_all"]},
        "pages_wiped_by_accept_all": wiped,
        "statistics_only_pages_requesting_marketing": len(stats_marketing),
        "statistics_only_pages_requesting_marketing_not_leaking_before": {
            r.name: summaries[r.name]["statistics_only_marketing_not_leaking_before"] for r in stats_marketing_new},
        "statistics_only_pages_requesting_statistics": len(
            [r for r in results if summaries[r.name]["statistics_only_statistics"]]),
        "load_errors": {r.name: summaries[r.name]["load_errors"] for r in results if summaries[r.name]["load_errors"]},
    }
    return {
        "totals": totals,
        "pages": {r.name: {**summaries[r.name], "loads": {k: asdict(v) for k, v in r.loads().items()}}
                  for r in results},
        "hosts": leak_table,
        "functional_hosts": functional_rows,
        "explain": explained,
    }


def print_report(data: dict[str, Any], top: int = 30, explain: int = 10, out: Any = sys.stdout) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    totals = data["totals"]
    line("Per page: tracker requests direct / through the proxy before consent; JS errors direct / proxy (+added)")
    line(f"{'page':44} {'direct':>6} {'proxy':>6} {'err d':>5} {'err p':>5} {'added':>5}  banner  leaking via proxy")
    for name, page in data["pages"].items():
        line(f"{name[:44]:44} {page['direct_tracker_requests']:6} {page['proxy_tracker_requests_before_consent']:6} "
             f"{page['js_errors_direct']:5} {page['js_errors_proxy']:5} {len(page['js_errors_added_by_proxy']):5}  "
             f"{'yes' if page['banner'] else 'NO':6}  {', '.join(page['proxy_trackers_before_consent'])[:90]}")
    tracking = totals["pages_direct_requesting_a_tracker"]
    line()
    line("Totals")
    line(f"  pages measured                                          {totals['pages']}")
    line(f"  pages whose direct load requests a tracker              {tracking}")
    line(f"  ...of those, requesting none through the proxy          {totals['of_those_clean_through_proxy']} "
         f"({100 * totals['clean_share']:.1f} %; target >= {100 * TARGET_CLEAN:.0f} %)")
    line(f"  pages leaking a tracker request before consent          {totals['pages_leaking_before_consent']}")
    line(f"  tracker requests direct / through the proxy before      {totals['tracker_requests_direct']} / "
         f"{totals['tracker_requests_proxy_before_consent']}")
    line(f"  pages where the proxy adds a JS error                   {totals['pages_where_proxy_adds_js_error']} "
         f"({100 * totals['js_error_share']:.1f} %; target <= {100 * TARGET_JS_ERRORS:.0f} %)")
    line(f"  after Accept all: every direct tracker requested again  {totals['accept_all_all_trackers_again']} "
         f"of {tracking} (at least one: {totals['accept_all_some_tracker_again']}); "
         f"how accepted: {totals['accept_all_how']}")
    line(f"    not requested again after Accept all                  {totals['accept_all_missing']}")
    line(f"    pages whose document Accept all wiped out             {totals['pages_wiped_by_accept_all']}")
    line(f"  statistics only: pages requesting a marketing host      "
         f"{totals['statistics_only_pages_requesting_marketing']} (a statistics host: "
         f"{totals['statistics_only_pages_requesting_statistics']})")
    line(f"    ...a marketing host not leaking before consent        "
         f"{totals['statistics_only_pages_requesting_marketing_not_leaking_before']}")
    line(f"  pages without a visible banner                          {len(totals['pages_without_visible_banner'])} "
         f"{totals['pages_without_visible_banner'][:10]}")
    line(f"  pages where Accept all was not a plain working click    "
         f"{totals['pages_where_accept_all_was_not_a_working_click']}")
    line(f"  pages asking another host for the banner's /_consent/   "
         f"{totals['pages_with_banner_assets_on_another_host']}")
    if totals["load_errors"]:
        line(f"  loads whose load event never came                       {len(totals['load_errors'])}")
    line()
    line(f"Leaking hosts (top {top}): pages leaking it before consent / pages requesting it directly")
    line(f"{'host':44} {'category':10} {'leak':>5} {'direct':>6}  vendor; how (place in the source, request type)")
    for row in data["hosts"][:top]:
        how = data["explain"].get(row["host"])
        summary = f"; {', '.join(how['source'])[:70]} ({', '.join(how['types'])})" if how else ""
        line(f"{row['host'][:44]:44} {row['category']:10} {row['pages_leaking']:5} {row['pages_direct']:6}  "
             f"{row['vendor']}{summary}")
    if data["explain"]:
        line()
        line("How the top leaking hosts are asked for (initiators, resource types, place in the page source)")
        for host, info in list(data["explain"].items())[:explain]:
            line(f"  {host}")
            line(f"    types {info['types']}")
            line(f"    initiators {info['initiators']}")
            line(f"    in the source {info['source']}")
            line(f"    in the proxied page {info['proxied_source']}")
            for sample in info["samples"][:3]:
                line(f"      {sample['page']}: {sample['where']}: {sample['snippet'][:200]}")
    line()
    line("Other hosts requested directly (judged functional, or not judged), by pages")
    for row in data["functional_hosts"][:40]:
        line(f"  {row['domain'][:40]:40} {row['pages']:4}  {row['label']}")


def _git_head() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    return ""


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def page_options(parser: argparse.ArgumentParser) -> None:
    """The options every real-page browser run takes (this script's and browser_hold.py's)."""
    parser.add_argument("--pages", default="all", help="all, a number (spread over the corpus), or names a,b,c")
    parser.add_argument("--jobs", type=int, default=3, help="page loads in flight at once (default 3)")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds to wait after load (default 1.5)")
    parser.add_argument("--timeout", type=float, default=45, help="seconds for a page's load event (default 45)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    page_options(parser)
    parser.add_argument("--top", type=int, default=30, help="leaking hosts to print (default 30)")
    parser.add_argument("--explain", type=int, default=10,
                        help="leaking hosts whose loading is printed in detail (default 10; the JSON has all)")
    parser.add_argument("--out", type=Path, help="write the whole report as JSON here")
    args = parser.parse_args(argv)

    pages = choose_pages(args.pages)
    # SIGTERM stops the run as Ctrl-C does: the proxy process and the browser are stopped on the way out.
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="browser-leaks-") as base:
        results = asyncio.run(measure(pages, args.jobs, args.settle, args.timeout, Path(base)))
    data = report(results)
    data["meta"] = {"pages": len(pages), "jobs": args.jobs, "settle": args.settle, "commit": _git_head(),
                    "seconds": round(time.monotonic() - started, 1), "chromium": CHROMIUM}
    print_report(data, args.top, args.explain)
    print(f"\n{len(pages)} pages, {data['meta']['seconds']} s", file=sys.stdout)
    if args.out:
        args.out.write_text(json.dumps(data, indent=1, sort_keys=False, default=sorted))
        print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
