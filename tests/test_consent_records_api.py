"""Decisions through the consent API end up in the consent log: SQLite by default, PostgreSQL shared."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Proxy, Upstream, free_port, launch_proxy, site_toml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_support import pg_schema
from test_consent_api import call

from consentproxy.records import open_store, verify_chain
from consentproxy.records.store import subject_commitment

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.85 Safari/537.36"


def store_of(proxy: Proxy) -> str:
    return f"sqlite:///{proxy.config_path.parent / 'data0' / 'consent-records.db'}"


@pytest.fixture
def proxy(upstream: Upstream, tmp_path: Path) -> Iterator[Proxy]:
    sites = site_toml("kade", upstream.url) + '[sites.kade.consent]\nrecord_ip = "truncated"\n'
    running = launch_proxy(tmp_path, 0, sites)
    yield running
    running.stop(signal.SIGTERM)


def test_every_decision_is_committed_to_a_verifiable_log(proxy: Proxy) -> None:
    first = call(proxy, "POST", body={"action": "accept_all"},
                 headers={"User-Agent": CHROME, "X-Forwarded-For": "81.2.69.160"})
    cookie = f"cp_consent={first.cookie_value()}"
    call(proxy, "POST", body={"action": "withdraw"}, cookie=cookie)
    call(proxy, "POST", body={"action": "reject_all"})
    store = open_store(store_of(proxy))
    try:
        events = list(store.events("kade"))
        assert [e.method for e in events] == ["accept_all", "withdraw", "reject_all"]
        assert [e.event_type for e in events] == ["given", "withdrawn", "refused"]
        assert [e.seq for e in events] == [1, 2, 3]
        given = events[0]
        assert given.principal == first.json()["principal"] == events[1].principal
        assert given.choices == {"necessary": True, "preferences": True, "statistics": True, "marketing": True}
        assert given.ua == "Chrome 131"  # never the full user agent
        # The test client is 127.0.0.1, a trusted proxy in no configuration here: its own address, truncated.
        assert given.ip == "127.0.0.0"
        notice = store.notice(given.notice_id)
        assert notice is not None and notice.revision == 1
        assert "Cookies op deze website" in notice.content["texts"]["nl"]
        assert {p["id"]: p["legal_basis"] for p in notice.content["purposes"]}["statistics"] == "consent"
        key = Ed25519PrivateKey.generate()
        assert store.add_checkpoint("kade", key) is not None
        verdict = verify_chain(store.events("kade"), store.checkpoints("kade"), key.public_key())
        assert verdict.ok and verdict.count == 3, verdict
    finally:
        store.close()


def test_the_receipt_holds_every_event_of_the_visitor(proxy: Proxy) -> None:
    given = call(proxy, "POST", body={"action": "save_selection", "choices": {"statistics": True}})
    cookie = f"cp_consent={given.cookie_value()}"
    changed = call(proxy, "POST", body={"action": "accept_all"}, cookie=cookie)
    call(proxy, "POST", body={"action": "accept_all"})  # someone else
    receipt = call(proxy, "GET", "/_consent/receipt", cookie=f"cp_consent={changed.cookie_value()}").json()
    assert [e["method"] for e in receipt["events"]] == ["save_selection", "accept_all"]
    assert all(set(e) >= {"record_id", "hash", "notice_id", "time"} for e in receipt["events"])
    assert "salt" not in receipt["events"][0]
    (notice,) = receipt["notices"].values()
    assert notice["content"]["controller"]["name"] == "kade"
    # The visitor's access request is itself on record, under a commitment of their id, never the id.
    store = open_store(store_of(proxy))
    try:
        (entry,) = [e for e in store.audit() if e.action == "access"]
        assert entry.token == "visitor" and entry.site == "kade"
        assert entry.subject == subject_commitment("kade", receipt["principal"]) != receipt["principal"]
    finally:
        store.close()


def test_no_decision_is_acknowledged_that_is_not_stored(upstream: Upstream, tmp_path: Path) -> None:
    database = tmp_path / "records.db"
    sites = site_toml("kade", upstream.url)
    proxy = launch_proxy(tmp_path, 0, f'[store]\nurl = "sqlite:///{database}?busy_timeout=300"\n\n' + sites)
    try:
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database past the store's patience
        refused = call(proxy, "POST", body={"action": "accept_all"})
        assert refused.status == 503, refused.body
        assert refused.json()["error"] == "store_unavailable"
        assert refused.header("retry-after") and int(refused.header("retry-after")[0]) > 0
        assert not refused.header("set-cookie")  # the visitor stays undecided: the banner stays
        blocker.execute("ROLLBACK")
        blocker.close()
        accepted = call(proxy, "POST", body={"action": "accept_all"})
        assert accepted.status == 200
        store = open_store(f"sqlite:///{database}")
        try:
            assert [e.principal for e in store.events("kade")] == [accepted.json()["principal"]]
        finally:
            store.close()
    finally:
        proxy.stop(signal.SIGTERM)


def test_two_instances_share_one_postgresql_log(upstream: Upstream, tmp_path: Path) -> None:
    with pg_schema("test_api") as url:
        store_table = f'[store]\nurl = "{url}"\n\n'
        sites = site_toml("kade", upstream.url)
        first = launch_proxy(tmp_path, 0, store_table + sites)
        second = launch_proxy(tmp_path, 1, store_table + sites)
        # both instances must sign alike for a visitor to move between them
        (tmp_path / "data1" / "secrets" / "consent-keys").write_bytes(
            (tmp_path / "data0" / "secrets" / "consent-keys").read_bytes())
        second.stop(signal.SIGTERM)
        second = launch_proxy(tmp_path, 1, store_table + sites)
        try:
            principals = []
            for index in range(6):
                proxy = (first, second)[index % 2]
                principals.append(call(proxy, "POST", body={"action": "reject_all"}).json()["principal"])
            key = {"Idempotency-Key": "retry-across-instances"}
            once = call(first, "POST", body={"action": "accept_all"}, headers=key)
            again = call(second, "POST", body={"action": "accept_all"}, headers=key)
            assert once.status == again.status == 200
            assert once.json()["principal"] == again.json()["principal"]  # recorded once, answered twice
            store = open_store(url)
            try:
                events = list(store.events("kade"))
                assert [e.seq for e in events] == list(range(1, 8))
                assert [e.principal for e in events][:6] == principals
                signer = Ed25519PrivateKey.generate()
                store.add_checkpoint("kade", signer)
                assert verify_chain(store.events("kade"), store.checkpoints("kade"), signer.public_key()).ok
            finally:
                store.close()
        finally:
            first.stop(signal.SIGTERM)
            second.stop(signal.SIGTERM)


def test_a_store_that_cannot_be_opened_stops_the_start(upstream: Upstream, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[server]\nlisten = ["127.0.0.1:{free_port()}"]\ndata_dir = "{tmp_path / "data"}"\n'
                      '[store]\nurl = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"\n\n'
                      + site_toml("kade", upstream.url))
    result = subprocess.run([sys.executable, "-m", "consentproxy", "serve", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    # serve runs check-config's checks first: the key, the reason and what to do (issue 20)
    assert "store.url: cannot connect to PostgreSQL" in result.stderr, result.stderr
    assert "Connection refused" in result.stderr and "pg_isready" in result.stderr, result.stderr
