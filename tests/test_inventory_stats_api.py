"""Inventory and consent statistics as operators read them: the admin API (JSON, CSV, filters, clear 400s),
the Prometheus outcome counter, the Set-Cookie inventory flushed into the store, the import of an old
inventory file, and two proxy instances on one PostgreSQL showing one picture."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Upstream, launch_proxy, raw_request, site_toml, status_of
from pg_support import pg_schema
from test_admin_api import DPO_TOKEN, SITE, TOKENS_TOML, Running, admin, start
from test_consent_api import call

from consentproxy.inventory.model import Sighting
from consentproxy.records import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def running(request: pytest.FixtureRequest, upstream: Upstream, tmp_path: Path) -> Iterator[Running]:
    if request.param == "sqlite":
        started = start(tmp_path, upstream, None)
        yield started
        started.proxy.stop(signal.SIGTERM)
        return
    with pg_schema("test_inv_api") as url:
        started = start(tmp_path, upstream, url)
        yield started
        started.proxy.stop(signal.SIGTERM)


@pytest.fixture
def on_sqlite(upstream: Upstream, tmp_path: Path) -> Iterator[Running]:
    started = start(tmp_path, upstream, None)
    yield started
    started.proxy.stop(signal.SIGTERM)


def three_visitors(run: Running) -> None:
    """Accept all, reject all, statistics only."""
    for body in ({"action": "accept_all"}, {"action": "reject_all"},
                 {"action": "save_selection", "choices": {"statistics": True}}):
        assert call(run.proxy, "POST", body=body).status == 200


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_stats_count_each_category_per_day_in_json_and_csv_and_in_prometheus(running: Running) -> None:
    three_visitors(running)
    today = datetime.now(UTC).date()
    answer = admin(running.proxy, "GET", f"/api/sites/{SITE}/stats", token=DPO_TOKEN)
    assert answer.status == 200, answer.body
    data = answer.json()
    assert (data["since"], data["until"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    assert len(data["days"]) == 30 and data["days"][-1]["day"] == today.isoformat()
    day = data["days"][-1]["categories"]
    assert (day["statistics"]["given"], day["statistics"]["refused"]) == (2, 1)
    assert (day["marketing"]["given"], day["marketing"]["refused"]) == (1, 2)
    assert day["statistics"]["opt_in_rate"] == pytest.approx(0.6667)
    assert day["statistics"]["methods"]["save_selection"] == {"given": 1, "refused": 0, "withdrawn": 0}
    assert "necessary" not in day
    assert data["days"][0]["categories"]["statistics"]["opt_in_rate"] is None  # a day without decisions
    # CSV, by parameter or by Accept
    for path, headers in ((f"/api/sites/{SITE}/stats?since={today}&until={today}&format=csv", {}),
                          (f"/api/sites/{SITE}/stats?since={today}&until={today}", {"Accept": "text/csv"})):
        answer = admin(running.proxy, "GET", path, token=DPO_TOKEN, headers=headers)
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
        assert "attachment" in answer.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
        marketing = next(r for r in rows if r["category"] == "marketing" and r["method"] == "all")
        assert (marketing["day"], marketing["given"], marketing["refused"], marketing["opt_in_rate"]) == (
            today.isoformat(), "1", "2", "0.3333")
    metrics = running.proxy.metrics()
    name = "consentproxy_consent_outcomes_total"
    assert metric(metrics, name, site=SITE, category="statistics", outcome="given") == 2
    assert metric(metrics, name, site=SITE, category="marketing", outcome="refused") == 2
    assert metric(metrics, name, site=SITE, category="preferences", outcome="refused") == 2
    assert metric(metrics, name, site=SITE, category="necessary", outcome="given") == 0


def test_a_withdrawal_counts_as_withdrawn_everywhere(on_sqlite: Running) -> None:
    answer = call(on_sqlite.proxy, "POST", body={"action": "accept_all"})
    cookie = f"cp_consent={answer.cookie_value()}"
    assert call(on_sqlite.proxy, "POST", body={"action": "withdraw"}, cookie=cookie).status == 200
    day = admin(on_sqlite.proxy, "GET", f"/api/sites/{SITE}/stats", token=DPO_TOKEN).json()["days"][-1]
    assert day["categories"]["marketing"]["withdrawn"] == 1 and day["categories"]["marketing"]["given"] == 1
    assert metric(on_sqlite.proxy.metrics(), "consentproxy_consent_outcomes_total", site=SITE,
                  category="marketing", outcome="withdrawn") == 1


@pytest.mark.parametrize(("query", "says"), [
    ("since=2025-13-01", "since must be a day"),
    ("until=31-01-2025", "until must be a day"),
    ("since=20250101", "since must be a day"),
    ("since=2025-02-01&until=2025-01-31", "since must not be after until"),
    ("since=2000-01-01&until=2025-01-01", "at most 3660 days"),
    ("format=xml", "format must be json or csv"),
])
def test_stats_refuse_bad_parameters_clearly(on_sqlite: Running, query: str, says: str) -> None:
    answer = admin(on_sqlite.proxy, "GET", f"/api/sites/{SITE}/stats?{query}", token=DPO_TOKEN)
    assert answer.status == 400 and answer.json()["error"] == "bad_parameter"
    assert says in answer.json()["message"]


def test_stats_and_inventory_need_a_token_and_a_known_site(on_sqlite: Running) -> None:
    for path in (f"/api/sites/{SITE}/stats", f"/api/sites/{SITE}/inventory"):
        assert admin(on_sqlite.proxy, "GET", path).status == 401
        assert admin(on_sqlite.proxy, "GET", path.replace(SITE, "nowhere"), token=DPO_TOKEN).status == 404
    assert admin(on_sqlite.proxy, "GET", f"/api/sites/{SITE}/stats?since=2025-01-01&until=2025-01-02",
                 token=on_sqlite.admin_token).json()["days"][0]["categories"] == {}


def sighting(name: str, kind: str = "cookie", source: str = "catalogue", category: str = "statistics",
             count: int = 1, before: int = 0) -> Sighting:
    return Sighting(site=SITE, kind=kind, name=name, set_by="server" if kind == "cookie" else "page",  # type: ignore[arg-type]
                    category=category, source=source, count=count, before_consent=before, first_seen_ms=1000,
                    last_seen_ms=2000, details={"path": "/"} if kind == "cookie" else {"directives": ["img-src"]})


def test_the_inventory_from_the_store_with_its_filters(running: Running) -> None:
    with open_store(running.store_url) as store:
        store.merge_inventory([sighting("_ga", count=5), sighting("zz", source="unknown", category="unknown"),
                               sighting("px.example", kind="host", category="marketing", before=2, count=3)])
    proxy = running.proxy

    def names(query: str = "") -> list[str]:
        answer = admin(proxy, "GET", f"/api/sites/{SITE}/inventory{query}", token=DPO_TOKEN)
        assert answer.status == 200, answer.body
        return [i["name"] for i in answer.json()["items"]]

    assert names() == ["zz", "px.example", "_ga"]  # unknown, then before consent, then most seen
    assert names("?kind=host") == ["px.example"]
    assert names("?unknown=true") == ["zz"] and names("?unknown=false") == ["px.example", "_ga"]
    assert names("?before_consent=1") == ["px.example"]
    assert names("?category=statistics") == ["_ga"]
    (ga,) = [i for i in admin(proxy, "GET", f"/api/sites/{SITE}/inventory?kind=cookie&unknown=false",
                              token=DPO_TOKEN).json()["items"]]
    assert ga["first_seen"] == "1970-01-01T00:00:01.000Z" and ga["path"] == "/" and ga["set_by"] == "server"
    for bad in ("?kind=cookies", "?unknown=maybe", "?category=%3Cscript%3E"):
        answer = admin(proxy, "GET", f"/api/sites/{SITE}/inventory{bad}", token=DPO_TOKEN)
        assert answer.status == 400 and answer.json()["error"] == "bad_parameter", bad
    legacy = admin(proxy, "GET", f"/api/inventory?site={SITE}", token=DPO_TOKEN).json()
    assert [c["name"] for c in legacy["cookies"]] == ["zz", "_ga"]
    assert [h["name"] for h in legacy["hosts"]] == ["px.example"]


def test_set_cookie_sightings_reach_the_store_with_before_consent(on_sqlite: Running) -> None:
    proxy = on_sqlite.proxy
    for _ in range(3):  # the upstream sets an unknown cookie `a`, blocked for want of consent
        assert status_of(raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))\
            == 200
    assert proxy.stop() == 0  # the buffer is merged into the store at shutdown
    with open_store(on_sqlite.store_url) as store:
        (a,) = store.inventory(SITE, "cookie")
    assert (a.name, a.source, a.set_by) == ("a", "unknown", "server")
    assert a.count == a.blocked == a.before_consent == 3
    assert a.details["paths"] == ["/"]


def test_an_old_inventory_file_is_imported_once(tmp_path: Path, upstream: Upstream) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    old = data_dir / "cookie-inventory.json"
    old.write_text(json.dumps({"version": 1, "cookies": [{
        "site": SITE, "name": "legacy_sid", "domain": "", "path": "/shop", "lifetime_seconds": None,
        "httponly": True, "secure": False, "samesite": "Lax", "category": "necessary", "source": "declared",
        "service": "", "count": 7, "blocked": 0, "first_seen": 1700000000.0, "last_seen": 1700000100.5}]}))
    config = tmp_path / "proxy.toml"
    config.write_text(f'[server]\ndata_dir = "{data_dir}"\n\n' + site_toml(SITE, upstream.url))

    def listed() -> list[dict[str, Any]]:
        result = subprocess.run([sys.executable, "-m", "consentproxy", "inventory", "-c", str(config), "--json"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    (entry,) = listed()
    assert (entry["name"], entry["count"], entry["path"], entry["paths"]) == ("legacy_sid", 7, "/shop", ["/shop"])
    assert entry["last_seen"] == "2023-11-14T22:15:00.500Z"
    assert not old.exists() and (data_dir / "cookie-inventory.json.imported").exists()
    assert listed()[0]["count"] == 7  # once


def test_two_instances_on_one_postgresql_show_one_picture(tmp_path: Path, upstream: Upstream) -> None:
    with pg_schema("test_two_instances") as url:
        sites = f'[store]\nurl = "{url}"\n\n' + site_toml(SITE, upstream.url) + TOKENS_TOML
        one, two = launch_proxy(tmp_path, 0, sites), launch_proxy(tmp_path, 1, sites)
        try:
            for proxy in (one, two):
                for body in ({"action": "accept_all"}, {"action": "reject_all"}):
                    assert call(proxy, "POST", body=body).status == 200
                for _ in range(2):
                    assert status_of(raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                                                             b"Connection: close\r\n\r\n")) == 200
            stats = [admin(p, "GET", f"/api/sites/{SITE}/stats", token=DPO_TOKEN).json() for p in (one, two)]
            assert stats[0] == stats[1]
            assert stats[0]["totals"]["statistics"] == {
                "given": 2, "refused": 2, "withdrawn": 0, "opt_in_rate": 0.5,
                "methods": {"accept_all": {"given": 2, "refused": 0, "withdrawn": 0},
                            "reject_all": {"given": 0, "refused": 2, "withdrawn": 0}}}
            # each instance merges its Set-Cookie sightings every few seconds: wait for both flushes
            deadline = time.monotonic() + 60
            while True:
                seen = [admin(p, "GET", f"/api/sites/{SITE}/inventory", token=DPO_TOKEN).json()["items"]
                        for p in (one, two)]
                counts = [[i["count"] for i in items if i["name"] == "a"] for items in seen]
                if counts == [[4], [4]] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert counts == [[4], [4]]
            assert seen[0] == seen[1]
        finally:
            one.stop()
            two.stop()
