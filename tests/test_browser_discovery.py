"""Discovery in chromium: a host a page script injects, and a cookie a script sets, reach the inventory.

The page's own inline script adds a `<script src>` from a host no list knows (the server never sees that
URL) and sets `_ga` in `document.cookie`. Chromium reports the host under the proxy's report-only policy
(through the Reporting API: `--short-reporting-delay` sends its batch within a second instead of a minute),
and the banner script reports the cookie's name soon after the page loaded. Both land in the inventory's buffer,
which logs each as seen before consent (the host unknown, `_ga` a statistics cookie): the log is where a
proxy process shows it. The buffer reaches the consent store (here at the proxy's shutdown, which flushes it),
where `consentproxy inventory` reads the unknown host back as an unknown third party seen before consent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM, Proxy, launch_proxy, serve_page, site_toml

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)"),
    pytest.mark.timeout(180),
]

UNKNOWN = "cdn.unknown-tracker.test"
PAGE = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Shop</h1>
<script>
  var s = document.createElement('script');
  s.src = 'https://{UNKNOWN}/pixel.js?uid=' + Math.random();
  document.head.appendChild(s);
  document.cookie = '_ga=GA1.1.1234567890.1700000000; path=/';
</script></body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--short-reporting-delay"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with serve_page(PAGE) as port:
        started = launch_proxy(tmp_path_factory.mktemp("discovery"), 0,
                               site_toml("shop", f"http://127.0.0.1:{port}", discovery_sample=1.0))
        try:
            yield started
        finally:
            started.stop()


def wait_for(proxy: Proxy, needle: str, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in proxy.log().splitlines() if needle in line]
        if lines:
            return lines
        time.sleep(0.25)
    raise AssertionError(f"no log line with {needle!r}:\n{proxy.log()}")


def test_an_injected_unknown_host_and_a_script_cookie_land_in_the_inventory(browser: Any, proxy: Proxy) -> None:
    context = browser.new_context(service_workers="block")
    try:
        context.route(f"https://{UNKNOWN}/**", lambda route: route.abort())  # nothing leaves the machine
        page = context.new_page()
        page.goto(proxy.url + "/", wait_until="load")
        assert page.evaluate("() => document.cookie").startswith("_ga=")
        host = wait_for(proxy, f"third-party host '{UNKNOWN}'")
        cookie = wait_for(proxy, "cookie '_ga'")  # the banner reports soon after load
    finally:
        context.close()
    assert "(loaded by a page; unknown) was seen before the visitor's consent" in host[0]
    assert "set by a script; statistics" in cookie[0] and "before the visitor's consent" in cookie[0]
    metrics = proxy.metrics()
    assert 'consentproxy_inventory_alerts_total{kind="host",reason="before_consent",site="shop"}' in metrics
    assert 'consentproxy_inventory_alerts_total{kind="cookie",reason="before_consent",site="shop"}' in metrics
    assert "GA1.1.1234567890" not in proxy.log() and "uid=" not in proxy.log()
    # in the store, where every instance, the CLI, the admin API and the console read it
    assert proxy.stop() == 0  # a clean shutdown merges what the inventory buffered
    listed = subprocess.run([sys.executable, "-m", "consentproxy", "inventory", "-c", str(proxy.config_path),
                             "--site", "shop", "--json"], capture_output=True, text=True, check=True, timeout=60)
    items = {(i["kind"], i["name"]): i for i in json.loads(listed.stdout)}
    unknown = items[("host", UNKNOWN)]
    assert (unknown["set_by"], unknown["category"], unknown["source"]) == ("page", "unknown", "unknown"), unknown
    assert unknown["before_consent"] >= 1 and unknown["count"] >= 1, unknown
    ga = items[("cookie", "_ga")]
    assert (ga["set_by"], ga["category"], ga["before_consent"]) == ("script", "statistics", 1), ga
    assert "1234567890" not in listed.stdout and "uid=" not in listed.stdout
