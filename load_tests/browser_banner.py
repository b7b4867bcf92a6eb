#!/usr/bin/env python3
"""Issue 22's acceptance: on every real page, the banner is usable as a new visitor finds it, in a real browser.

What: every page of tests/data/real-pages is served by a local upstream with a real consentproxy process in
front of it (load_tests/browser_leaks.py's servers); headless chromium (Playwright) loads each page through
the proxy in a fresh browser context, every request to another origin aborted (the pages keep their inline
styles and scripts, no third-party script runs). After the load event and `--settle` seconds, per page:

- each of the banner's three buttons (*Accept all*, *Reject all*, *Settings*) is visible: a box inside the
  viewport, `visibility: visible`, and its opacity times its ancestors' (through the shadow root) above 0.1;
- each is the topmost element at its centre: `document.elementFromPoint`, then the shadow root's, is the
  button or inside it;
- a mouse click at the centre of *Reject all* records the decision: the POST to the page's own origin's
  `/_consent` is answered 200, and the banner is gone from the page afterwards;
- the page's `<html>` and `<body>` are visible after the decision (an anti-flicker rule would leave them
  hidden);
- then the re-open control passes the same visibility checks, a click on it opens the settings dialog, whose
  close, save and reject buttons pass them too, and Escape closes the dialog with focus back on the control.

Run:   .venv/bin/python load_tests/browser_banner.py --pages all --jobs 2
       (--pages 20 takes 20 pages spread over the corpus; --pages a,b takes those pages by name)
Needs: Debian's chromium at /usr/bin/chromium (`make system-deps`), Playwright's Python package (dev extra).
tests/test_browser_banner_real_pages.py runs 20 pages of the corpus, tests/test_browser_banner_hostile.py
the hostile page classes (a base URL elsewhere, anti-flicker snippets, hostile site CSS) with these checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOAD_TESTS = Path(__file__).resolve().parent
REPO = LOAD_TESTS.parent
for _path in (str(LOAD_TESTS), str(REPO / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import browser_leaks  # noqa: E402
from conftest import CHROMIUM, Proxy, free_port, launch_proxy, serve_app, site_toml  # noqa: E402

#: the first layer's buttons, by their data-cp-action
BUTTONS = ("accept_all", "reject_all", "settings")
#: the settings dialog's controls, checked after the re-open control opened it
DIALOG_CONTROLS = {"close": ".cp-dialog [data-cp-action=close]", "save": ".cp-dialog [data-cp-action=save_selection]",
                   "dialog-reject": ".cp-dialog [data-cp-action=reject_all]"}
VIEWPORT = {"width": 1280, "height": 900}
DECISION_WAIT = 15.0  # seconds at most for the consent API's answer and the banner's removal; never asserted

#: per control (a selector inside our shadow root): where it is, whether it shows, and what is at its centre
BUTTON_STATE = """(selector) => {
  const root = document.getElementById('cp-root');
  const scope = root && (root.shadowRoot || root);
  const button = scope && scope.querySelector(selector);
  if (!button) return {found: false};
  const r = button.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const width = document.documentElement.clientWidth || innerWidth;
  const height = document.documentElement.clientHeight || innerHeight;
  let opacity = 1;
  for (let el = button; el; el = el.parentElement || (el.getRootNode() && el.getRootNode().host) || null) {
    opacity *= parseFloat(getComputedStyle(el).opacity);
  }
  let hit = document.elementFromPoint(x, y);
  while (hit && hit.shadowRoot) {
    const inner = hit.shadowRoot.elementFromPoint(x, y);
    if (!inner || inner === hit) break;
    hit = inner;
  }
  const classes = (el) => typeof el.className === 'string' ? el.className.trim().split(/\\s+/).join('.') : '';
  const name = (el) => !el ? 'nothing'
    : el.localName + (el.id ? '#' + el.id : '') + (classes(el) ? '.' + classes(el) : '');
  return {found: true, x: x, y: y,
    inViewport: r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= width && r.bottom <= height,
    shown: getComputedStyle(button).visibility === 'visible' && opacity > 0.1,
    topmost: !!hit && button.contains(hit), hit: name(hit),
    box: [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)],
    opacity: Math.round(opacity * 100) / 100};
}"""
#: whether <html> and <body> show (visibility, and opacity of both)
PAGE_SHOWN = """() => {
  const h = getComputedStyle(document.documentElement), b = document.body ? getComputedStyle(document.body) : h;
  return h.visibility === 'visible' && b.visibility === 'visible' && h.display !== 'none' && b.display !== 'none'
    && parseFloat(h.opacity) * parseFloat(b.opacity) > 0.1;
}"""
MODE = """() => { const root = document.getElementById('cp-root');
  return !root ? 'none' : root.shadowRoot ? 'shadow' : root.classList.contains('cp-light') ? 'light' : 'template'; }"""
DIALOG_OPEN = """() => { const root = document.getElementById('cp-root');
  const scope = root && (root.shadowRoot || root); return !!scope && !!scope.querySelector('.cp-dialog'); }"""
#: the element with focus, through shadow roots: its id or data-cp-action
FOCUSED = """() => { let e = document.activeElement;
  while (e && e.shadowRoot && e.shadowRoot.activeElement) e = e.shadowRoot.activeElement;
  return e ? (e.id || e.getAttribute('data-cp-action') || e.localName) : null; }"""
BANNER_GONE = """() => { const root = document.getElementById('cp-root');
  const scope = root && (root.shadowRoot || root); return !!scope && !scope.querySelector('#cp-banner'); }"""


@dataclass
class Outcome:
    """One page: what failed (empty: it passed) and what was measured."""

    name: str
    url: str
    failures: list[str] = field(default_factory=list)
    buttons: dict[str, dict[str, Any]] = field(default_factory=dict)
    decision_status: int | None = None
    shown_before: bool | None = None  # <html> and <body> visible before the decision (not a check of its own)
    shown_after: bool | None = None
    mode: str = ""  # where the banner is: "shadow" (a shadow root), "light" (the document: no shadow roots)
    load_error: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


async def check_page(browser: Any, name: str, url: str, settle: float, timeout: float,
                     init_script: str = "", document: Callable[[str], str] | None = None) -> Outcome:
    """Load `url` in a fresh context (other origins aborted), check the buttons, click *Reject all*.

    `init_script` runs before the page's scripts; `document` rewrites the page's HTML as it arrives (both to
    play an older browser)."""
    started = time.monotonic()
    outcome = Outcome(name, url)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    context = await browser.new_context(service_workers="block", viewport=VIEWPORT)
    try:
        async def route(route: Any) -> None:
            parts = urlsplit(route.request.url)
            if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" != origin:
                await route.abort()
            elif document is not None and route.request.url == url:
                response = await route.fetch()
                await route.fulfill(response=response, body=document(await response.text()))
            else:
                await route.continue_()

        if init_script:
            await context.add_init_script(init_script)

        await context.route("**/*", route)
        page = await context.new_page()
        try:
            await page.goto(url, wait_until="load", timeout=timeout * 1000)
        except Exception as exc:  # a page whose load never fires is checked all the same
            outcome.load_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        await page.wait_for_timeout(settle * 1000)
        outcome.shown_before = bool(await page.evaluate(PAGE_SHOWN))
        outcome.mode = str(await page.evaluate(MODE))
        for action in BUTTONS:
            await _control(page, action, f"#cp-banner [data-cp-action={action}]", outcome)
        reject = outcome.buttons.get("reject_all", {})
        if reject.get("found") and await _reject(page, origin, reject, outcome):
            await _settings(page, outcome)
    except Exception as exc:  # the page navigated away, the browser context died: a failure of this page
        outcome.failures.append(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        await context.close()
    outcome.seconds = round(time.monotonic() - started, 2)
    return outcome


async def _control(page: Any, name: str, selector: str, outcome: Outcome) -> dict[str, Any]:
    """One control of ours: found, in the viewport, shown, topmost at its centre (else a failure)."""
    state: dict[str, Any] = await page.evaluate(BUTTON_STATE, selector)
    outcome.buttons[name] = state
    if not state.get("found"):
        outcome.failures.append(f"{name}: not there")
        return state
    if not state["inViewport"]:
        outcome.failures.append(f"{name}: outside the viewport {state['box']}")
    if not state["shown"]:
        outcome.failures.append(f"{name}: not shown (opacity {state['opacity']})")
    if not state["topmost"]:
        outcome.failures.append(f"{name}: covered by {state['hit']}")
    return state


async def _settings(page: Any, outcome: Outcome) -> None:
    """After the decision: the re-open control, a click on it opens the settings dialog, whose controls are
    usable too; Escape closes it and gives focus back to the re-open control."""
    reopen = await _control(page, "reopen", "#cp-reopen", outcome)
    if not reopen.get("found") or not reopen["topmost"]:
        return
    await page.mouse.click(reopen["x"], reopen["y"])
    try:
        await page.wait_for_function(DIALOG_OPEN, timeout=DECISION_WAIT * 1000)
    except Exception:
        outcome.failures.append("reopen: the click opened no settings dialog")
        return
    for name, selector in DIALOG_CONTROLS.items():
        await _control(page, name, selector, outcome)
    await page.keyboard.press("Escape")
    try:
        await page.wait_for_function(f"!({DIALOG_OPEN})()", timeout=DECISION_WAIT * 1000)
    except Exception:
        outcome.failures.append("settings: Escape did not close the dialog")
        return
    if await page.evaluate(FOCUSED) != "cp-reopen":
        outcome.failures.append(f"settings: focus went to {await page.evaluate(FOCUSED)}, not the re-open control")


async def _reject(page: Any, origin: str, reject: dict[str, Any], outcome: Outcome) -> bool:
    """A mouse click at the centre of *Reject all*, as a visitor clicks; the decision and the page after it.
    True when the decision was recorded and the banner went."""
    def is_decision(response: Any) -> bool:
        return bool(response.request.method == "POST" and response.url == origin + "/_consent")

    try:
        async with page.expect_response(is_decision, timeout=DECISION_WAIT * 1000) as answered:
            await page.mouse.click(reject["x"], reject["y"])
        outcome.decision_status = (await answered.value).status
    except Exception:
        outcome.failures.append("reject_all: the click sent no decision to the page's origin")
        return False
    if outcome.decision_status != 200:
        outcome.failures.append(f"reject_all: the consent API answered {outcome.decision_status}")
        return False
    gone = True
    try:
        await page.wait_for_function(BANNER_GONE, timeout=DECISION_WAIT * 1000)
    except Exception:
        outcome.failures.append("reject_all: the banner stayed")
        gone = False
    outcome.shown_after = bool(await page.evaluate(PAGE_SHOWN))
    if not outcome.shown_after:
        outcome.failures.append("the page's <html> or <body> is hidden after the decision")
    return gone


async def check_urls(targets: dict[str, str], jobs: int = 2, settle: float = 1.0, timeout: float = 45,
                     progress: bool = False, **options: Any) -> list[Outcome]:
    """Check every page (name -> URL), `jobs` at a time, in one chromium; `options` go to check_page."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=browser_leaks.CHROMIUM_ARGS)
        try:
            gate = asyncio.Semaphore(jobs)

            async def one(name: str, url: str) -> Outcome:
                async with gate:
                    return await check_page(browser, name, url, settle, timeout, **options)

            tasks = [asyncio.create_task(one(name, url)) for name, url in targets.items()]
            results = []
            for done, task in enumerate(asyncio.as_completed(tasks), 1):
                result = await task
                results.append(result)
                if progress:
                    print(f"[{done:3}/{len(tasks)}] {result.name}: {'ok' if result.passed else result.failures}",
                          file=sys.stderr, flush=True)
        finally:
            await browser.close()
    return sorted(results, key=lambda r: r.name)


