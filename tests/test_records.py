"""The consent log on real databases: SQLite files in tmp_path and PostgreSQL at 127.0.0.1:5432.

Every store test runs against both backends; each PostgreSQL test gets a
schema of its own (dropped afterwards), so tests never see each other's rows.
Tampering is done the way an attacker with database access would: plain SQL.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from conftest import free_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_support import pg_base, pg_schema

from consentproxy.config.secrets import generate_keys
from consentproxy.records import (
    GENESIS,
    ConsentEvent,
    NoticeVersion,
    RecordWriter,
    StoreError,
    StoreUnavailable,
    event_type_for,
    load_private_key_file,
    reduce_ip,
    ua_family,
    verify_chain,
)
from consentproxy.records import open as open_store
from consentproxy.records.chain import event_hash, hashed_form, link
from consentproxy.records.checkpoint import sign_checkpoint
from consentproxy.records.migrations import LATEST, MIGRATIONS
from consentproxy.records.model import canonical, to_ms

ROOT = Path(__file__).resolve().parent.parent
SITE = "shop.example"
NOTICE_ID = "a" * 64
@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/consent.db"
        return
    with pg_schema("test_records") as schema_url:
        yield schema_url


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    """The export key exactly as `consentproxy keys generate` writes it."""
    return load_private_key_file(generate_keys(tmp_path / "keys")["export_key"])


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the store's database directly, bypassing the store (as an attacker or an admin would)."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite://"))
        try:
            with conn:
                rows = conn.execute(statement, params).fetchall()
        finally:
            conn.close()
        return rows
    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement.replace("?", "%s"), params or None)
        return cursor.fetchall() if cursor.description else []


def event(principal: str | None = None, site: str = SITE, key: str | None = None,
          choices: dict[str, bool] | None = None, at: datetime | None = None, **extra: Any) -> ConsentEvent:
    choices = {"necessary": True, "statistics": True, "marketing": False} if choices is None else choices
    return ConsentEvent.new(
        site=site, principal=principal or secrets.token_urlsafe(16), notice_id=NOTICE_ID,
        event_type=event_type_for("save_selection", choices), method="save_selection", choices=choices,
        expires_at=(at or datetime.now(UTC)) + timedelta(days=180), idempotency_key=key, time=at, **extra)


def verify(store: Any, key: Ed25519PrivateKey, site: str = SITE) -> Any:
    return verify_chain(store.events(site), store.checkpoints(site), key.public_key(), site=site)


# -- model and minimisation -------------------------------------------------------------------


def notice_content(**changes: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "texts": {"nl": "Wij gebruiken cookies.", "en": "We use cookies."},
        "purposes": [{"id": "statistics", "legal_basis": "consent", "retention": "P13M"}],
        "data_categories": ["online identifiers"], "recipients": ["Matomo (self-hosted)"],
        "storage_location": "EEA", "retention": "P24M",
        "controller": {"name": "Shop BV", "address": "Straat 1, Utrecht", "contact": "privacy@shop.example"},
        "jurisdiction": "NL", "cookies": [{"name": "_pk_id", "category": "statistics", "lifetime": "P13M"}],
    }
    content.update(changes)
    return content


def test_notice_id_is_the_hash_of_its_canonical_content() -> None:
    first = NoticeVersion.create(SITE, 3, notice_content())
    reordered = NoticeVersion.create(SITE, 3, dict(reversed(list(notice_content().items()))))
    changed = NoticeVersion.create(SITE, 3, notice_content(retention="P12M"))
    assert first.id == reordered.id != changed.id
    assert len(first.id) == 64 and first.id == __import__("hashlib").sha256(canonical(notice_content())).hexdigest()
    assert set(first.text_digests) == {"nl", "en"}
    assert NoticeVersion.from_dict(orjson.loads(orjson.dumps(first.to_dict()))) == first
    with pytest.raises(ValueError, match="lacks controller"):
        NoticeVersion.create(SITE, 1, {k: v for k, v in notice_content().items() if k != "controller"})
    with pytest.raises(ValueError, match="legal_basis"):
        NoticeVersion.create(SITE, 1, notice_content(purposes=[{"id": "statistics"}]))


def test_event_type_for() -> None:
    grant = {"necessary": True, "statistics": True, "marketing": False}
    refuse = {"necessary": True, "statistics": False, "marketing": False}
    assert event_type_for("accept_all", grant) == "given"
    assert event_type_for("reject_all", refuse) == "refused"
    assert event_type_for("gpc_signal", refuse) == "refused"
    assert event_type_for("withdraw", refuse) == "withdrawn"
    assert event_type_for("withdraw", grant) == "withdrawn"
    given = event("p", choices=grant)
    assert event_type_for("save_selection", grant, given) == "renewed"
    assert event_type_for("save_selection", grant, replace(given, event_type="renewed")) == "renewed"
    assert event_type_for("save_selection", {**grant, "marketing": True}, given) == "given"
    assert event_type_for("save_selection", grant, replace(given, event_type="withdrawn")) == "given"
    assert event_type_for("save_selection", refuse, given) == "refused"


@pytest.mark.parametrize(("user_agent", "family"), [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", "Chrome 131"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge 131"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", "Safari 18"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", "Safari 17"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "Chrome 131"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0", "Opera 115"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung Internet 26"),
    ("Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30 "
     "(KHTML, like Gecko) Version/4.0 Mobile Safari/534.30", "other"),
    ("curl/8.5.0", "other"),
    ("", "other"),
    (None, "other"),
])
def test_ua_family_keeps_family_and_major_only(user_agent: str | None, family: str) -> None:
    assert ua_family(user_agent) == family


def test_reduce_ip() -> None:
    assert reduce_ip("203.0.113.77") is None  # default: not kept at all
    assert reduce_ip("203.0.113.77", "truncated") == "203.0.113.0"
    assert reduce_ip("2001:db8:1234:5678::1", "truncated") == "2001:db8:1234::"
    assert reduce_ip("::ffff:203.0.113.77", "truncated") == "203.0.113.0"
    assert reduce_ip("not an ip", "truncated") is None
    # fixed keys: with random ones, 1.5 % of the digests held "203" by chance (the test failed in CI once)
    key_a, key_b = bytes(range(32)), bytes(range(1, 33))
    hashed = reduce_ip("203.0.113.77", "keyed_hash", key_a)
    assert hashed is not None and len(hashed) == 64 and set(hashed) <= set("0123456789abcdef")
    assert hashed == reduce_ip("203.0.113.77", "keyed_hash", key_a) != reduce_ip("203.0.113.77", "keyed_hash", key_b)
    assert hashed != reduce_ip("203.0.113.78", "keyed_hash", key_a)
    with pytest.raises(ValueError, match="key"):
        reduce_ip("203.0.113.77", "keyed_hash", None)
    with pytest.raises(ValueError, match="unknown IP mode"):
        reduce_ip("203.0.113.77", "full")  # type: ignore[arg-type]


def test_hashed_form_holds_commitments_not_personal_values() -> None:
    e = event("principal-xyz", ip="198.51.100.0", ua="Firefox 133", country="NL", regime="gdpr", key="k-1")
    form = canonical(hashed_form(e)).decode()
    for value in ("principal-xyz", "198.51.100.0", "Firefox 133", '"NL"', "k-1", e.salt or "-"):
        assert value not in form
    assert set(e.commitments) == {"principal", "ip", "ua", "country"}
    assert all(len(c or "") == 64 for c in e.commitments.values())
    assert ConsentEvent.from_dict(orjson.loads(orjson.dumps(e.to_dict()))) == e
    assert e.time.microsecond % 1000 == 0 and e.time.tzinfo is not None
    with pytest.raises(ValueError, match="expiry"):
        ConsentEvent.new(site=SITE, principal="p", notice_id=NOTICE_ID, event_type="expired", method="withdraw",
                         choices={}, expires_at=datetime.now(UTC))


def test_verify_names_the_first_bad_record_in_memory() -> None:
    """Chain rules on plain objects, including a rewrite that recomputes every hash."""
    key = Ed25519PrivateKey.generate()
    events = link([event() for _ in range(6)], 0, GENESIS)
    checkpoint = sign_checkpoint(key, SITE, 6, events[-1].hash)
    assert verify_chain(events, [checkpoint], key.public_key()).ok
    assert events[0].prev_hash == GENESIS and events[3].prev_hash == events[2].hash

    edited = replace(events[2], choices={"necessary": True, "statistics": True, "marketing": True})
    verdict = verify_chain([*events[:2], edited, *events[3:]], [checkpoint], key.public_key())
    assert (verdict.ok, verdict.bad_seq, verdict.code) == (False, 3, "hash")
    assert "seq 3" in str(verdict)

    rewritten = link([*events[:2], edited, *events[3:]], 0, GENESIS)  # consistent, but not what was signed
    assert verify_chain(rewritten, [], key.public_key()).ok
    verdict = verify_chain(rewritten, [checkpoint], key.public_key())
    assert (verdict.ok, verdict.bad_seq, verdict.code) == (False, 6, "checkpoint")

    swapped = [events[0], events[2], events[1], *events[3:]]
    assert verify_chain(swapped, [], key.public_key()).bad_seq == 2

    other_key = Ed25519PrivateKey.generate()
    verdict = verify_chain(events, [sign_checkpoint(other_key, SITE, 6, events[-1].hash)], key.public_key())
    assert (verdict.ok, verdict.code) == (False, "checkpoint")

    assert event_hash(GENESIS, replace(events[0], hash="", seq=1)) == events[0].hash


# -- stores: both backends ------------------------------------------------------------------------


def test_append_chains_each_site_gap_free_and_verifies(url: str, key: Ed25519PrivateKey) -> None:
    with open_store(url) as store:
        first = store.append([event(ip="198.51.100.0", ua="Chrome 131", country="NL") for _ in range(3)])
        mixed = store.append([event(site="blog.example"), event(), event(site="blog.example"), event()])
        assert [e.seq for e in first] == [1, 2, 3]
        assert [(e.site, e.seq) for e in mixed] == [
            ("blog.example", 1), (SITE, 4), ("blog.example", 2), (SITE, 5)]
        assert first[0].prev_hash == GENESIS and mixed[1].prev_hash == first[2].hash
        assert store.head(SITE) == (5, mixed[3].hash)
        assert store.sites() == ["blog.example", SITE]

        stored = list(store.events(SITE))
        assert stored == [*first, mixed[1], mixed[3]]  # exactly what was returned, raw fields included
        assert store.add_checkpoint(SITE, key) == store.add_checkpoint(SITE, key)  # unchanged head: one checkpoint
        assert len(store.checkpoints(SITE)) == 1
        for site in (SITE, "blog.example"):
            verdict = verify(store, key, site)
            assert verdict.ok, verdict
        assert verify(store, key).count == 5 and verify(store, key).checkpoints == 1

        notice = NoticeVersion.create(SITE, 1, notice_content())
        store.put_notice(notice)
        store.put_notice(NoticeVersion.create(SITE, 1, notice_content()))  # same content: stored once
        assert store.notice(notice.id) == notice
        assert sql(url, "SELECT COUNT(*) FROM notices") == [(1,)]
        assert store.notice("0" * 64) is None


def test_events_stream_in_seq_order_with_time_filters(url: str) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with open_store(url) as store:
        store.append([event(at=start + timedelta(minutes=i)) for i in range(2300)])
        streamed = store.events(SITE)
        assert next(streamed).seq == 1  # an iterator, not a list
        assert [e.seq for e in streamed] == list(range(2, 2301))
        window = list(store.events(SITE, since=start + timedelta(minutes=1000), until=start + timedelta(minutes=2100)))
        assert [e.seq for e in window] == list(range(1001, 2101))
        assert store.count(SITE) == 2300


@pytest.mark.parametrize("tamper", ["choices", "event_type", "principal", "delete", "truncate", "reorder"])
def test_tampering_in_the_database_is_named(url: str, key: Ed25519PrivateKey, tamper: str) -> None:
    with open_store(url) as store:
        store.append([event(ip="198.51.100.0") for _ in range(6)])
        store.add_checkpoint(SITE, key)
        assert verify(store, key).ok
        if tamper == "choices":
            sql(url, "UPDATE events SET choices = ? WHERE site = ? AND seq = 3",
                ('{"marketing":true,"necessary":true,"statistics":true}', SITE))
            expected = (3, "hash")
        elif tamper == "event_type":
            sql(url, "UPDATE events SET event_type = 'refused' WHERE seq = 4")
            expected = (4, "hash")
        elif tamper == "principal":  # the raw value is not hashed, but its commitment is
            sql(url, "UPDATE events SET principal = 'someone-else' WHERE seq = 2")
            expected = (2, "commitment")
        elif tamper == "delete":
            sql(url, "DELETE FROM events WHERE seq = 5")
            expected = (5, "gap")
        elif tamper == "truncate":  # the last two records gone; the signed checkpoint still says 6
            sql(url, "DELETE FROM events WHERE seq >= 5")
            expected = (5, "truncated")
        else:  # swap the contents of two rows, seq numbers kept
            rows = sql(url, "SELECT record_id FROM events WHERE seq IN (2, 3) ORDER BY seq")
            sql(url, "UPDATE events SET record_id = 'x' WHERE seq = 2")
            sql(url, "UPDATE events SET record_id = ? WHERE seq = 3", (rows[0][0],))
            sql(url, "UPDATE events SET record_id = ? WHERE seq = 2", (rows[1][0],))
            expected = (2, "hash")
        verdict = verify(store, key)
        assert not verdict.ok
        assert (verdict.bad_seq, verdict.code) == expected, verdict
        assert f"seq {expected[0]}" in str(verdict)


def test_idempotency_key_returns_the_stored_event(url: str) -> None:
    with open_store(url) as store:
        original = store.append([event("alice", key="retry-1")])[0]
        again = store.append([event("alice", key="retry-1"), event("bob")])
        assert again[0] == original
        assert again[1].seq == 2
        same_call = store.append([event("carol", key="retry-2"), event("carol", key="retry-2")])
        assert same_call[0] == same_call[1] and same_call[0].seq == 3
        other_site = store.append([event("alice", site="blog.example", key="retry-1")])[0]
        assert (other_site.site, other_site.seq) == ("blog.example", 1)
        assert store.count(SITE) == 3
        with pytest.raises(StoreError):  # a record id is stored once; this is no retry but a bug
            store.append([replace(original, idempotency_key=None)])
        assert store.count(SITE) == 3


def test_erasure_removes_personal_fields_and_the_log_still_verifies(url: str, key: Ed25519PrivateKey) -> None:
    with open_store(url) as store:
        store.append([event("alice", ip="198.51.100.0", ua="Firefox 133", country="NL"), event("bob")])
        store.append([event("alice", ip="198.51.100.0", ua="Firefox 133", country="NL",
                            choices={"necessary": True, "statistics": False}, key="k-alice")])
        store.add_checkpoint(SITE, key)
        before = {e.seq: e for e in store.events(SITE)}

        assert store.erase(SITE, "alice") == 2
        assert store.events_of(SITE, "alice") == []
        assert [e.seq for e in store.events_of(SITE, "bob")] == [2]
        rows = sql(url, "SELECT * FROM events")
        for value in ("alice", "198.51.100.0", "Firefox 133", "NL", "k-alice", before[1].salt, before[3].salt):
            assert not any(value in str(row) for row in rows), value
        after = {e.seq: e for e in store.events(SITE)}
        for seq in (1, 3):
            assert after[seq].erased and after[seq].principal is after[seq].ip is None
            assert after[seq].commitments == before[seq].commitments and after[seq].hash == before[seq].hash
        assert after[2] == before[2]
        verdict = verify(store, key)
        assert verdict.ok and verdict.count == 3, verdict
        assert store.erase(SITE, "alice") == 0


def test_purge_leaves_a_signed_cut_and_the_rest_verifies(url: str, key: Ed25519PrivateKey) -> None:
    now = datetime.now(UTC)
    with open_store(url) as store:
        store.append([event(at=now - timedelta(days=500 - i)) for i in range(4)])
        store.add_checkpoint(SITE, key)
        store.append([event(at=now - timedelta(days=1)), event()])
        fourth = list(store.events(SITE))[3]
        assert store.purge(SITE, now - timedelta(days=400), key) == 4
        assert [e.seq for e in store.events(SITE)] == [5, 6]
        assert [(cp.seq, cp.head) for cp in store.checkpoints(SITE) if cp.kind == "cut"] == [(4, fourth.hash)]
        verdict = verify(store, key)
        assert verdict.ok and (verdict.first_seq, verdict.count) == (5, 2), verdict
        assert store.purge(SITE, now - timedelta(days=400), key) == 0

        sql(url, "DELETE FROM events WHERE seq = 5")  # deleting more of the start, without a purge, is caught
        verdict = verify(store, key)
        assert (verdict.ok, verdict.bad_seq, verdict.code) == (False, 6, "start"), verdict

        assert store.purge(SITE, now + timedelta(days=1), key) == 1  # everything: the head stays signed
        assert list(store.events(SITE)) == []
        assert verify(store, key).ok
        store.append([event()])
        assert [e.seq for e in store.events(SITE)] == [7]
        assert verify(store, key).ok


def test_migrations_are_idempotent(url: str) -> None:
    with open_store(url) as store:
        assert store.schema_version() == LATEST
        assert store.migrate() == []
        store.append([event()])
    with open_store(url) as again:
        assert again.migrate() == []
        assert again.count(SITE) == 1
    assert sql(url, "SELECT version FROM schema_migrations ORDER BY version") == [(m.version,) for m in MIGRATIONS]


WORKER = r"""
import os, sys, time
from datetime import UTC, datetime, timedelta
from consentproxy.records import ConsentEvent
from consentproxy.records import open as open_store

