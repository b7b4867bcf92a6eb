"""Consent regimes by the visitor's place (MaxMind's test database), through a real proxy."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ROOT, Proxy, free_port, launch_proxy, serve_app, site_toml
from test_consent_api import call

from consentproxy.records import open_store

GEOIP = ROOT / "config" / "geoip" / "GeoLite2-City-Test.mmdb"
PAGE = """<!doctype html><html lang="en"><head><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-REGIME"></script></head>
<body><p>Hello</p></body></html>"""
SWEDEN, US, NETHERLANDS, UNLISTED = "89.160.20.115", "216.160.83.58", "2a02:e040::1", "192.0.2.7"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html",
                            headers={"Set-Cookie": "_ga=GA1.1.1.1; Max-Age=3600; Path=/"})

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    base = tmp_path_factory.mktemp("regimes")
    sites = (f'[geoip]\ndatabase = "{GEOIP}"\n\n' + site_toml("shop", f"http://127.0.0.1:{port}")
             + '[sites.shop.regimes]\nopt_out = ["US"]\n')
    with serve_app(app, port):
        running = launch_proxy(base, 0, sites, server={"trusted_proxies": ["127.0.0.1/32"]})
        yield running
        running.stop(signal.SIGTERM)


def visit(proxy: Proxy, client: str, gpc: bool = False) -> tuple[str, list[str]]:
    headers = {"X-Forwarded-For": client, **({"Sec-GPC": "1"} if gpc else {})}
    request = urllib.request.Request(proxy.url + "/", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode(), response.headers.get_all("Set-Cookie") or []


@pytest.mark.parametrize("client", [SWEDEN, NETHERLANDS, UNLISTED, f"::ffff:{SWEDEN}"])
def test_the_eea_and_unknown_places_are_opt_in(proxy: Proxy, client: str) -> None:
    page, cookies = visit(proxy, client)
    assert 'data-cp-regime="opt-in"' in page and "Reject all" in page
    assert 'data-cp-blocked="statistics"' in page  # gtag held back before a choice
    assert not any(c.startswith("_ga=GA1") for c in cookies)


def test_an_opt_out_place_runs_trackers_until_the_visitor_objects(proxy: Proxy) -> None:
    page, cookies = visit(proxy, US)
    assert 'data-cp-regime="opt-out"' in page
    assert "Do not sell or share my personal information" in page
    assert "data-cp-blocked" not in page  # trackers run: opt-out
    assert any(c.startswith("_ga=GA1") for c in cookies)
    # Global Privacy Control is an objection: blocked, and no question asked.
    page, cookies = visit(proxy, US, gpc=True)
    assert "data-cp-blocked" in page and 'id="cp-banner"' not in page
    assert not any(c.startswith("_ga=GA1") for c in cookies)


def test_records_name_the_country_and_regime(proxy: Proxy) -> None:
    us = call(proxy, "POST", body={"action": "reject_all"}, headers={"X-Forwarded-For": US})
    se = call(proxy, "POST", body={"action": "accept_all"}, headers={"X-Forwarded-For": SWEDEN})
    store = open_store(f"sqlite:///{proxy.config_path.parent / 'data0' / 'consent-records.db'}")
    try:
        events = {e.principal: e for e in store.events("shop")}
    finally:
        store.close()
    assert (events[us.json()["principal"]].country, events[us.json()["principal"]].regime) == ("US", "opt-out")
    assert (events[se.json()["principal"]].country, events[se.json()["principal"]].regime) == ("SE", "opt-in")
    store = open_store(f"sqlite:///{proxy.config_path.parent / 'data0' / 'consent-records.db'}")
    try:
        notice = store.notice(events[us.json()["principal"]].notice_id)
    finally:
        store.close()
    assert notice is not None  # the opt-out wording the US visitor saw is part of the proof
    assert "may count as selling or sharing" in notice.content["regimes"]["texts"]["opt-out"]["en"]
    # and an opt-out visitor who objected has the trackers blocked from then on
    page_request = urllib.request.Request(proxy.url + "/", headers={
        "X-Forwarded-For": US, "Cookie": f"cp_consent={us.cookie_value()}"})
    with urllib.request.urlopen(page_request, timeout=10) as response:
        assert 'data-cp-blocked="statistics"' in response.read().decode()


@pytest.mark.parametrize(("table", "expected"), [
    ('[sites.shop.regimes]\nopt_out = ["US"]\n', "sites.shop.regimes: regimes by place need a GeoIP database"),
    (f'[geoip]\ndatabase = "{GEOIP}"\n[sites.shop.regimes]\nopt_out = ["DE"]\n',
     "sites.shop.regimes.opt_out[0]: DE is in the EEA, the UK or Switzerland"),
    (f'[geoip]\ndatabase = "{GEOIP}"\n[sites.shop.regimes]\nopt_out = ["usa"]\n',
     "sites.shop.regimes.opt_out[0]: expected a country such as"),
    (f'[geoip]\ndatabase = "{GEOIP}"\n[sites.shop.regimes]\nopt_out = ["US"]\nnotice_only = ["US"]\n',
     "sites.shop.regimes.notice_only: US also listed in opt_out"),
    ('[geoip]\ndatabase = "missing.mmdb"\n', "geoip.database: cannot open the GeoIP database"),
])
def test_bad_regime_configuration_is_refused(tmp_path: Path, table: str, expected: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nlisten = ["127.0.0.1:8080"]\n' + _with_site(table))
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def _with_site(table: str) -> str:
    """The [geoip] table first, then the site and its regimes."""
    geoip, _, regimes = table.partition("[sites.shop.regimes]\n")
    site = site_toml("shop", "http://127.0.0.1:9")
    return geoip + "\n" + site + ("[sites.shop.regimes]\n" + regimes if regimes else "")
