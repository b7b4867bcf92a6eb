"""Screenshots of the console and the banner preview for the README (`make screenshots` takes them too).

Starts `consentproxy demo` on free ports, lets three visitors decide in
headless chromium (accept all, reject all, statistics only) and browse two
more pages each, waits until their browsers' reports reached the inventory in
the consent store, signs in to the console with the demo's admin token and
saves the site's consent rates at desktop and phone width, its inventory and
the banner preview, as
docs/screenshots/console-{rates-desktop,rates-mobile,inventory,preview}.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from demo_support import Demo, fetch, start_demo, stop_demo  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
#: what the visitors' browsers report: the stand-ins' hosts and the cookies their scripts set
REPORTED = {"www.googletagmanager.com.localhost", "connect.facebook.net.localhost", "static.hotjar.com.localhost",
            "_ga", "_fbp", "_hjSession_3141592"}


def visitors(browser: Browser, demo: Demo) -> None:
    for choice in ("accept_all", "reject_all", "statistics"):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{demo.port}/", wait_until="networkidle")
        if choice == "statistics":
            page.locator("#cp-banner [data-cp-action=settings]").click()
            page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
            page.locator(".cp-dialog [data-cp-action=save_selection]").click()
        else:
            page.locator(f"#cp-banner [data-cp-action={choice}]").click()
        page.wait_for_selector('#cp-root[data-cp-decided="1"]', state="attached")
        for path in ("/diensten", "/en/"):  # the stand-ins' scripts ran: these views report their cookies
            page.goto(f"http://127.0.0.1:{demo.port}{path}", wait_until="networkidle")
        context.close()


def wait_for_inventory(demo: Demo, timeout: float = 60.0) -> None:
    """Until the inventory's flush (every 10 s) brought the reports to the consent store."""
    token = (demo.data_dir / "secrets" / "admin-token").read_text().strip()
    deadline = time.monotonic() + timeout
    while True:
        reply = fetch(demo.port + 1, "/api/sites/demo/inventory", headers={"Authorization": f"Bearer {token}"})
        names = {item["name"] for item in json.loads(reply.body)["items"]}
        if names >= REPORTED or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def shoot(browser: Browser, demo: Demo, out: Path) -> list[Path]:
    admin = f"http://127.0.0.1:{demo.port + 1}"
    token = (demo.data_dir / "secrets" / "admin-token").read_text().strip()
    made = []
    for label, size in (("desktop", (1280, 900)), ("mobile", (390, 844))):
        context = browser.new_context(viewport={"width": size[0], "height": size[1]}, is_mobile=label == "mobile")
        page = context.new_page()
        page.goto(admin + "/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Sites')")
        page.goto(admin + "/sites/demo")
        path = out / f"console-rates-{label}.png"
        page.screenshot(path=str(path), full_page=label == "desktop")
        made.append(path)
        if label == "desktop":
            page.goto(admin + "/sites/demo/inventory", wait_until="load")
            path = out / "console-inventory.png"
            page.screenshot(path=str(path))
            made.append(path)
            page.goto(admin + "/preview/demo?lang=en", wait_until="load")
            for frame in page.frames[1:]:
                frame.wait_for_load_state("load")
            page.wait_for_timeout(500)
            page.evaluate("window.scrollTo(0, 0)")
            path = out / "console-preview.png"
            page.screenshot(path=str(path))
            made.append(path)
        context.close()
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consentproxy-console-") as scratch:
        demo = start_demo(Path(scratch))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    visitors(browser, demo)
                    wait_for_inventory(demo)
                    for path in shoot(browser, demo, out):
                        print(f"wrote {path}")
                finally:
                    browser.close()
        finally:
            stop_demo(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
