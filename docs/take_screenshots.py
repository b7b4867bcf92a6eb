"""Screenshots of the consent banner for the docs: `make screenshots`.

Starts `consentproxy demo` on free ports, opens it in headless chromium
(Debian's /usr/bin/chromium via Playwright) and saves the first layer and the
settings layer, in Dutch (`/`) and English (`/en/`), at desktop and mobile
width, as docs/screenshots/{banner,settings}-{nl,en}-{desktop,mobile}.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from demo_support import start_demo, stop_demo  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LANGUAGES = {"nl": "/", "en": "/en/"}
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


def shoot(browser: Browser, base_url: str, lang: str, device: str, out: Path) -> list[Path]:
    context = browser.new_context(**VIEWPORTS[device], locale=lang, reduced_motion="reduce")  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(base_url + LANGUAGES[lang], wait_until="networkidle")
        page.wait_for_selector("#cp-banner", state="visible")
        first = out / f"banner-{lang}-{device}.png"
        page.screenshot(path=str(first))
        page.locator("#cp-banner [data-cp-action=settings]").click()
        page.wait_for_selector(".cp-dialog", state="visible")
        page.mouse.move(0, 0)  # no hover effect on whatever button lies under the pointer
        settings = out / f"settings-{lang}-{device}.png"
        page.screenshot(path=str(settings))
        return [first, settings]
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consentproxy-screenshots-") as scratch:
        demo = start_demo(Path(scratch))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    for lang in LANGUAGES:
                        for device in VIEWPORTS:
                            for path in shoot(browser, f"http://127.0.0.1:{demo.port}", lang, device, out):
                                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                finally:
                    browser.close()
        finally:
            stop_demo(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
