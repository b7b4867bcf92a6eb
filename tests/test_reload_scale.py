"""Reloads of many sites: what changed is rebuilt, what did not is reused, a broken file changes nothing, and
an old configuration is freed without the cycle collector (issue 21)."""

from __future__ import annotations

import dataclasses
import gc
import http.client
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Proxy, serve_page

from consentproxy.config.loader import load_config
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.html.step import HtmlRewriting
from consentproxy.proxy.sites import SiteRouter
from consentproxy.records import RecordWriter
from consentproxy.runtime import Runtime, with_default_keys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "load_tests"))
from scale_sites import config_text, host_of, sites_text

PAGE = "<!doctype html><html lang=\"en\"><head><title>t</title></head><body><p>hello</p></body></html>"
SITES = 200


def _page(proxy: Proxy, index: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": host_of(index), "Accept": "text/html"})
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        assert response.status == 200, body
        return body
    finally:
        connection.close()


def _wait_for(proxy: Proxy, text: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while proxy.log().count(text) < count:
        assert proxy.process.poll() is None, proxy.log()
        assert time.monotonic() < deadline, f"no {text!r} in time:\n{proxy.log()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.timeout(180)
def test_a_reload_applies_a_changed_site_reuses_the_others_and_a_broken_file_changes_nothing(
        start_proxy: Any) -> None:
    with serve_page(PAGE) as port:
        proxy = start_proxy(sites_text(SITES, f"http://127.0.0.1:{port}"))
        assert "Customer 5 B.V." in _page(proxy, 5)
        original = proxy.config_path.read_text()
        proxy.config_path.write_text(original.replace('controller = "Customer 5 B.V."',
                                                      'controller = "Changed Controller Ltd"'))
        proxy.process.send_signal(signal.SIGHUP)
        _wait_for(proxy, "configuration reloaded", 1)
        assert "Changed Controller Ltd" in _page(proxy, 5)  # the next request has the new settings
        assert "Customer 5 B.V." not in _page(proxy, 5)
        assert f"{SITES - 1} unchanged and reused" in proxy.log()
        assert "Customer 6 B.V." in _page(proxy, 6)

        proxy.config_path.write_text(original.replace('upstream = "http', 'upstream = 5 #"http', 1))
        proxy.process.send_signal(signal.SIGHUP)
        _wait_for(proxy, "reload refused", 1)
        assert "sites.customer00000.upstream" in proxy.log()  # the error names the site and the key
        assert "Changed Controller Ltd" in _page(proxy, 5)  # the old configuration still serves
        assert "Customer 0 B.V." in _page(proxy, 0)


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[Path, CookieInventory, RecordWriter]]:
    (tmp_path / "data").mkdir()
    records = RecordWriter.for_url(f"sqlite://{tmp_path / 'records.db'}")
    yield tmp_path, CookieInventory(tmp_path / "data"), records


def _config(path: Path, text: str) -> Any:
    path.write_text(text)
    return with_default_keys(load_config(path))


def test_unchanged_sites_are_the_same_objects_and_a_changed_one_is_new(
        built: tuple[Path, CookieInventory, RecordWriter]) -> None:
    base, inventory, records = built
    first = Runtime.build(_config(base / "a.toml", config_text(30, "http://127.0.0.1:9")), inventory, records)
    second = Runtime.build(_config(base / "a.toml", config_text(30, "http://127.0.0.1:9", changed={7: "New B.V."})),
                           inventory, records, first)
    old = {site.name: site for site in first.router.sites}
    new = {site.name: site for site in second.router.sites}
    assert new["customer00007"] is not old["customer00007"]
    assert new["customer00007"].config.consent.controller == "New B.V."
    assert second.router.route(host_of(7).encode()) is new["customer00007"]
    assert all(new[name] is old[name] for name in new if name != "customer00007")
    # sites alike share one compiled guard, served by the new configuration's assets
    guards = {step.markup.guard.path for site in second.router.sites for step in site.steps
              if isinstance(step, HtmlRewriting) and step.markup.guard is not None}
    assert len(guards) == 1 and guards <= set(second_assets(second))


def second_assets(runtime: Runtime) -> set[str]:
    from consentproxy.banner.endpoints import ConsentEndpoints

    paths: set[str] = set()
    for site in runtime.router.sites:
        for step in site.steps:
            if isinstance(step, ConsentEndpoints):
                paths |= set(step.assets.by_path)
    return paths


def test_other_shared_inputs_mean_no_reuse(built: tuple[Path, CookieInventory, RecordWriter]) -> None:
    base, inventory, records = built
    config = _config(base / "a.toml", config_text(3, "http://127.0.0.1:9"))
    first = Runtime.build(config, inventory, records)
    other_records = RecordWriter.for_url(f"sqlite://{base / 'other.db'}")
    second = Runtime.build(config, inventory, other_records, first)  # the steps hold the writer: rebuilt
    assert not {id(site) for site in first.router.sites} & {id(site) for site in second.router.sites}


RICH_SITE = """
[sites.rich]
hosts = ["rich.example", "*.rich.example"]
upstream = "http://127.0.0.1:9"
third_party = "hold"
functional_hosts = ["cdn.rich.example"]
[sites.rich.analytics]
plausible = "https://plausible.io"
[sites.rich.consent]
statistics_exempt = true
[[sites.rich.cookies]]
prefix = "rich_"
category = "necessary"
[[sites.rich.services]]
name = "Mailer"
category = "marketing"
cookies = ["ml_*"]
scripts = ["mailer.example/js"]
"""


def test_a_dropped_configuration_holds_no_reference_cycle(built: tuple[Path, CookieInventory, RecordWriter]) -> None:
    """With start-up's gc.freeze, a runtime in a cycle would never be freed: each reload would keep one."""
    base, inventory, records = built
    config = _config(base / "a.toml", config_text(20, "http://127.0.0.1:9") + RICH_SITE)
    keep = Runtime.build(config, inventory, records)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        dropped = Runtime.build(dataclasses.replace(config), inventory, records)  # nothing reused
        assert not {id(site) for site in keep.router.sites} & {id(site) for site in dropped.router.sites}
        gc.collect()  # what building left in cycles (a compiled pattern's recursive helper), not the runtime
        del dropped
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = [type(thing).__name__ for thing in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert found == []


def test_wildcards_are_found_by_label_longest_first(built: tuple[Path, CookieInventory, RecordWriter]) -> None:
    base, inventory, records = built
    text = config_text(2, "http://127.0.0.1:9") + """
[sites.wide]
hosts = ["*.example.nl"]
upstream = "http://127.0.0.1:9"
[sites.narrow]
hosts = ["*.shop.example.nl"]
upstream = "http://127.0.0.1:9"
"""
    router: SiteRouter = Runtime.build(_config(base / "a.toml", text), inventory, records).router
    name = {host: (site.name if (site := router.route(host.encode())) else None) for host in (
        "a.example.nl", "a.b.example.nl", "x.shop.example.nl", "shop.example.nl", "example.nl", "badexample.nl",
        host_of(1))}
    assert name == {"a.example.nl": "wide", "a.b.example.nl": "wide", "x.shop.example.nl": "narrow",
                    "shop.example.nl": "wide", "example.nl": None, "badexample.nl": None,
                    host_of(1): "customer00001"}


def test_check_config_of_many_sites_is_one_line_and_errors_name_the_site_and_key(tmp_path: Path) -> None:
    from consentproxy.cli import main

    (tmp_path / "data").mkdir()
    path = tmp_path / "many.toml"
    text = config_text(300, "http://127.0.0.1:9", data_dir=str(tmp_path / "data"))
    path.write_text(text)
    out = subprocess_check(path)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.endswith("OK — 300 sites, 600 host names (customer00000, customer00001, customer00002, … "
                          "customer00299)")
    assert "customer00150" not in out.stdout  # no line, no name per site
    path.write_text(text.replace('controller = "Customer 150 B.V."', "controller = 7"))
    assert main(["check-config", "--file-only", "-c", str(path)]) == 1
    out = subprocess_check(path)
    assert "sites.customer00150.consent.controller: expected a text" in out.stderr


def subprocess_check(path: Path) -> Any:
    import subprocess

    return subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "--file-only", "-c", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
