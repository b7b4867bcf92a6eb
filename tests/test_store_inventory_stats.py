"""The inventory and the consent statistics in the consent store, on SQLite and on PostgreSQL.

Statistics come from the daily rollup the store updates in the append's own
transaction; these tests check what each event counts for, the zero-filled
days, the backfill of a log written before the rollup existed, that erasure
and purge leave the counts, and that two store objects on one database
(two instances) merge the inventory and read one set of statistics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_support import pg_schema
from test_records import sql

from consentproxy.inventory.model import InventoryBuffer, Sighting
from consentproxy.records import ConsentEvent, RecordStore
from consentproxy.records import open as open_store
from consentproxy.records.stats import outcomes

SITE = "shop.example"
NOTICE = "a" * 64
DAY = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/consent.db"
        return
    with pg_schema("test_inventory_stats") as schema_url:
        yield schema_url


def event(event_type: str, method: str, choices: dict[str, bool], time: datetime, principal: str = "p1",
          site: str = SITE, key: str | None = None) -> ConsentEvent:
    return ConsentEvent.new(site=site, principal=principal, notice_id=NOTICE, event_type=event_type,  # type: ignore[arg-type]
                            method=method, choices={"necessary": True, **choices},  # type: ignore[arg-type]
                            expires_at=time + timedelta(days=180), time=time, idempotency_key=key)


def day_counts(stats: Any, day: date, category: str) -> tuple[int, int, int]:
    counts = stats.days[day][category]
    return counts.given, counts.refused, counts.withdrawn


def test_what_each_event_counts_for() -> None:
    assert sorted(outcomes("given", {"necessary": True, "statistics": True, "marketing": False})) == [
        ("marketing", "refused"), ("statistics", "given")]
    assert outcomes("renewed", {"statistics": True}) == [("statistics", "given")]
    assert outcomes("refused", {"necessary": True, "statistics": False}) == [("statistics", "refused")]
    assert outcomes("withdrawn", {"statistics": False, "marketing": False}) == [
        ("statistics", "withdrawn"), ("marketing", "withdrawn")]
    assert outcomes("expired", {"statistics": True}) == []


def test_stats_per_day_category_outcome_and_method(url: str) -> None:
    with open_store(url) as store:
        store.append([
            event("given", "accept_all", {"statistics": True, "marketing": True}, DAY),
            event("given", "save_selection", {"statistics": True, "marketing": False}, DAY + timedelta(hours=23)),
            event("refused", "reject_all", {"statistics": False, "marketing": False}, DAY + timedelta(hours=1)),
            event("withdrawn", "withdraw", {"statistics": False, "marketing": False}, DAY + timedelta(days=1)),
            event("renewed", "accept_all", {"statistics": True, "marketing": True}, DAY + timedelta(days=2)),
            event("expired", "expiry", {"statistics": False, "marketing": False}, DAY + timedelta(days=2)),
            # another site and a day outside the window count nowhere here
            event("given", "accept_all", {"statistics": True}, DAY, site="other.example"),
            event("given", "accept_all", {"statistics": True}, DAY + timedelta(days=5)),
        ])
        stats = store.stats(SITE, DAY.date() - timedelta(days=1), DAY.date() + timedelta(days=3))
    assert list(stats.days) == [DAY.date() + timedelta(days=n) for n in range(-1, 4)]  # every day, zeros too
    assert stats.categories == ["marketing", "statistics"]  # never "necessary"
    first = DAY.date()
    assert day_counts(stats, first, "statistics") == (2, 1, 0)
    assert day_counts(stats, first, "marketing") == (1, 2, 0)
    assert stats.days[first]["marketing"].opt_in_rate == pytest.approx(1 / 3, abs=1e-4)
    assert stats.days[first]["statistics"].methods == {
        "accept_all": {"given": 1, "refused": 0, "withdrawn": 0},
        "save_selection": {"given": 1, "refused": 0, "withdrawn": 0},
        "reject_all": {"given": 0, "refused": 1, "withdrawn": 0}}
    assert day_counts(stats, first + timedelta(days=1), "statistics") == (0, 0, 1)
    assert stats.days[first + timedelta(days=1)]["statistics"].opt_in_rate is None
    assert day_counts(stats, first + timedelta(days=2), "marketing") == (1, 0, 0)  # renewed; expired not at all
    assert day_counts(stats, first - timedelta(days=1), "statistics") == (0, 0, 0)
    assert (stats.totals["statistics"].given, stats.totals["statistics"].refused) == (3, 1)
    data = stats.to_dict()
    assert data["days"][1]["day"] == first.isoformat()
    assert data["days"][1]["categories"]["statistics"]["opt_in_rate"] == pytest.approx(2 / 3, abs=1e-4)
    csv_lines = stats.to_csv().splitlines()
    assert csv_lines[0] == "day,category,method,given,refused,withdrawn,opt_in_rate"
    assert f"{first.isoformat()},statistics,all,2,1,0,0.6667" in csv_lines
    assert f"{first.isoformat()},marketing,reject_all,0,1,0,0.0" in csv_lines


def test_a_retried_decision_counts_once(url: str) -> None:
    with open_store(url) as store:
        store.append([event("given", "accept_all", {"statistics": True}, DAY, key="k1")])
        store.append([event("given", "accept_all", {"statistics": True}, DAY, key="k1"),
                      event("given", "accept_all", {"statistics": True}, DAY, key="k1")])
        assert day_counts(store.stats(SITE, DAY.date(), DAY.date()), DAY.date(), "statistics") == (1, 0, 0)


def test_erasure_and_purge_leave_the_statistics(url: str) -> None:
    key = Ed25519PrivateKey.generate()
    with open_store(url) as store:
        store.append([event("given", "accept_all", {"statistics": True}, DAY, principal="alice"),
                      event("refused", "reject_all", {"statistics": False}, DAY + timedelta(days=1))])
        before = store.stats(SITE, DAY.date(), DAY.date() + timedelta(days=1)).to_dict()
        assert store.erase(SITE, "alice") == 1
        assert store.purge(SITE, DAY + timedelta(days=2), key) == 2
        assert store.count(SITE) == 0
        assert store.stats(SITE, DAY.date(), DAY.date() + timedelta(days=1)).to_dict() == before


def test_the_migration_counts_the_events_stored_before_it(url: str) -> None:
    with open_store(url) as store:
        store.append([event("given", "accept_all", {"statistics": True}, DAY + timedelta(minutes=n),
                            principal=f"p{n}") for n in range(7)])
        store.append([event("refused", "reject_all", {"statistics": False}, DAY + timedelta(days=1))])
    # Back to the schema before migration 3, as a database written by the previous release would be.
    sql(url, "DROP TABLE consent_daily")
    sql(url, "DROP TABLE inventory")
    sql(url, "DELETE FROM schema_migrations WHERE version = 3")
    with open_store(url) as store:
        stats = store.stats(SITE, DAY.date(), DAY.date() + timedelta(days=1))
    assert day_counts(stats, DAY.date(), "statistics") == (7, 0, 0)
    assert day_counts(stats, DAY.date() + timedelta(days=1), "statistics") == (0, 1, 0)


def test_the_backfill_pages_through_many_events(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("consentproxy.records.stats.BACKFILL_PAGE", 3)
    with open_store(url) as store:
        for site in ("a.example", "b.example"):
            store.append([event("given", "accept_all", {"statistics": True}, DAY, principal=f"p{n}", site=site)
                          for n in range(8)])
    sql(url, "DROP TABLE consent_daily")
    sql(url, "DROP TABLE inventory")
    sql(url, "DELETE FROM schema_migrations WHERE version = 3")
    with open_store(url) as store:
        for site in ("a.example", "b.example"):
            assert day_counts(store.stats(site, DAY.date(), DAY.date()), DAY.date(), "statistics") == (8, 0, 0)


def test_stats_refuses_a_reversed_window(url: str) -> None:
    with open_store(url) as store, pytest.raises(ValueError, match="before"):
        store.stats(SITE, DAY.date(), DAY.date() - timedelta(days=1))


# -- inventory --------------------------------------------------------------------------------------------


def cookie(name: str, count: int = 1, last: int = 2000, first: int = 1000, source: str = "catalogue",
           category: str = "statistics", site: str = SITE, before: int = 0, **details: Any) -> Sighting:
    return Sighting(site=site, kind="cookie", name=name, set_by="server", category=category, source=source,
                    count=count, before_consent=before, first_seen_ms=first, last_seen_ms=last, details=details)


def host(name: str, directives: list[str], count: int = 1, last: int = 2000, source: str = "unknown",
         before: int = 0) -> Sighting:
    return Sighting(site=SITE, kind="host", name=name, set_by="page", category="unknown" if source == "unknown"
                    else "marketing", source=source, count=count, before_consent=before, first_seen_ms=last - 10,
                    last_seen_ms=last, details={"directives": directives})


def test_merge_inventory_adds_counts_widens_times_newer_wins(url: str) -> None:
    with open_store(url) as store:
        store.merge_inventory([cookie("_ga", count=3, first=1000, last=2000, source="unknown", category="unknown",
                                      path="/", paths=["/"], lifetime_seconds=60)])
        store.merge_inventory([cookie("_ga", count=2, first=500, last=3000, path="/shop", paths=["/shop"],
                                      lifetime_seconds=120),
                               cookie("_ga", count=1, first=900, last=1500, source="operator", category="marketing",
                                      path="/old", paths=["/old"])])
        store.merge_inventory([host("t.example", ["script-src"]), host("t.example", ["img-src"], last=1000)])
        [ga] = store.inventory(SITE, "cookie")
        assert (ga.count, ga.first_seen_ms, ga.last_seen_ms) == (6, 500, 3000)
        assert (ga.category, ga.source) == ("statistics", "catalogue")  # the newest classification
        assert ga.details["path"] == "/shop" and ga.details["lifetime_seconds"] == 120
        assert ga.details["paths"] == ["/", "/old", "/shop"]  # every path, to expire each
        [tracker] = store.inventory(SITE, "host")
        assert tracker.details["directives"] == ["img-src", "script-src"]
        assert tracker.count == 2


def test_inventory_lists_unknown_then_before_consent_then_most_seen(url: str) -> None:
    with open_store(url) as store:
        store.merge_inventory([
            cookie("popular", count=50), cookie("early", count=2, before=1), cookie("mystery", count=1,
                                                                                 source="unknown"),
            cookie("rare", count=1), host("cdn.example", ["script-src"], count=9, source="catalogue"),
            cookie("elsewhere", site="other.example", count=99),
        ])
        assert [s.name for s in store.inventory(SITE)] == ["mystery", "early", "popular", "cdn.example", "rare"]
        assert [s.name for s in store.inventory(SITE, "host")] == ["cdn.example"]
        assert [s.name for s in store.inventory()][-1] == "rare"
        assert {s.site for s in store.inventory()} == {SITE, "other.example"}
        assert store.inventory("nowhere.example") == []


def test_two_instances_merge_into_one_inventory_and_read_one_set_of_statistics(url: str) -> None:
    """Two store objects with a buffer each (two proxy instances): the same picture from both, nothing lost."""
    with open_store(url) as one, open_store(url) as two:
        buffers = (InventoryBuffer(), InventoryBuffer())
        for n in range(40):
            buffers[n % 2].add(cookie("_fbp", count=1, first=1000 + n, last=2000 + n, category="marketing",
                                      paths=[f"/p{n % 3}"]))
            buffers[n % 2].add(host(f"h{n % 4}.example", [f"d{n % 2}"]))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def flush(store: RecordStore, buffer: InventoryBuffer, offset: int) -> None:
            try:
                barrier.wait()
                for round_ in range(5):
                    store.merge_inventory([cookie("_fbp", count=1, first=5000, last=6000 + round_, paths=["/x"]),
                                           *(buffer.take() if round_ == 0 else [])])
                    store.append([event("given", "accept_all", {"statistics": True, "marketing": bool(n % 2)},
                                        DAY, principal=f"i{offset}-{round_}-{n}") for n in range(10)])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=flush, args=(store, buffer, i))
                   for i, (store, buffer) in enumerate(zip((one, two), buffers, strict=True))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        seen_by_one, seen_by_two = one.inventory(SITE), two.inventory(SITE)
        assert seen_by_one == seen_by_two
        fbp = next(s for s in seen_by_one if s.name == "_fbp")
        assert fbp.count == 40 + 10 and fbp.first_seen_ms == 1000
        assert fbp.details["paths"] == ["/p0", "/p1", "/p2", "/x"]
        assert sum(s.count for s in seen_by_one if s.kind == "host") == 40
        stats_one = one.stats(SITE, DAY.date(), DAY.date()).to_dict()
        assert stats_one == two.stats(SITE, DAY.date(), DAY.date()).to_dict()
        assert stats_one["totals"]["statistics"]["given"] == 100
        assert stats_one["totals"]["marketing"]["given"] == 50


# -- the hot path's side: CookieInventory buffering Set-Cookie sightings -------------------------------------


def test_cookie_inventory_buffers_sightings_and_learns_the_stored_ones() -> None:
    from consentproxy.config.model import ConsentConfig
    from consentproxy.cookies.classify import CookieClassifier
    from consentproxy.cookies.header import parse_set_cookie
    from consentproxy.cookies.inventory import CookieInventory

    classifier = CookieClassifier(ConsentConfig())
    inventory = CookieInventory()

    def record(header: bytes, blocked: bool, before: bool) -> None:
        parsed = parse_set_cookie(header)
        assert parsed is not None
        inventory.record(SITE, parsed[0], parsed[1], classifier, blocked, before)

    record(b"_ga=1; Max-Age=60; Path=/", True, True)
    record(b"_ga=2; Max-Age=120; Path=/shop; HttpOnly", False, False)
    record(b"_ga=3; Max-Age=90; Path=/", True, False)
    (taken,) = inventory.buffer.take()
    assert (taken.name, taken.set_by, taken.category, taken.source) == ("_ga", "server", "statistics", "catalogue")
    assert (taken.count, taken.blocked, taken.before_consent) == (3, 2, 1)
    assert taken.details["paths"] == ["/", "/shop"] and taken.details["path"] == "/"
    assert taken.details["lifetime_seconds"] == 90 and taken.details["httponly"] is False
    record(b"_ga=4; Path=/cart", False, False)  # after a take: a new sighting; the taken one is left alone
    (again,) = inventory.buffer.take()
    assert again is not taken and taken.count == 3 and again.count == 1 and again.details["paths"] == ["/cart"]
    assert inventory.paths(SITE, b"_ga") == {"/", "/shop", "/cart"}
    assert [e.lifetime_seconds for e in inventory.known(SITE)] == [None]
    # a restarted worker learns what any worker stored
    fresh = CookieInventory()
    version = fresh.known_version
    fresh.load([cookie("sid", paths=["/", "/account"], lifetime_seconds=3600),
                host("cdn.example", ["script-src"])])
    assert fresh.paths(SITE, b"sid") == {"/", "/account"}
    assert [(e.name, e.lifetime_seconds) for e in fresh.known(SITE)] == [("sid", 3600)]
    assert fresh.known_version != version
