"""A site's own category in chromium: the settings layer lists it with a toggle that works (issue 20 item 3).

The page loads a script of the site's `social` category (it sets a cookie and a flag when it runs). The
visitor opens the settings layer, finds "Social media" between statistics and marketing, switches it on
and saves: the script runs, the statistics switch stayed off, Consent Mode grants the signals `social` maps
to, and after a reload the script is no longer held.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, Proxy, launch_proxy, serve_page

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)"),
    pytest.mark.timeout(180),
]
WAIT_MS = 15_000

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Kade</title>
<script src="/share-widget.js"></script></head>
<body><h1>Kade</h1><p>Hello.</p></body></html>"""
SHARE_JS = "window.__shared = true; document.cookie = 'share_id=1; path=/';"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with serve_page(PAGE, files={"/share-widget.js": (SHARE_JS, "application/javascript")}) as port:
        sites = f"""
[sites.kade]
hosts = ["127.0.0.1"]
upstream = "http://127.0.0.1:{port}"

[sites.kade.consent.categories.social]
label = {{ nl = "Sociale media", en = "Social media" }}
description = {{ nl = "Deelknoppen.", en = "Share buttons of social networks." }}
consent_mode = ["ad_storage", "ad_user_data"]
order = 25

[[sites.kade.services]]
name = "ShareThing"
category = "social"
scripts = ["share-widget.js"]
cookies = ["share_*"]
"""
        started = launch_proxy(tmp_path_factory.mktemp("custom-browser"), 0, sites)
        try:
            yield started
        finally:
            started.stop()


def test_the_settings_layer_toggles_the_sites_own_category(browser: Any, proxy: Proxy) -> None:
    context = browser.new_context(locale="en-GB", service_workers="block")
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{proxy.port}/", wait_until="load")
        assert page.locator('script[data-cp-blocked="social"]').count() == 1
        assert page.evaluate("window.__shared === true") is False

        page.locator("#cp-banner [data-cp-action=settings]").click()
        page.wait_for_selector(".cp-dialog[role=dialog][aria-modal=true]", timeout=WAIT_MS)
        switches = page.locator(".cp-dialog input[role=switch][data-cp-category]")
        order = [switches.nth(i).get_attribute("data-cp-category") for i in range(switches.count())]
        assert order == ["necessary", "preferences", "statistics", "social", "marketing"]
        social = page.locator(".cp-dialog input[data-cp-category=social]")
        assert not social.is_checked() and social.is_enabled()
        assert page.locator(".cp-dialog label[for=cp-sw-social]").inner_text().strip().startswith("Social media")
        assert page.locator(".cp-dialog").get_by_text("Share buttons of social networks.").is_visible()

        page.locator(".cp-dialog label[for=cp-sw-social]").click()
        assert social.is_checked()
        assert not page.locator(".cp-dialog input[data-cp-category=statistics]").is_checked()
        page.locator(".cp-dialog [data-cp-action=save_selection]").click()
        page.wait_for_selector('#cp-root[data-cp-decided="1"]', state="attached", timeout=WAIT_MS)
        assert set((page.get_attribute("#cp-root", "data-cp-granted") or "").split()) == {"necessary", "social"}

        page.wait_for_function("window.__shared === true", timeout=WAIT_MS)  # the held script ran
        update = page.evaluate("""() => {
            const calls = (window.dataLayer || []).filter(a => a[0] === 'consent' && a[1] === 'update');
            return calls.length ? Object.assign({}, calls[calls.length - 1][2]) : null;
        }""")
        assert update is not None
        assert (update["ad_storage"], update["ad_user_data"]) == ("granted", "granted")
        assert (update["analytics_storage"], update["ad_personalization"]) == ("denied", "denied")
        assert "share_id" in {c["name"] for c in context.cookies()}

        page.reload(wait_until="load")
        assert page.locator("#cp-banner").count() == 0
        assert page.locator("[data-cp-blocked]").count() == 0
        page.wait_for_function("window.__shared === true", timeout=WAIT_MS)
    finally:
        context.close()