@contextlib.contextmanager
def serving(bodies: dict[str, bytes], base: Path,
            sites: Callable[[str], str] | None = None) -> Iterator[tuple[Proxy, str]]:
    """Each body at /<name> (text/html; charset=utf-8) of a local upstream, a proxy process in front of it;
    yields the proxy and the upstream's URL. `sites`, given the upstream's URL, replaces the default sites."""
    port = free_port()
    with serve_app(browser_leaks.bodies_app(bodies), port):
        upstream = f"http://127.0.0.1:{port}"
        proxy = launch_proxy(base, 0, sites(upstream) if sites else site_toml("pages", upstream))
        try:
            yield proxy, upstream
        finally:
            proxy.stop()


def check_corpus(pages: list[str], jobs: int, settle: float, timeout: float, progress: bool = True) -> list[Outcome]:
    """The real pages, through one proxy."""
    bodies = {name: browser_leaks.page_html(name) for name in pages}
    with tempfile.TemporaryDirectory(prefix="browser-banner-") as base, serving(bodies, Path(base)) as (proxy, _):
        return asyncio.run(check_urls({name: f"{proxy.url}/{name}" for name in pages}, jobs, settle, timeout,
                                      progress))


def print_report(results: list[Outcome], out: Any = sys.stdout) -> None:
    passed = [r for r in results if r.passed]
    share = len(passed) / len(results) if results else 0.0
    print(f"pages passing every check: {len(passed)} of {len(results)} ({100 * share:.1f} %)", file=out)
    failed = [r for r in results if not r.passed]
    if failed:
        print("failures:", file=out)
        for result in failed:
            print(f"  {result.name}: {'; '.join(result.failures)}", file=out)
    slow = [r.name for r in results if r.load_error]
    if slow:
        print(f"pages whose load event never came (checked all the same): {', '.join(slow)}", file=out)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    browser_leaks.page_options(parser)
    parser.add_argument("--out", type=Path, help="write every page's measurements as JSON here")
    args = parser.parse_args(argv)
    pages = browser_leaks.choose_pages(args.pages)
    signal.signal(signal.SIGTERM, _terminate)  # the proxy process and the browser are stopped on the way out
    started = time.monotonic()
    results = check_corpus(pages, args.jobs, args.settle, args.timeout)
    print_report(results)
    print(f"{len(pages)} pages, {round(time.monotonic() - started, 1)} s, jobs {args.jobs}, "
          f"commit {browser_leaks._git_head()}")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(f"JSON: {args.out}")
    return 0 if len(results) == sum(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
