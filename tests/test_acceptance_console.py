"""Issue 18's first acceptance check, as a new user would try it: chromium against `consentproxy demo`.

Three visitors (accept all, reject all, statistics only) each browse a few of the demo's pages. Their browsers
report, under the proxy's report-only policy, every host the pages load from (the tracker stand-ins answer at
the real vendors' names under `.localhost`: third parties to the browser), and the banner script reports the
cookies the stand-ins' scripts set in `document.cookie`. After the inventory's next flush to the consent store,
the console, signed in with the token `make demo` points at, shows today's decisions per category and the chart,
and the inventory lists the script-set `_ga`, `_fbp` and `_hjSession_*` and every third-party host the browsers
really requested, each with its category. Then every table of the SQLite store is dumped: no visitor's address
and no value of any cookie the browsers held is in it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from demo_support import Demo, fetch
from playwright.sync_api import Browser, Page
from test_browser_banner import Visit
from test_console_browser import admin_url, sign_in, totals

SITE = "demo"
PAGES = ("/", "/diensten", "/contact", "/en/")
#: the stand-ins' host names, with the service and category the demo's configuration declares
HOSTS = {"www.googletagmanager.com.localhost": "statistics", "static.hotjar.com.localhost": "statistics",
         "connect.facebook.net.localhost": "marketing", "www.youtube.com.localhost": "marketing"}
SCRIPT_COOKIES = {"_ga": "statistics", "_fbp": "marketing", "_hjSession_3141592": "statistics"}
FLUSH_TIMEOUT = 60.0  # the inventory reaches the store every 10 s (INVENTORY_FLUSH_SECONDS)


@dataclass
class Seen:
    """What the three browsers did: the hosts they requested beside the site's, and the cookies they held."""

    hosts: set[str] = field(default_factory=set)
    cookie_values: dict[str, str] = field(default_factory=dict)  # value -> cookie name, for the messages


def visitor(demo: Demo, browser: Browser, choice: str, seen: Seen) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="nl-NL")
    context.on("request", lambda request: seen.hosts.add(urlsplit(request.url).hostname or ""))
    try:
        visit = Visit(demo, context)
        visit.open(PAGES[0])
        if choice == "statistics":
            visit.open_settings()
            visit.page.locator(".cp-dialog label[for=cp-sw-statistics]").click()
            visit.decide("save_selection", ".cp-dialog")
        else:
            visit.decide(choice)
        visit.settle()
        for path in PAGES[1:]:  # each view after the choice reports the cookies the scripts set
            visit.open(path)
        for cookie in context.cookies():
            seen.cookie_values[cookie["value"]] = f"{choice}: {cookie['name']}"
        # what the pages' scripts hold, in case any differs from the jar's view
        for pair in str(visit.page.evaluate("document.cookie")).split("; "):
            name, _, value = pair.partition("=")
            if value:
                seen.cookie_values.setdefault(value, f"{choice}: {name} (document.cookie)")
    finally:
        context.close()


@pytest.fixture(scope="module")
def seen(demo: Demo, browser: Browser) -> Seen:
    found = Seen()
    for choice in ("accept_all", "reject_all", "statistics"):
        visitor(demo, browser, choice, found)
    found.hosts -= {"127.0.0.1", ""}
    return found