url, tag, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = open_store(url)
with __builtins__.open(go + "." + tag, "w"):
    pass
while not os.path.exists(go):
    time.sleep(0.005)
done = 0
while done < count:
    size = min(1 + done % 4, count - done)
    store.append([
        ConsentEvent.new(site="shop.example", principal=f"{tag}-{done + i}", notice_id="a" * 64,
                         event_type="given", method="accept_all", choices={"statistics": True},
                         expires_at=datetime.now(UTC) + timedelta(days=1))
        for i in range(size)])
    done += size
store.close()
"""


def test_two_processes_append_to_one_log(url: str, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Worker processes on one SQLite file, or proxy instances on one PostgreSQL: one gap-free order."""
    go = tmp_path / "go"  # the workers also race to create the schema of the fresh database
    per_process = 300
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, tag, str(per_process), str(go)], cwd=ROOT)
        for tag in ("one", "two", "three")
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}.{tag}").exists() for tag in ("one", "two", "three")):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(w.poll() is None for w in workers), "a worker died"
            time.sleep(0.01)
        go.touch()
        assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    with open_store(url) as store:
        stored = list(store.events(SITE))
        assert [e.seq for e in stored] == list(range(1, 3 * per_process + 1))
        for tag in ("one", "two", "three"):
            mine = sorted(int(e.principal.split("-")[1]) for e in stored if e.principal and e.principal.startswith(tag))
            assert mine == list(range(per_process))
        store.add_checkpoint(SITE, key)
        verdict = verify(store, key)
        assert verdict.ok and verdict.count == 3 * per_process, verdict


