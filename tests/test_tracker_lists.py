"""Operator tracker lists (`[trackers] lists`): the four formats, generated here, classify hosts the bundled
catalogue does not know, in the matcher and on a page through a real proxy process; categories are mapped
and overridden; a broken file stops the start (and a reload) with its path and reason; a million hosts load
and match."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Proxy, free_port, mint, serve_page, site_toml, wait_ready

from consentproxy.banner.guard import HOST_LIMIT, guard_table
from consentproxy.config.loader import ConfigError, load_config
from consentproxy.config.model import TrackerListConfig
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.html.trackers import ListIndex, Match, TrackerMatcher
from consentproxy.records import RecordWriter
from consentproxy.runtime import Runtime, with_default_keys
from consentproxy.tracker_lists import load_tracker_lists, read_list

# hosts neither the catalogue nor the Open Cookie Database knows, one per format
HOSTS = {"trackerdb": "pixel.quuxmetrics.io", "tds": "cdn.zorbads.net", "disconnect": "t.flumbertrack.com",
         "abp": "beacon.grobnalytics.org"}


# --- the four formats, as their publishers shape them --------------------------------------------------------

def trackerdb_sqlite(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Ghostery's trackerdb.db: (domain, tracker name, category) rows."""
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE categories(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
            CREATE TABLE companies(id TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
            CREATE TABLE trackers(id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, category_id INTEGER,
                                  website_url TEXT, company_id TEXT, ghostery_id TEXT, notes TEXT, alias TEXT);
            CREATE TABLE tracker_domains(tracker TEXT NOT NULL, domain TEXT UNIQUE NOT NULL, notes TEXT);""")
        for domain, name, category in rows:
            db.execute("INSERT OR IGNORE INTO categories(name) VALUES (?)", (category,))
            (category_id,) = db.execute("SELECT id FROM categories WHERE name = ?", (category,)).fetchone()
            db.execute("INSERT OR IGNORE INTO trackers(id, name, category_id) VALUES (?, ?, ?)",
                       (name.lower(), name, category_id))
            db.execute("INSERT INTO tracker_domains(tracker, domain) VALUES (?, ?)", (name.lower(), domain))
    db.close()
    return path


def trackerdb_json(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Ghostery's trackerdb.json export: `patterns` → id → {name, category, domains, filters}."""
    patterns: dict[str, Any] = {}
    for domain, name, category in rows:
        pattern = patterns.setdefault(name.lower(), {"name": name, "category": category, "organization": None,
                                                     "domains": [], "filters": []})
        pattern["domains"].append(domain)
    data = {"categories": {c: {"name": c} for _, _, c in rows}, "organizations": {}, "patterns": patterns,
            "domains": {d: n.lower() for d, n, _ in rows}, "filters": {}}
    path.write_text(json.dumps(data))
    return path


def tds(path: Path, rows: list[tuple[str, str, list[str]]], default: str = "block") -> Path:
    """DuckDuckGo's TDS: `trackers` → domain → {owner, categories, default, rules}."""
    trackers = {domain: {"domain": domain, "owner": {"name": f"{name} Inc.", "displayName": name},
                         "prevalence": 0.01, "fingerprinting": 1, "cookies": 0.01, "categories": categories,
                         "default": default, "rules": []}
                for domain, name, categories in rows}
    path.write_text(json.dumps({"trackers": trackers, "entities": {}, "domains": {}, "cnames": {}}))
    return path


def disconnect(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Disconnect's services.json: `categories` → name → [{company: {url: [domains]}}]."""
    categories: dict[str, list[Any]] = {}
    for domain, company, category in rows:
        categories.setdefault(category, []).append(
            {company: {f"https://{company.lower()}.example/": [domain], "performance": "true"}})
    path.write_text(json.dumps({"license": "test data", "categories": categories}))
    return path


def abp(path: Path, lines: list[str], title: str = "Test Privacy") -> Path:
    path.write_text("[Adblock Plus 2.0]\n" + f"! Title: {title}\n! a comment\nexample.com##.ad-banner\n"
                    + "\n".join(lines) + "\n")
    return path


def one_of_each(folder: Path) -> list[TrackerListConfig]:
    """A list of each format, each classifying its own unknown host."""
    return [
        TrackerListConfig("trackerdb", trackerdb_sqlite(folder / "trackerdb.db",
                                                        [("quuxmetrics.io", "Quux Metrics", "site_analytics")])),
        TrackerListConfig("tds", tds(folder / "tds.json", [("zorbads.net", "Zorb Ads", ["Advertising"])])),
        TrackerListConfig("disconnect", disconnect(folder / "services.json",
                                                   [("flumbertrack.com", "Flumber", "Advertising")])),
        TrackerListConfig("abp", abp(folder / "easyprivacy.txt", ["||grobnalytics.org^$third-party"])),
    ]


EXPECTED = {"trackerdb": Match("Quux Metrics", "statistics"), "tds": Match("Zorb Ads", "marketing"),
            "disconnect": Match("Flumber", "marketing"), "abp": Match("Test Privacy", "marketing")}


def config_file(folder: Path, lists: list[TrackerListConfig], upstream: str = "http://127.0.0.1:9",
                port: int | None = None, admin: int | None = None) -> Path:
    """A configuration file naming the lists by paths relative to it."""
    listen = f'listen = ["127.0.0.1:{port}"]\nadmin_listen = "127.0.0.1:{admin}"\n' if port else ""
    entries = []
    for item in lists:
        categories = ", ".join(f'"{k}" = "{v}"' for k, v in item.categories.items())
        entries.append(f'{{format = "{item.format}", path = "{item.path.relative_to(folder)}"'
                       + (f", categories = {{{categories}}}" if categories else "") + "}")
    path = folder / "proxy.toml"  # conftest.mint finds the keys in data/ beside a proxy.toml
    path.write_text(f'[server]\n{listen}data_dir = "{folder / "data"}"\n\n'
                    + site_toml("shop", upstream) + f"\n[trackers]\nlists = [{', '.join(entries)}]\n")
    return path


def build(path: Path) -> Runtime:
    config = with_default_keys(load_config(path))
    return Runtime.build(config, CookieInventory(config.server.data_dir), RecordWriter.for_url("sqlite:///:memory:"))


# --- the matcher ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("list_format", list(HOSTS))
def test_each_format_classifies_a_host_the_catalogue_does_not_know(tmp_path: Path, list_format: str) -> None:
    item = next(i for i in one_of_each(tmp_path) if i.format == list_format)
    host = HOSTS[list_format]
    url = f"https://{host}/collect.js?v=1"
    assert TrackerMatcher(()).url("scripts", url) is None  # the bundled catalogue does not know it
    matcher = TrackerMatcher((), lists=read_list(item))
    assert matcher.url("scripts", url) == EXPECTED[list_format]
    assert matcher.url("pixels", f"//{host.upper()}:443/p.gif") == EXPECTED[list_format]  # any spelling
    assert matcher.host(f"https://{host}") == EXPECTED[list_format]  # resource hints
    assert matcher.inline(f"var s = document.createElement('script'); s.src = 'https://{host}/x.js';") \
        == EXPECTED[list_format]
    parent = host.split(".", 1)[1]
    assert matcher.url("scripts", f"https://a.b.{parent}/x.js") == EXPECTED[list_format]  # subdomains
    assert matcher.url("scripts", f"https://not{parent}/x.js") is None  # look-alikes are not
    listed = [rule for rule in matcher.host_rules() if parent in rule[0]]
    assert len(listed) == 1 and (host == listed[0][0] or host.endswith("." + listed[0][0]))
    assert listed[0][1:] == ("", EXPECTED[list_format])
    table = guard_table(matcher, frozenset())  # the client-side guard holds it too
    assert listed[0][0] in table["c"][EXPECTED[list_format].category].split()


def test_lists_come_after_the_site_and_the_catalogue(tmp_path: Path) -> None:
    from consentproxy.config.model import ServiceConfig

    listed = read_list(TrackerListConfig("tds", tds(tmp_path / "tds.json", [
        ("google-analytics.com", "Not Google", ["Advertising"]), ("mysite-cdn.net", "Mine", ["Advertising"]),
        ("zorbads.net", "Zorb", ["Advertising"])])))
    site = ServiceConfig(name="Our CDN", category="necessary", hosts=("mysite-cdn.net",))
    matcher = TrackerMatcher((site,), lists=listed)
    assert matcher.url("scripts", "https://www.google-analytics.com/analytics.js") == Match("Google Analytics",
                                                                                             "statistics")
    assert matcher.url("scripts", "https://mysite-cdn.net/app.js") == Match("Our CDN", "necessary")
    assert matcher.url("scripts", "https://zorbads.net/a.js") == Match("Zorb", "marketing")
    # shared, not copied: every site's matcher holds the one index
    assert TrackerMatcher((), lists=listed)._list_hosts is listed.hosts is matcher._list_hosts
    assert len(matcher) == len(TrackerMatcher((site,)))


def test_builtin_category_mapping_and_overrides(tmp_path: Path) -> None:
    rows = [("a-ads.test", "A", ["Advertising"]), ("b-stats.test", "B", ["Analytics"]),
            ("c-cdn.test", "C", ["CDN"]), ("d-both.test", "D", ["Analytics", "Action Pixels"]),
            ("e-none.test", "E", []), ("f-login.test", "F", ["Federated Login", "SSO"])]
    path = tds(tmp_path / "tds.json", rows)
    hosts = read_list(TrackerListConfig("tds", path)).hosts
    assert {host: match.category for host, match in hosts.items()} == {
        "a-ads.test": "marketing", "b-stats.test": "statistics", "d-both.test": "marketing",
        "e-none.test": "marketing"}  # CDN and login are not trackers; the most restrictive category wins
    overridden = read_list(TrackerListConfig("tds", path, {"CDN": "preferences", "Advertising": "statistics",
                                                            "Action Pixels": "necessary", "(none)": "necessary"}))
    assert {host: match.category for host, match in overridden.hosts.items()} == {
        "a-ads.test": "statistics", "b-stats.test": "statistics", "c-cdn.test": "preferences",
        "d-both.test": "statistics"}
    ignored = tds(tmp_path / "ignore.json", [("x-ignored.test", "X", ["Advertising"]),
                                             ("y-blocked.test", "Y", ["Advertising"])])
    data = json.loads(ignored.read_text())
    data["trackers"]["x-ignored.test"]["default"] = "ignore"  # DuckDuckGo blocks it only by path rules
    ignored.write_text(json.dumps(data))
    assert set(read_list(TrackerListConfig("tds", ignored)).hosts) == {"y-blocked.test"}

    ghostery = [("ads.g.test", "GA", "advertising"), ("cdn.g.test", "GC", "cdn"), ("ok.g.test", "GE", "essential"),
                ("stats.g.test", "GS", "site_analytics"), ("host.g.test", "GH", "hosting"),
                ("cmp.g.test", "GP", "consent")]
    for path in (trackerdb_sqlite(tmp_path / "t.db", ghostery), trackerdb_json(tmp_path / "t.json", ghostery)):
        assert {h: m for h, m in read_list(TrackerListConfig("trackerdb", path)).hosts.items()} == {
            "ads.g.test": Match("GA", "marketing"), "stats.g.test": Match("GS", "statistics")}
        assert read_list(TrackerListConfig("trackerdb", path, {"hosting": "statistics"})).hosts["host.g.test"] \
            == Match("GH", "statistics")

    services = disconnect(tmp_path / "services.json", [("ad.d.test", "DA", "Advertising"),
                                                       ("an.d.test", "DN", "Analytics"),
                                                       ("co.d.test", "DC", "Content"),
                                                       ("fp.d.test", "DF", "FingerprintingInvasive")])
    assert {h: m.category for h, m in read_list(TrackerListConfig("disconnect", services)).hosts.items()} == {
        "ad.d.test": "marketing", "an.d.test": "statistics", "fp.d.test": "marketing"}

    filters = abp(tmp_path / "list.txt", ["||abp.test^"])
    assert read_list(TrackerListConfig("abp", filters)).hosts["abp.test"] == Match("Test Privacy", "marketing")
    assert read_list(TrackerListConfig("abp", filters, {"all": "statistics"})).hosts["abp.test"] \
        == Match("Test Privacy", "statistics")


def test_abp_host_rules_go_to_the_index_the_rest_to_the_filter_engine(tmp_path: Path) -> None:
    path = abp(tmp_path / "list.txt", [
        "||hostonly.test^", "||thirdparty.test^$third-party", "||Upper.Test^$important",
        "||scriptonly.test^$script",  # narrowed to a resource type: the engine decides
        "||withpath.test/track/", "/pixel/collect.gif$image", "||open.test^", "@@||ok.open.test^",
        "||gone.test^", "||gone.test^$badfilter", "##.cosmetic", "example.org#@#.ad",
    ])
    lists = read_list(TrackerListConfig("abp", path))
    assert set(lists.hosts) == {"hostonly.test", "thirdparty.test", "upper.test"}
    assert len(lists.filters) == 1
    matcher = TrackerMatcher((), lists=lists)
    listed = Match("Test Privacy", "marketing")
    assert matcher.url("scripts", "https://cdn.hostonly.test/a.js") == listed
    assert matcher.url("scripts", "https://scriptonly.test/a.js") == listed
    assert matcher.url("pixels", "https://scriptonly.test/a.gif") is None
    assert matcher.url("scripts", "https://withpath.test/track/a.js") == listed
    assert matcher.url("scripts", "https://withpath.test/app.js") is None
    assert matcher.url("pixels", "https://anywhere.test/pixel/collect.gif?x=1") == listed
    assert matcher.url("pixels", "/pixel/collect.gif") == listed  # the site's own URL, relative
    assert matcher.url("scripts", "https://anywhere.test/pixel/collect.gif") is None  # $image only
    assert matcher.url("scripts", "https://open.test/a.js") == listed
    assert matcher.url("scripts", "https://ok.open.test/a.js") is None  # the exception holds
    assert matcher.url("scripts", "https://gone.test/a.js") is None  # the $badfilter holds
    assert matcher.url("pixels", "data:image/gif;base64,R0lGOD") is None
    assert matcher.host("https://withpath.test") is None  # hints ask hosts only


# --- a whole page through the proxy ----------------------------------------------------------------------------

def _live(html: str, url: str) -> bool:
    return re.search(r'(?<![-\w])src="' + re.escape(url) + '"', html) is not None


def _launch(folder: Path, config: Path, port: int, admin: int) -> Proxy:

    log = folder / "proxy.log"
    process = subprocess.Popen([sys.executable, "-m", "consentproxy", "serve", "-c", str(config)],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    proxy = Proxy(process, port, admin, config, log)
    try:
        wait_ready(proxy.admin_url + "/readyz", process)
    except (RuntimeError, TimeoutError) as exc:
        proxy.stop()
        raise AssertionError(f"proxy did not start: {exc}\n{proxy.log()}") from exc
    return proxy


def _get(proxy: Proxy, cookie: str | None = None) -> str:
    request = urllib.request.Request(proxy.url + "/", headers={"Accept": "text/html", "Host": "127.0.0.1"})
    if cookie:
        request.add_header("Cookie", f"cp_consent={cookie}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def test_without_braveblock_host_rules_still_load_and_other_rules_are_refused_with_the_extra_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """braveblock is the optional extra `abp` (wheels for CPython 3.11 only): a list of bare ||host^ rules needs
    none; one with more names the extra instead of failing at import."""
    monkeypatch.setitem(sys.modules, "braveblock", None)  # `import braveblock` raises ImportError
    hosts_only = read_list(TrackerListConfig("abp", abp(tmp_path / "hosts.txt", ["||hostonly.test^"])))
    assert set(hosts_only.hosts) == {"hostonly.test"} and not hosts_only.filters
    path = abp(tmp_path / "list.txt", ["||hostonly.test^", "/pixel/collect.gif$image"])
    with pytest.raises(Exception, match=r"consentproxy\[abp\]"):
        read_list(TrackerListConfig("abp", path))


def test_a_page_through_the_proxy_blocks_what_each_list_names_until_consent(tmp_path: Path) -> None:

    urls = {name: f"https://{host}/t.js" for name, host in HOSTS.items()}
    unknown = "https://cdn.unlisted-vendor.test/lib.js"
    page = ("<!doctype html><html><head><title>Shop</title>"
            + "".join(f'<script async src="{url}"></script>' for url in urls.values())
            + f'<script src="{unknown}"></script></head><body><h1>Shop</h1>'
            '<img src="https://anywhere.test/pixel/collect.gif" width="1" height="1"></body></html>')
    lists = one_of_each(tmp_path)
    abp(lists[3].path, ["||grobnalytics.org^$third-party", "/pixel/collect.gif$image"])
    port, admin = free_port(), free_port()
    with serve_page(page) as upstream_port:
        proxy = _launch(tmp_path, config_file(tmp_path, lists, f"http://127.0.0.1:{upstream_port}", port, admin),
                        port, admin)
        try:
            _check_page(proxy, urls, unknown)
        finally:
            proxy.stop()


def _check_page(proxy: Proxy, urls: dict[str, str], unknown: str) -> None:
    """Each list's element blocked with its list's category, an ABP path rule too, an unlisted one live; all
    live after consent."""
    html = _get(proxy)
    assert 'id="cp-banner"' in html
    for name, url in urls.items():
        assert not _live(html, url), name
        assert f'data-cp-src="{url}"' in html, name
        assert f'data-cp-blocked="{EXPECTED[name].category}"' in html, name
    assert 'data-cp-src="https://anywhere.test/pixel/collect.gif"' in html  # an ABP path rule
    assert _live(html, unknown)  # what no list names stays
    granted = _get(proxy, mint(proxy, {"necessary", "statistics", "marketing"}))
    assert all(_live(granted, url) for url in urls.values())


def test_sighup_picks_up_a_changed_list_and_refuses_a_broken_one(tmp_path: Path) -> None:

    page = ('<!doctype html><html><head><script src="https://old.zorbads.net/a.js"></script>'
            '<script src="https://new.blimptrack.net/b.js"></script></head><body></body></html>')
    lists = [TrackerListConfig("tds", tds(tmp_path / "tds.json", [("zorbads.net", "Zorb", ["Advertising"])]))]
    port, admin = free_port(), free_port()
    with serve_page(page) as upstream_port:
        proxy = _launch(tmp_path, config_file(tmp_path, lists, f"http://127.0.0.1:{upstream_port}", port, admin),
                        port, admin)
        try:
            _reload_lists(tmp_path, proxy)
        finally:
            proxy.stop()


def _reload_lists(tmp_path: Path, proxy: Proxy) -> None:
    def reload(expect: str) -> None:
        count = proxy.log().count(expect)
        proxy.process.send_signal(1)
        deadline = time.monotonic() + 20
        while proxy.log().count(expect) == count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.log().count(expect) > count, proxy.log()

    html = _get(proxy)
    assert not _live(html, "https://old.zorbads.net/a.js") and _live(html, "https://new.blimptrack.net/b.js")
    tds(tmp_path / "tds.json", [("blimptrack.net", "Blimp", ["Analytics"])])
    reload("configuration reloaded")
    html = _get(proxy)
    assert _live(html, "https://old.zorbads.net/a.js") and not _live(html, "https://new.blimptrack.net/b.js")
    assert 'data-cp-blocked="statistics"' in html
    (tmp_path / "tds.json").write_text('{"trackers": ')  # cut off mid-write
    reload("reload refused")
    assert f"trackers.lists[0]: {tmp_path / 'tds.json'}: is not JSON" in proxy.log()
    html = _get(proxy)  # the running lists stay
    assert _live(html, "https://old.zorbads.net/a.js") and not _live(html, "https://new.blimptrack.net/b.js")


# --- broken files ----------------------------------------------------------------------------------------------

def _broken(folder: Path) -> list[tuple[str, str, Callable[[Path], None], str]]:
    """(format, file name, how to write it, what the reason says)."""
    def write(text: str | bytes) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(text.encode() if isinstance(text, str) else text)

    def empty_sqlite(path: Path) -> None:
        sqlite3.connect(path).execute("CREATE TABLE other(x)").connection.commit()

    return [
        ("tds", "missing.json", lambda path: None, "cannot read the tds list: No such file or directory"),
        ("disconnect", "folder.json", lambda path: path.mkdir(), "cannot read the disconnect list"),
        ("tds", "tds.json", write("<html>not json</html>"), "is not JSON"),
        ("tds", "wrong.json", write('{"entities": {}}'), 'has no "trackers" table'),
        ("tds", "nothing.json", write(json.dumps({"trackers": {"cdn.test": {"categories": ["CDN"],
                                                                            "default": "block"}}})),
         "holds no usable rule"),
        ("disconnect", "services.json", write('{"categories": {"Content": [{"X": {"https://x/": ["x.test"]}}]}}'),
         "holds no usable rule"),
        ("disconnect", "list.json", write("[1, 2]"), "has no top-level table"),
        ("trackerdb", "trackerdb.db", empty_sqlite, "is not a readable TrackerDB database"),
        ("trackerdb", "trackerdb.json", write('{"patterns": []}'), 'has no "patterns" table'),
        ("abp", "easylist.txt", write('{"trackers": {}}'), "looks like JSON, not a filter list"),
        ("abp", "binary.txt", write(b"\x89PNG\r\n\x00\x00"), "is a binary file"),
        ("abp", "latin1.txt", write(b"||caf\xe9.test^\n"), "is not UTF-8 text"),
        ("abp", "comments.txt", write("! Title: Empty\n! nothing here\nexample.com##.ad\n"), "holds no usable rule"),
        ("tds", "sqlite.json", lambda path: trackerdb_sqlite(path, [("a.test", "A", "advertising")]),
         'is an SQLite database, not the JSON a tds list is; a Ghostery trackerdb.db takes format = "trackerdb"'),
    ]


def test_a_broken_list_of_each_kind_stops_the_runtime_with_its_path_and_reason(tmp_path: Path) -> None:
    for index, (list_format, name, make, reason) in enumerate(_broken(tmp_path)):
        folder = tmp_path / str(index)
        (folder / "lists").mkdir(parents=True)
        path = folder / "lists" / name
        make(path)
        good = tds(folder / "lists" / "good.json", [("zorbads.net", "Zorb", ["Advertising"])])
        config = config_file(folder, [TrackerListConfig("tds", good), TrackerListConfig(list_format, path)])
        with pytest.raises(ConfigError) as failed:
            build(config)
        assert len(failed.value.problems) == 1, failed.value
        problem = failed.value.problems[0]
        assert (problem.file, problem.key) == (str(config), "trackers.lists[1]")
        assert problem.reason.startswith(f"{path}: "), problem.reason
        assert reason in problem.reason, (name, problem.reason)


def test_the_cli_refuses_to_check_or_serve_with_a_broken_list(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    broken = tmp_path / "lists" / "tds.json"
    broken.write_text("not json")
    config = config_file(tmp_path, [TrackerListConfig("tds", broken)])
    for command, status in (("check-config", 1), ("serve", 2)):
        done = subprocess.run([sys.executable, "-m", "consentproxy", command, "-c", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == status, done
        assert f"{config}: trackers.lists[0]: {broken}: is not JSON" in done.stderr, done.stderr


def test_lists_are_read_once_per_configuration_and_again_when_a_file_changes(tmp_path: Path) -> None:
    path = tds(tmp_path / "tds.json", [("zorbads.net", "Zorb", ["Advertising"])])
    config = load_config(config_file(tmp_path, [TrackerListConfig("tds", path)]))
    first = load_tracker_lists(config)
    assert load_tracker_lists(config) is first  # the start's check and the runtime share one read
    tds(path, [("blimptrack.net", "Blimp", ["Advertising"]), ("zorbads.net", "Zorb", ["Advertising"])])
    second = load_tracker_lists(config)
    assert second is not first and set(second.hosts) == {"blimptrack.net", "zorbads.net"}


def test_every_site_of_a_runtime_shares_one_index(tmp_path: Path) -> None:
    from consentproxy.html.step import HtmlRewriting

    path = tds(tmp_path / "tds.json", [("zorbads.net", "Zorb", ["Advertising"])])
    config_path = config_file(tmp_path, [TrackerListConfig("tds", path)])
    config_path.write_text(config_path.read_text().replace(
        "[trackers]", site_toml("blog", "http://127.0.0.1:9", hosts=("blog.test",)) + "\n[trackers]"))
    runtime = build(config_path)
    lists = load_tracker_lists(runtime.config)
    matchers = [step.matcher for site in runtime.router.sites for step in site.steps
                if isinstance(step, HtmlRewriting)]
    assert len(matchers) == 2 and all(m._list_hosts is lists.hosts for m in matchers)
    assert all(m.url("scripts", "https://zorbads.net/a.js") == Match("Zorb", "marketing") for m in matchers)


# --- a million hosts ---------------------------------------------------------------------------------------------

def test_a_million_host_list_loads_and_matches(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("w") as out:
        out.write("! Title: Big\n")
        out.writelines(f"||t{i}.bigads.test^\n" for i in range(1_000_000))
        out.write("/bigads/collect.gif$image\n")
    lists = read_list(TrackerListConfig("abp", path))
    assert len(lists.hosts) == 1_000_000 and len(lists.filters) == 1
    matcher = TrackerMatcher((), lists=lists)
    big = Match("Big", "marketing")
    assert matcher.url("scripts", "https://t999999.bigads.test/x.js") == big
    assert matcher.url("iframes", "//a.b.t0.bigads.test/frame") == big
    assert matcher.url("scripts", "https://t1000000.bigads.test/x.js") is None
    assert matcher.url("pixels", "https://elsewhere.test/bigads/collect.gif") == big
    assert matcher.url("scripts", "https://www.googletagmanager.com/gtag/js?id=G-1") is not None  # catalogue
    # the guard's table: the catalogue first, then the list's hosts up to its bound
    catalogue = sum(1 for _ in TrackerMatcher(()).host_rules())
    table = guard_table(matcher, frozenset())
    held = {host for hosts in table["c"].values() for host in hosts.split()} | set(table["p"])
    assert catalogue < len(held) <= HOST_LIMIT and "2mdn.net" in held and "t0.bigads.test" in held
    assert len(ListIndex()) == 0