def api(demo: Demo, path: str) -> Any:
    token = (demo.data_dir / "secrets" / "admin-token").read_text().strip()
    reply = fetch(demo.port + 1, path, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200, (path, reply.status, reply.text)
    return json.loads(reply.body)


@pytest.fixture(scope="module")
def inventory(demo: Demo, seen: Seen) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The site's stored inventory by (kind, name, set by), once the flush after the visits brought what the
    browsers reported (`_ga` is there twice: the site's Set-Cookie, held back, and the script's)."""
    wanted = {("host", host, "page") for host in seen.hosts} | {("cookie", name, "script") for name in SCRIPT_COOKIES}
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while True:
        items = {(i["kind"], i["name"], i["set_by"]): i for i in api(demo, f"/api/sites/{SITE}/inventory")["items"]}
        if wanted <= set(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.5)


@pytest.fixture
def console(demo: Demo, browser: Browser, seen: Seen) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield sign_in(demo, context)
    finally:
        context.close()


def test_the_make_demo_output_names_the_console_and_the_token(demo: Demo) -> None:
    token_file = demo.data_dir / "secrets" / "admin-token"
    assert f"  console            {admin_url(demo)}  (sign in with the admin token below" in demo.output()
    assert f"  admin token        {token_file}" in demo.output()


def test_the_pages_load_the_stand_ins_as_third_party_hosts(seen: Seen) -> None:
    # accept all loads every stand-in (YouTube's player too); nothing else leaves the site
    assert seen.hosts == set(HOSTS), seen.hosts


def test_the_console_shows_todays_decisions_per_category_and_the_chart(demo: Demo, console: Page) -> None:
    console.click(f"a[href='/sites/{SITE}']")
    console.wait_for_selector("svg.chart")
    counts = totals(console)
    assert counts["statistics"] == (2, 1), counts  # accept all, statistics only; reject all
    assert counts["marketing"] == (1, 2), counts
    assert counts["preferences"] == (1, 2), counts
    chart = console.locator("svg.chart").first
    assert chart.is_visible() and chart.bounding_box() is not None
    assert console.locator("svg.chart rect, svg.chart path, svg.chart polyline").count() > 0
    # the same numbers for today (UTC) from the statistics API the chart is drawn from
    today = datetime.now(UTC).date().isoformat()
    stats = api(demo, f"/api/sites/{SITE}/stats?since={today}&until={today}")
    (day,) = stats["days"]
    assert day["day"] == today
    found = {category: (c["given"], c["refused"], c["withdrawn"]) for category, c in day["categories"].items()}
    assert found == {"statistics": (2, 1, 0), "marketing": (1, 2, 0), "preferences": (1, 2, 0)}, found
    assert day["categories"]["statistics"]["opt_in_rate"] == round(2 / 3, 4)


def test_the_inventory_lists_the_script_cookies_and_every_third_party_host(
        seen: Seen, inventory: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    for name, category in SCRIPT_COOKIES.items():
        item = inventory.get(("cookie", name, "script"))
        assert item is not None, (name, sorted(inventory))
        assert item["category"] == category, item
    for host in seen.hosts | set(HOSTS):  # every host the browsers requested besides the site, and the four
        item = inventory.get(("host", host, "page"))
        assert item is not None, (host, sorted(inventory))
        assert (item["category"], item["source"]) == (HOSTS[host], "declared"), item
    # the proxy held every tracker back until the visitor's choice: none was seen before consent
    assert {key: i["before_consent"] for key, i in inventory.items()
            if key[2] in ("page", "script") and i["before_consent"]} == {}


def test_no_tracker_held_back_until_consent_is_reported_as_seen_before_it(demo: Demo, seen: Seen,
                                                                          inventory: Any) -> None:
    alarms = [line for line in demo.output().splitlines() if "before the visitor's consent" in line]
    assert not [line for line in alarms if any(f"'{name}'" in line for name in (*HOSTS, *SCRIPT_COOKIES))], alarms


def test_the_console_inventory_page_shows_them_with_their_categories(
        demo: Demo, console: Page, inventory: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    console.goto(admin_url(demo, f"/sites/{SITE}/inventory"), wait_until="load")
    rows: dict[tuple[str, str, str], str] = {}
    for row in console.locator("table tbody tr").all():
        cells = [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        rows[(cells[0], cells[1], cells[2])] = cells[3]  # kind, name, set by: category
    for name, category in SCRIPT_COOKIES.items():
        assert rows.get(("cookie", name, "script")) == category, rows
    for host, category in HOSTS.items():
        assert rows.get(("host", host, "page")) == category, rows


def test_no_address_or_cookie_value_anywhere_in_the_store(
        demo: Demo, seen: Seen, inventory: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    store = demo.data_dir / "consent-records.db"  # the demo's [store]: SQLite in its data directory
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:  # the write-ahead log read too
        tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
        dump = list(db.iterdump())  # every table, every row
    assert {"events", "inventory", "consent_daily", "admin_audit"} <= tables, tables
    text = "\n".join(dump)
    assert "_hjSession_3141592" in text and "www.googletagmanager.com.localhost" in text  # the dump is the store
    assert "127.0.0.1" not in text and "::1" not in text
    assert not re.search(r"\b127\.\d+\.\d+\.\d+\b", text)
    values = {value: owner for value, owner in seen.cookie_values.items() if len(value) >= 6}
    assert len(values) >= 8, seen.cookie_values  # consent cookies, session, _ga, _fbp, Hotjar's…
    leaked = {owner: value for value, owner in values.items() if value in text}
    assert leaked == {}
    log = demo.output()
    assert {owner: value for value, owner in values.items() if value in log} == {}