# -- group commit -----------------------------------------------------------------------------


def test_group_commit_batches_concurrent_records(url: str, key: Ed25519PrivateKey) -> None:
    async def main() -> list[ConsentEvent]:
        writer = RecordWriter.for_url(url)
        try:
            stored = await asyncio.gather(*(writer.record(event(f"p{i}")) for i in range(200)))
        finally:
            await writer.close()
        assert writer.recorded == 200
        assert 1 <= writer.transactions < 200
        return stored

    stored = asyncio.run(main())
    assert sorted(e.seq for e in stored) == list(range(1, 201))
    assert [e.principal for e in stored] == [f"p{i}" for i in range(200)]  # each caller got its own event
    with open_store(url) as store:
        assert list(store.events(SITE)) == sorted(stored, key=lambda e: e.seq)
        store.add_checkpoint(SITE, key)
        assert verify(store, key).ok


def test_group_commit_retries_and_refusals(url: str) -> None:
    async def main() -> None:
        writer = RecordWriter.for_url(url)
        try:
            retries = await asyncio.gather(*(writer.record(event("alice", key="same")) for _ in range(10)))
            assert len({e.record_id for e in retries}) == 1

            first = await writer.record(event("bob"))
            outcomes = await asyncio.gather(writer.record(event("carol")), writer.record(first),
                                            writer.record(event("dave")), return_exceptions=True)
            assert isinstance(outcomes[1], StoreError) and not isinstance(outcomes[1], StoreUnavailable)
            assert [o.principal for o in outcomes if isinstance(o, ConsentEvent)] == ["carol", "dave"]

            assert await writer.call(lambda store: store.count(SITE)) == 4
            assert [e.principal for e in await writer.call(lambda store: store.events_of(SITE, "dave"))] == ["dave"]
        finally:
            await writer.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await writer.record(event())

    asyncio.run(main())


