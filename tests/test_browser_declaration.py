"""The cookie declaration on the demo's privacy pages, in headless chromium (Playwright)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROOT
from demo_support import Demo
from playwright.sync_api import Browser

AXE_JS = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: axe on the declaration alone (the page around it is the demo site's)
AXE_RUN = """async () => {
  const result = await axe.run('.cp-declaration', {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
  });
  return {checked: result.passes.length,
          violations: result.violations.map(v => `${v.id} (${v.impact}): ${v.help}`)};
}"""


@pytest.mark.parametrize(("path", "locale", "caption", "header"), [
    ("/en/privacy", "en-GB", "Necessary", "Lifetime"),
    ("/privacy", "nl-NL", "Noodzakelijk", "Bewaartermijn"),
])
def test_the_declaration_shows_on_the_privacy_page(demo: Demo, browser: Browser, path: str, locale: str,
                                                   caption: str, header: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale=locale)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{demo.port}{path}", wait_until="load")
        tables = page.locator("[data-consent-declaration] table.cp-declaration-table")
        assert tables.count() == 4
        first = tables.first
        assert first.is_visible()
        assert first.locator("caption .cp-declaration-name").inner_text() == caption
        assert header in first.locator("thead").inner_text()
        assert first.get_by_role("rowheader", name="kade_session").is_visible()
        # the settings button opens the banner's settings dialog
        page.locator(".cp-declaration-settings").click()
        page.wait_for_selector(".cp-dialog[role=dialog][aria-modal=true]", timeout=15_000)
        page.keyboard.press("Escape")
        if not AXE_JS.exists():
            pytest.fail(f"axe-core is not installed at {AXE_JS}: run `make axe`")
        page.add_script_tag(path=str(AXE_JS))
        result: dict[str, Any] = page.evaluate(AXE_RUN)
        assert result["checked"] > 5
        assert [v for v in result["violations"] if "(serious)" in v or "(critical)" in v] == []
    finally:
        context.close()
