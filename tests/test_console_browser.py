"""The console in headless chromium against `consentproxy demo` (issue 18 items 4 and 5): three visitors decide
through the real banner, then the console, signed in with the demo's admin token, shows today's counts per
category and the chart; axe-core finds nothing serious on its pages; the banner preview renders both layers
per language; a cross-site form is refused by the browser's own request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from demo_support import Demo
from playwright.sync_api import Browser, BrowserContext, Page
from test_browser_banner import Visit, axe_scan, serious

SITE = "demo"


def admin_url(demo: Demo, path: str = "/") -> str:
    return f"http://127.0.0.1:{demo.port + 1}{path}"


@pytest.fixture(scope="module")
def decided(demo: Demo, browser: Browser) -> None:
    """Three visitors: accept all, reject all, statistics only."""
    for choice in ("accept_all", "reject_all", "statistics"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="nl-NL")
        try:
            visit = Visit(demo, context)
            visit.open("/")
            if choice == "statistics":
                visit.open_settings()
                visit.page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
                visit.decide("save_selection", ".cp-dialog")
            else:
                visit.decide(choice)
        finally:
            context.close()


def sign_in(demo: Demo, context: BrowserContext) -> Page:
    """The demo's admin token typed into the console's sign-in form."""
    page = context.new_page()
    page.goto(admin_url(demo), wait_until="load")
    page.fill("#token", (demo.data_dir / "secrets" / "admin-token").read_text().strip())
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Sites')")
    return page


@pytest.fixture
def console(demo: Demo, browser: Browser, decided: None) -> Iterator[tuple[BrowserContext, Page]]:
    """A phone-sized browser signed in to the console."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        yield context, sign_in(demo, context)
    finally:
        context.close()


def totals(page: Page) -> dict[str, tuple[int, int]]:
    """The site page's totals: category -> (given, refused)."""
    found = {}
    for text in page.locator("main ul li").all_inner_texts():
        match = re.match(r"(\w+): (\d+) given, (\d+) refused", text)
        if match:
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


def test_the_console_shows_todays_decisions_and_the_chart(demo: Demo, console: tuple[BrowserContext, Page]) -> None:
    _, page = console
    page.click(f"a[href='/sites/{SITE}']")
    page.wait_for_selector("svg.chart")
    counts = totals(page)
    assert counts["statistics"] == (2, 1), counts  # accept all and statistics only; reject all
    assert counts["marketing"] == (1, 2), counts
    assert counts["preferences"] == (1, 2), counts
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart").first.is_visible()
    # readable on a phone: nothing wider than the screen but the scrolling tables
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_axe_finds_no_serious_violation_on_the_console_pages(demo: Demo, browser: Browser, decided: None) -> None:
    # The console's policy allows no script: the test's context bypasses it to inject axe.
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True)
    page = sign_in(demo, context)
    paths = ["/", f"/sites/{SITE}", f"/sites/{SITE}/inventory", f"/sites/{SITE}/notices", f"/sites/{SITE}/exports",
             f"/sites/{SITE}/consents", "/audit", f"/preview/{SITE}"]
    found: dict[str, list[str]] = {}
    for path in paths:
        page.goto(admin_url(demo, path), wait_until="load")
        assert page.url == admin_url(demo, path), path  # signed in, not sent to the sign-in
        found[path] = serious(axe_scan(page))
    context.close()
    signed_out = browser.new_context(bypass_csp=True)
    try:
        first = signed_out.new_page()
        first.goto(admin_url(demo), wait_until="load")
        assert first.locator("#token").count() == 1
        found["sign-in"] = serious(axe_scan(first))
    finally:
        signed_out.close()
    assert {path: v for path, v in found.items() if v} == {}


def test_the_preview_renders_both_layers_in_every_language(demo: Demo, console: tuple[BrowserContext, Page]) -> None:
    _, page = console
    titles: dict[str, Any] = {}
    for lang in ("nl", "en", "de", "fr"):
        page.goto(admin_url(demo, f"/preview/{SITE}?lang={lang}"), wait_until="load")
        frames = page.locator("iframe")
        assert frames.count() == 4
        widths = sorted(frames.nth(i).evaluate("f => f.getBoundingClientRect().width") for i in range(4))
        assert widths[0] < 400  # the phone frames (the desktop ones are wider; the page scrolls)
        for i in range(4):
            frames.nth(i).scroll_into_view_if_needed()
            frame = frames.nth(i).content_frame
            settings = "settings" in (frames.nth(i).get_attribute("src") or "")
            selector = ".cp-dialog" if settings else "#cp-banner"
            frame.locator(selector).wait_for(state="visible")
            assert frame.locator("html").get_attribute("lang") == lang
            if not settings:
                titles[lang] = frame.locator("#cp-title").inner_text()
    assert len(set(titles.values())) == 4, titles  # a text of its own in every language


def test_a_cross_site_form_cannot_act(demo: Demo, console: tuple[BrowserContext, Page]) -> None:
    """A page elsewhere (here: the demo's own proxy port, another origin on the same site, so the
    SameSite=Strict cookie IS sent) posts a checkpoint form to the console: refused with 403."""
    context, page = console
    target = admin_url(demo, f"/sites/{SITE}/checkpoint")
    attacker = context.new_page()
    attacker.route(f"http://127.0.0.1:{demo.port}/evil", lambda route: route.fulfill(
        content_type="text/html", body=f'<form method="post" action="{target}"><input name="csrf" value="guess">'
                                       "</form><script>document.forms[0].submit()</script>"))
    with attacker.expect_navigation(url=target) as navigation:
        attacker.goto(f"http://127.0.0.1:{demo.port}/evil")
    response = navigation.value
    assert response is not None and response.status == 403
    page.goto(admin_url(demo, f"/audit?site={SITE}&action=checkpoint"), wait_until="load")
    assert "No entries." in page.content()  # nothing signed, nothing even attempted under the token
