"""PNG screenshots of the banner preview documents, when chromium and Playwright are there.

Optional by design: Playwright is a development dependency and chromium a
system package, so `consentproxy preview --banner` writes the HTML files
always and the PNGs only when both are present, saying why not otherwise.
"""

from __future__ import annotations

from pathlib import Path

from consentproxy.banner.preview import WIDTHS

CHROMIUM = "/usr/bin/chromium"
HEIGHT = {"desktop": 800, "mobile": 844}


def screenshots(documents: list[Path], chromium: str = CHROMIUM) -> tuple[list[Path], str]:
    """A PNG per document and width beside it (`….desktop.png`, `….mobile.png`); or none and the reason."""
    if not Path(chromium).exists():
        return [], f"no PNG screenshots: chromium is not at {chromium}"
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return [], "no PNG screenshots: the Playwright package is not installed (pip install playwright)"
    made: list[Path] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                for label, width in WIDTHS.items():
                    context = browser.new_context(viewport={"width": width, "height": HEIGHT[label]},
                                                  is_mobile=label == "mobile", reduced_motion="reduce")
                    # The documents need nothing from the network: refuse anything they might ask for.
                    context.route("http*://**", lambda route: route.abort())
                    page = context.new_page()
                    for document in documents:
                        page.goto(document.resolve().as_uri(), wait_until="load")
                        if "-settings" in document.name:
                            page.wait_for_selector(".cp-dialog", state="visible")
                        else:
                            page.wait_for_selector("#cp-banner", state="visible")
                        png = document.with_name(f"{document.stem}.{label}.png")
                        page.screenshot(path=str(png))
                        made.append(png)
                    context.close()
            finally:
                browser.close()
    except Error as exc:
        return made, f"PNG screenshots stopped: {exc}"
    return made, ""
