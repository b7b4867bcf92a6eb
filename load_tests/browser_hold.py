#!/usr/bin/env python3
"""Issue 16's acceptance for `third_party = "hold"`: what real pages request elsewhere before consent.

Every page of tests/data/real-pages is served by a local upstream at 127.0.0.1 (browser_leaks.py's) with a
consentproxy process in front of it whose site holds unknown third parties. Headless chromium loads each
page through the proxy with no decision, in a fresh context; every request to a host other than the page's
origin is recorded and aborted (nothing leaves the machine, no third-party script runs). A request passes
when its URL is on the built-in functional list or belongs to a catalogued service of the necessary
category (a consent platform's); anything else is reported with its resource type and Chromium's initiator.
Here even a page's own CDN is another host (the page is served from 127.0.0.1): its requests are held too.
A request to the page's own host name on another port (a script that builds `//` + location.hostname +
path drops the harness's port) is the page's own origin on a real site: listed apart, not counted.

With --accept, the banner's *Accept all* is clicked afterwards and the report also says which held hosts
were requested after it (what released elements load depends on the page's own scripts, so this is a
report, not a pass mark).

Run:   .venv/bin/python load_tests/browser_hold.py --pages all --jobs 3 --out hold.json
Needs: Debian's chromium at /usr/bin/chromium (`make system-deps`), Playwright's Python package (dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOAD_TESTS = Path(__file__).resolve().parent
for _path in (str(LOAD_TESTS), str(LOAD_TESTS.parent / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import browser_leaks  # noqa: E402
from conftest import CHROMIUM, free_port, launch_proxy, serve_app, site_toml  # noqa: E402

from consentproxy.html.functional import builtin_functional  # noqa: E402
from consentproxy.html.trackers import TrackerMatcher, split_url  # noqa: E402

_MATCHER = TrackerMatcher(())


def allowed_before_consent(url: str) -> bool:
    """On the functional list, or a catalogued service of the necessary category."""
    if builtin_functional(url) is not None:
        return True
    found = _MATCHER.url("scripts", url) or _MATCHER.url("pixels", url) or _MATCHER.host(url)
    return found is not None and found.category == "necessary"


@dataclass
class PageHold:
    name: str
    #: requests elsewhere before consent that are neither functional nor necessary: url, type, initiator
    leaks: list[dict[str, str]] = field(default_factory=list)
    allowed: int = 0  # requests elsewhere before consent that were allowed
    #: requests to the page's own host name on another port (a script that builds `//` + location.hostname
    #: + path drops the harness's port; on a real site that is the page's own origin)
    own_host: list[str] = field(default_factory=list)
    after_accept: list[str] = field(default_factory=list)  # hosts requested after Accept all (--accept)
    error: str = ""


async def load_page(browser: Any, url: str, settle: float, timeout: float, accept: bool) -> PageHold:
    result = PageHold(url.rsplit("/", 1)[-1])
    origin = urlsplit(url).netloc
    phase = "before"
    context = await browser.new_context(service_workers="block")
    try:
        page = await context.new_page()
        client = await context.new_cdp_session(page)
        await client.send("Network.enable")
        initiators: dict[str, str] = {}

        def on_request(event: dict[str, Any]) -> None:
            initiator = event.get("initiator", {})
            frames = initiator.get("stack", {}).get("callFrames", [])
            where = initiator.get("url") or (frames[0]["url"] if frames else "")
            initiators[event["request"]["url"]] = f"{initiator.get('type', '')} {where[:120]}".strip()

        client.on("Network.requestWillBeSent", on_request)

        async def route(route: Any) -> None:
            request = route.request
            parts = urlsplit(request.url)
            if parts.scheme in ("http", "https") and parts.netloc != origin:
                if phase == "accept":
                    host = split_url(request.url)[1]
                    if host and host not in result.after_accept:
                        result.after_accept.append(host)
                elif allowed_before_consent(request.url):
                    result.allowed += 1
                elif parts.hostname == urlsplit(url).hostname:
                    result.own_host.append(request.url[:200])
                else:
                    result.leaks.append({"url": request.url[:200], "type": request.resource_type,
                                         "initiator": initiators.get(request.url, "")})
                await route.abort()
            else:
                await route.continue_()

        await context.route("**/*", route)
        try:
            await page.goto(url, wait_until="load", timeout=timeout * 1000)
        except Exception as error:  # judged all the same: what it requested until then counts
            result.error = str(error).splitlines()[0][:200]
        await page.wait_for_timeout(settle * 1000)
        if accept:
            phase = "accept"
            button = page.locator(browser_leaks.ACCEPT_BUTTON)
            with contextlib.suppress(Exception):
                await button.first.evaluate("b => b.click()")
                await page.wait_for_timeout(settle * 2000)
    finally:
        await context.close()
    return result


async def measure(pages: list[str], jobs: int, settle: float, timeout: float, accept: bool) -> list[PageHold]:
    from playwright.async_api import async_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as base, serve_app(browser_leaks.upstream_app(pages), port):
        proxy = launch_proxy(Path(base), 0, site_toml("pages", f"http://127.0.0.1:{port}", third_party="hold"))
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                          args=browser_leaks.CHROMIUM_ARGS)
                gate = asyncio.Semaphore(jobs)
                done = 0

                async def one(name: str) -> PageHold:
                    nonlocal done
                    async with gate:
                        found = await load_page(browser, f"{proxy.url}/{name}", settle, timeout, accept)
                    done += 1
                    print(f"[{done}/{len(pages)}] {name}: {len(found.leaks)} requests held elsewhere",
                          file=sys.stderr, flush=True)
                    return found

                results = await asyncio.gather(*(one(name) for name in pages))
                await browser.close()
        finally:
            proxy.stop()
    return list(results)


def report(results: list[PageHold]) -> dict[str, Any]:
    clean = [r.name for r in results if not r.leaks]
    return {"pages": len(results), "clean": len(clean),
            "leaking": {r.name: r.leaks for r in results if r.leaks},
            "allowed_requests": sum(r.allowed for r in results),
            "own_host_other_port": {r.name: r.own_host for r in results if r.own_host},
            "errors": {r.name: r.error for r in results if r.error}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    browser_leaks.page_options(parser)
    parser.add_argument("--accept", action="store_true", help="click Accept all and record what loads after it")
    parser.add_argument("--out", type=Path, help="write the whole report as JSON here")
    args = parser.parse_args(argv)
    pages = browser_leaks.choose_pages(args.pages)
    start = time.monotonic()
    results = asyncio.run(measure(pages, args.jobs, args.settle, args.timeout, args.accept))
    data = report(results)
    data["seconds"] = round(time.monotonic() - start, 1)
    print(f"third_party = \"hold\": {data['clean']} of {data['pages']} pages request nothing outside their origin "
          f"and the functional list before consent ({data['allowed_requests']} allowed requests)")
    for name, urls in data["own_host_other_port"].items():
        print(f"  own host name on another port, not counted (the harness serves on a port): {name}: {urls[:3]}")
    for name, leaks in data["leaking"].items():
        print(f"  {name}:")
        for leak in leaks[:10]:
            print(f"    {leak['type']:<10} {leak['url'][:110]}  <- {leak['initiator'][:80]}")
    if args.out:
        args.out.write_text(json.dumps({**data, "results": [asdict(r) for r in results]}, indent=1))
    return 0 if not data["leaking"] else 1


if __name__ == "__main__":
    sys.exit(main())