def test_close_flushes_queued_events(url: str) -> None:
    async def main() -> None:
        writer = RecordWriter.for_url(url, max_batch=7)
        pending = [asyncio.ensure_future(writer.record(event())) for _ in range(50)]
        await asyncio.sleep(0)  # all queued
        await writer.close()
        assert all(task.done() and task.exception() is None for task in pending)

    asyncio.run(main())
    with open_store(url) as store:
        assert store.count(SITE) == 50


# -- the store is down ------------------------------------------------------------------------


def test_unreachable_store_raises_store_unavailable(tmp_path: Path) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    missing_dir = f"sqlite://{tmp_path}/no/such/dir/consent.db"
    for unreachable in (closed, missing_dir):
        with pytest.raises(StoreUnavailable):
            open_store(unreachable)

    async def main() -> None:
        for unreachable in (closed, missing_dir):
            writer = RecordWriter.for_url(unreachable)
            try:
                with pytest.raises(StoreUnavailable) as caught:
                    await asyncio.wait_for(writer.record(event()), 60)
                assert caught.value.retry_after > 0
                assert writer.recorded == 0
            finally:
                await writer.close()

    asyncio.run(main())


def test_postgres_connection_lost_then_back() -> None:
    name = f"cp_test_{secrets.token_hex(4)}"
    base = pg_base()
    schema = f"test_records_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        url = f"{base}?options=-csearch_path%3D{schema}&application_name={name}"
        try:
            async def main() -> None:
                writer = RecordWriter.for_url(url)
                try:
                    kept = await writer.record(event("before"))
                    killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                           "WHERE application_name = %s", (name,)).fetchall()
                    assert killed == [(True,)]
                    with pytest.raises(StoreUnavailable):
                        await asyncio.wait_for(writer.record(event("lost")), 60)
                    after = await asyncio.wait_for(writer.record(event("after")), 60)  # reconnected
                    assert (kept.seq, after.seq) == (1, 2)
                finally:
                    await writer.close()

            asyncio.run(main())
            principals = sql(url, "SELECT principal FROM events ORDER BY seq")
            assert principals == [("before",), ("after",)]  # nothing acknowledged that is not stored, and v.v.
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_sqlite_locked_beyond_busy_timeout_then_free(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    url = f"sqlite://{path}?busy_timeout=100"
    open_store(url).close()
    holder = sqlite3.connect(path, isolation_level=None)

    async def main() -> None:
        writer = RecordWriter.for_url(url)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                await asyncio.wait_for(writer.record(event("blocked")), 60)
            holder.execute("ROLLBACK")
            assert (await writer.record(event("free"))).seq == 1
        finally:
            await writer.close()

    try:
        asyncio.run(main())
    finally:
        holder.close()


def test_sqlite_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    with open_store(f"sqlite://{path}") as store:
        store.append([event("alice")])
    with open_store(f"sqlite://{path}?mode=ro") as readonly:
        assert [e.principal for e in readonly.events(SITE)] == ["alice"]
        with pytest.raises(StoreUnavailable, match="readonly"):
            readonly.append([event()])
        assert readonly.count(SITE) == 1


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:relative.db") as store:
        store.append([event()])
    assert (tmp_path / "relative.db").exists()
    for bad in ("mysql://x", "sqlite://host/x.db", "sqlite:"):
        with pytest.raises(ValueError):
            open_store(bad)
    assert to_ms(datetime(1970, 1, 1, 0, 0, 1, 2500, tzinfo=UTC)) == 1002
