"""The admin API against real proxy processes and real stores (SQLite and PostgreSQL): tokens and scopes,
rights requests by consent id, the audit log, NDJSON exports, verification, checkpoints, the OpenAPI file."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ROOT, Proxy, Upstream, launch_proxy, site_toml
from pg_support import pg_schema
from test_consent_api import call
from test_records import notice_content

from consentproxy.admin.api import OPERATIONS, AdminStore
from consentproxy.admin.app import build_admin_app
from consentproxy.admin.auth import AdminContext, AdminToken
from consentproxy.config import ConfigError, load_config
from consentproxy.config.secrets import generate_keys
from consentproxy.records import ConsentEvent, NoticeVersion, RecordWriter, open_store
from consentproxy.records.store import StoreUnavailable, subject_commitment

SITE = "kade"
DPO_TOKEN = "dpo-reads-only-3f9a1c7e52"
OPS_TOKEN = "ops-may-erase-b81d04e6aa"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS_TOML = f"""
[[server.admin_tokens]]
name = "dpo"
scope = "read"
sha256 = "{digest(DPO_TOKEN)}"

[[server.admin_tokens]]
name = "ops"
scope = "full"
sha256 = "{digest(OPS_TOKEN).upper()}"
"""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def admin(proxy: Proxy, method: str, path: str, token: str | None = None, port: int | None = None,
          headers: dict[str, str] | None = None, body: object = None) -> Reply:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port or proxy.admin_port, timeout=60)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Running:
    proxy: Proxy
    store_url: str
    admin_token: str  # [secrets] admin_token, generated in the data directory


def start(base: Path, upstream: Upstream, store_url: str | None) -> Running:
    store = f'[store]\nurl = "{store_url}"\n\n' if store_url else ""
    proxy = launch_proxy(base, 0, store + site_toml(SITE, upstream.url) + TOKENS_TOML)
    data_dir = base / "data0"
    return Running(proxy, store_url or f"sqlite:///{data_dir / 'consent-records.db'}",
                   (data_dir / "secrets" / "admin-token").read_text().strip())


@pytest.fixture(params=["sqlite", "postgres"])
def running(request: pytest.FixtureRequest, upstream: Upstream, tmp_path: Path) -> Iterator[Running]:
    if request.param == "sqlite":
        started = start(tmp_path, upstream, None)
        yield started
        started.proxy.stop(signal.SIGTERM)
        return
    with pg_schema("test_admin") as url:
        started = start(tmp_path, upstream, url)
        yield started
        started.proxy.stop(signal.SIGTERM)


@pytest.fixture
def on_sqlite(upstream: Upstream, tmp_path: Path) -> Iterator[Running]:
    started = start(tmp_path, upstream, None)
    yield started
    started.proxy.stop(signal.SIGTERM)


def decide(proxy: Proxy, action: str, cookie: str | None = None) -> tuple[str, str]:
    """A visitor's decision through the consent API: (consent id, the cookie to send next time)."""
    answer = call(proxy, "POST", body={"action": action}, cookie=cookie)
    assert answer.status == 200, answer.body
    return answer.json()["principal"], f"cp_consent={answer.cookie_value()}"


def audit_rows(run: Running) -> list[tuple[Any, ...]]:
    """The audit table as stored, read past the API."""
    query = "SELECT * FROM admin_audit ORDER BY id"
    if run.store_url.startswith("sqlite:"):
        with closing(sqlite3.connect(run.store_url.removeprefix("sqlite://"))) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(run.store_url) as conn:
        return conn.execute(query).fetchall()


def test_tokens_are_required_and_their_scope_enforced(on_sqlite: Running) -> None:
    proxy = on_sqlite.proxy
    missing = admin(proxy, "GET", "/api/sites")
    assert missing.status == 401 and missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = admin(proxy, "GET", "/api/sites", token=DPO_TOKEN + "x")
    assert wrong.status == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = admin(proxy, "GET", "/api/sites", headers={"Authorization": f"Basic {DPO_TOKEN}"})
    assert basic.status == 401
    # every operation is closed without a token, and a read token cannot change anything
    for op in OPERATIONS:
        path = op.path.format(site=SITE, consent_id="A" * 22, name="x.ndjson")
        assert admin(proxy, op.method, path).status == 401, op
        if op.scope == "full":
            refused = admin(proxy, op.method, path, token=DPO_TOKEN)
            assert refused.status == 403, (op, refused.body)
            assert refused.json()["error"] == "insufficient_scope"
            assert 'scope="full"' in refused.headers["www-authenticate"]
    for token in (DPO_TOKEN, OPS_TOKEN, on_sqlite.admin_token):  # configured by digest (one in upper case)
        listed = admin(proxy, "GET", "/api/sites", token=token)
        assert listed.status == 200, listed.body
        assert [s["site"] for s in listed.json()["sites"]] == [SITE]
        assert admin(proxy, "GET", f"/api/inventory?site={SITE}", token=token).status == 200
    assert admin(proxy, "GET", "/api/sites/nowhere/verify", token=DPO_TOKEN).json()["error"] == "unknown_site"
    assert admin(proxy, "GET", "/api/nothing", token=DPO_TOKEN).json()["error"] == "not_found"
    bad_id = admin(proxy, "GET", f"/api/sites/{SITE}/consents/someone@example.nl", token=DPO_TOKEN)
    assert bad_id.status == 400 and bad_id.json()["error"] == "bad_consent_id"
    # refusals of a known token are audited under its name; unknown tokens are not
    denied = admin(proxy, "GET", "/api/audit?action=erasure", token=DPO_TOKEN).json()["entries"]
    assert {(e["token"], e["status"], e["outcome"]) for e in denied} == {("dpo", 403, "insufficient_scope")}


def test_access_erasure_and_their_audit(running: Running) -> None:
    proxy = running.proxy
    person, cookie = decide(proxy, "accept_all")
    decide(proxy, "withdraw", cookie)
    other, _ = decide(proxy, "reject_all")

    access = admin(proxy, "GET", f"/api/sites/{SITE}/consents/{person}", token=DPO_TOKEN)
    assert access.status == 200, access.body
    body = access.json()
    assert [e["method"] for e in body["events"]] == ["accept_all", "withdraw"]
    assert {e["principal"] for e in body["events"]} == {person}
    assert all("salt" not in e for e in body["events"])
    (notice,) = body["notices"].values()
    assert notice["id"] == body["events"][0]["notice_id"] and notice["content"]["texts"]["nl"]

    refused = admin(proxy, "DELETE", f"/api/sites/{SITE}/consents/{person}", token=DPO_TOKEN)
    assert refused.status == 403
    erased = admin(proxy, "DELETE", f"/api/sites/{SITE}/consents/{person}", token=OPS_TOKEN)
    assert erased.status == 200, erased.body
    result = erased.json()
    assert result["erased"] == 2
    assert result["chain"]["ok"] is True and result["chain"]["count"] == 3, result
    store = open_store(running.store_url)
    try:
        assert store.events_of(SITE, person) == []
        assert [e.principal for e in store.events_of(SITE, other)] == [other]
        stored = list(store.events(SITE))
        assert [e.principal for e in stored] == [None, None, other]
        assert stored[0].ip is None and stored[0].ua is None and stored[0].salt is None
    finally:
        store.close()

    verdict = admin(proxy, "GET", f"/api/sites/{SITE}/verify", token=DPO_TOKEN).json()
    assert verdict["ok"] is True and verdict["count"] == 3 and verdict["store_head"]["seq"] == 3, verdict
    again = admin(proxy, "GET", f"/api/sites/{SITE}/consents/{person}", token=DPO_TOKEN).json()
    assert again["events"] == []

    entries = admin(proxy, "GET", "/api/audit", token=DPO_TOKEN).json()["entries"]
    assert [(e["action"], e["token"], e["status"]) for e in entries] == [
        ("access", "dpo", 200), ("erasure", "dpo", 403), ("erasure", "ops", 200), ("verify", "dpo", 200),
        ("access", "dpo", 200)]
    subject = subject_commitment(SITE, person)
    assert {e["subject"] for e in entries if e["rights_request"]} == {subject}
    assert entries[0]["detail"] == {"events": 2} and entries[2]["detail"] == {"erased": 2}
    assert all(e["site"] == SITE and e["time"].endswith("Z") for e in entries)
    # the person's rights requests can be found by their consent id, which is stored nowhere
    mine = admin(proxy, "GET", f"/api/audit?site={SITE}&consent_id={person}", token=DPO_TOKEN).json()["entries"]
    assert [e["action"] for e in mine] == ["access", "erasure", "erasure", "access"]
    assert admin(proxy, "GET", f"/api/audit?site={SITE}&consent_id={other}", token=DPO_TOKEN).json()["entries"] == []
    stored_audit = repr(audit_rows(running))
    for secret in (DPO_TOKEN, OPS_TOKEN, running.admin_token, person):
        assert secret not in stored_audit
    assert "'dpo'" in stored_audit and "'ops'" in stored_audit
    # reading the audit is audited too
    last = admin(proxy, "GET", "/api/audit?action=audit", token=OPS_TOKEN).json()["entries"]
    assert [(e["token"], e["detail"]) for e in last] == [("dpo", {}), ("dpo", {"site": SITE}),
                                                        ("dpo", {"site": SITE})]


def test_events_stream_as_ndjson(running: Running) -> None:
    proxy = running.proxy
    decide(proxy, "accept_all")  # the site's notice and first event, through the consent API
    store = open_store(running.store_url)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    try:
        (first,) = store.events(SITE)
        bulk = [ConsentEvent.new(site=SITE, principal=f"bulk-principal-{i:06d}", notice_id=first.notice_id,
                                 event_type="refused", method="reject_all", choices={"necessary": True},
                                 expires_at=start + timedelta(days=365), time=start + timedelta(minutes=i))
                for i in range(2500)]
        store.append(bulk)
    finally:
        store.close()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=30)
    try:
        connection.request("GET", f"/api/sites/{SITE}/events", headers={"Authorization": f"Bearer {DPO_TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("application/x-ndjson")
        assert response.getheader("transfer-encoding") == "chunked"  # streamed, not buffered
        assert response.getheader("content-length") is None
        lines = response.read().splitlines()
    finally:
        connection.close()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, 2502))
    assert events[0]["principal"] == first.principal and events[0]["hash"] == first.hash
    assert events[1]["principal"] == "bulk-principal-000000" and events[1]["salt"]
    window = admin(proxy, "GET", f"/api/sites/{SITE}/events?since=2024-03-01T00:10:00Z&until=2024-03-01T00:20:00",
                   token=DPO_TOKEN)
    assert [json.loads(line)["seq"] for line in window.body.splitlines()] == list(range(12, 22))
    head = admin(proxy, "HEAD", f"/api/sites/{SITE}/events", token=DPO_TOKEN)
    assert head.status == 200 and head.body == b"" and head.headers["content-type"].startswith("application/x-ndjson")
    bad = admin(proxy, "GET", f"/api/sites/{SITE}/events?since=yesterday", token=DPO_TOKEN)
    assert bad.status == 400 and bad.json()["error"] == "bad_parameter"
    audited = admin(proxy, "GET", "/api/audit?action=events", token=DPO_TOKEN).json()["entries"]
    assert [(e["status"], e["detail"].get("since")) for e in audited] == [
        (200, None), (200, "2024-03-01T00:10:00.000Z"), (200, None), (400, None)]


def test_nothing_is_disclosed_that_cannot_be_audited(upstream: Upstream, tmp_path: Path) -> None:
    database = tmp_path / "records.db"
    run = start(tmp_path, upstream, f"sqlite:///{database}?busy_timeout=300")
    try:
        person, _ = decide(run.proxy, "accept_all")
        with closing(sqlite3.connect(database, isolation_level=None)) as blocker:
            blocker.execute("BEGIN EXCLUSIVE")  # readers still read (WAL), but no audit entry can be written
            for method, path in (("GET", f"/api/sites/{SITE}/consents/{person}"), ("GET", f"/api/sites/{SITE}/events"),
                                 ("DELETE", f"/api/sites/{SITE}/consents/{person}"),
                                 ("POST", f"/api/sites/{SITE}/consents/{person}/withdraw")):
                refused = admin(run.proxy, method, path, token=run.admin_token)
                assert refused.status == 503, (path, refused.body)
                assert refused.json()["error"] == "store_unavailable" and int(refused.headers["retry-after"]) > 0
                assert person.encode() not in refused.body
            blocker.execute("ROLLBACK")
        store = open_store(f"sqlite:///{database}")
        try:
            # not erased, no withdrawal recorded, nothing audited
            assert len(store.events_of(SITE, person)) == 1 and store.audit() == []
        finally:
            store.close()
        assert admin(run.proxy, "GET", f"/api/sites/{SITE}/consents/{person}", token=run.admin_token).status == 200
    finally:
        run.proxy.stop(signal.SIGTERM)


def test_checkpoints_and_verification_catch_tampering(on_sqlite: Running) -> None:
    proxy = on_sqlite.proxy
    empty = admin(proxy, "POST", f"/api/sites/{SITE}/checkpoints", token=OPS_TOKEN)
    assert empty.status == 409 and empty.json()["error"] == "no_events"
    for action in ("accept_all", "reject_all", "accept_all", "reject_all"):
        decide(proxy, action)
    assert admin(proxy, "POST", f"/api/sites/{SITE}/checkpoints", token=DPO_TOKEN).status == 403
    signed = admin(proxy, "POST", f"/api/sites/{SITE}/checkpoints", token=OPS_TOKEN)
    assert signed.status == 201, signed.body
    checkpoint = signed.json()
    assert checkpoint["seq"] == 4 and checkpoint["kind"] == "head" and checkpoint["public_key"]
    listed = admin(proxy, "GET", f"/api/sites/{SITE}/checkpoints", token=DPO_TOKEN).json()["checkpoints"]
    assert [cp["seq"] for cp in listed] == [4]
    sites = admin(proxy, "GET", "/api/sites", token=DPO_TOKEN).json()["sites"]
    assert sites[0]["events"] == 4 and sites[0]["head"]["seq"] == 4 and sites[0]["last_checkpoint"]["seq"] == 4
    decide(proxy, "accept_all")
    good = admin(proxy, "GET", f"/api/sites/{SITE}/verify", token=DPO_TOKEN).json()
    assert good["ok"] is True and good["count"] == 5 and good["checkpoints"] == 1, good
    assert good["public_key"] == checkpoint["public_key"]

    database = on_sqlite.store_url.removeprefix("sqlite://")
    with closing(sqlite3.connect(database)) as conn, conn:  # edit a recorded choice behind the log's back
        (original,) = conn.execute("SELECT choices FROM events WHERE site = ? AND seq = 2", (SITE,)).fetchone()
        conn.execute("UPDATE events SET choices = ? WHERE site = ? AND seq = 2",
                     (original.replace("false", "true"), SITE))
    edited = admin(proxy, "GET", f"/api/sites/{SITE}/verify", token=DPO_TOKEN).json()
    assert edited["ok"] is False and edited["bad_seq"] == 2 and edited["code"] == "hash", edited
    with closing(sqlite3.connect(database)) as conn, conn:  # undo
        conn.execute("UPDATE events SET choices = ? WHERE site = ? AND seq = 2", (original, SITE))
    assert admin(proxy, "GET", f"/api/sites/{SITE}/verify", token=DPO_TOKEN).json()["ok"] is True
    with closing(sqlite3.connect(database)) as conn, conn:  # cut the last event (after the checkpoint) off
        conn.execute("DELETE FROM events WHERE site = ? AND seq = 5", (SITE,))
    cut = admin(proxy, "GET", f"/api/sites/{SITE}/verify", token=DPO_TOKEN).json()
    assert cut["ok"] is False and cut["code"] == "truncated" and cut["bad_seq"] == 5, cut


def test_the_admin_api_is_not_reachable_through_the_proxy_port(on_sqlite: Running, upstream: Upstream) -> None:
    proxy = on_sqlite.proxy
    person, _ = decide(proxy, "accept_all")
    for path in ("/api/sites", f"/api/sites/{SITE}/consents/{person}", "/api/audit", "/metrics"):
        answer = admin(proxy, "GET", path, token=on_sqlite.admin_token, port=proxy.port,
                       headers={"Host": f"127.0.0.1:{proxy.port}"})
        assert answer.status == 200
        echo = answer.json()  # the upstream's echo: forwarded like any page, never answered by the admin app
        assert set(echo) == {"method", "raw_path", "headers", "body_size", "sha256"} and echo["raw_path"] == path
    assert [seen.raw_path for seen in upstream.seen][-4:] == [
        "/api/sites", f"/api/sites/{SITE}/consents/{person}", "/api/audit", "/metrics"]
    deleted = admin(proxy, "DELETE", f"/api/sites/{SITE}/consents/{person}", token=on_sqlite.admin_token,
                    port=proxy.port, headers={"Host": f"127.0.0.1:{proxy.port}"})
    assert deleted.json()["method"] == "DELETE"  # the upstream's answer, not an erasure
    store = open_store(on_sqlite.store_url)
    try:
        assert len(store.events_of(SITE, person)) == 1
        assert store.audit() == []  # nothing reached the admin API
    finally:
        store.close()


def test_a_reload_adds_and_removes_tokens(on_sqlite: Running) -> None:
    proxy = on_sqlite.proxy
    newcomer = "auditor-token-5d1e29b7c0"
    assert admin(proxy, "GET", "/api/audit", token=newcomer).status == 401
    text = proxy.config_path.read_text().replace(f'sha256 = "{digest(DPO_TOKEN)}"', f'sha256 = "{digest(newcomer)}"')
    proxy.config_path.write_text(text)
    proxy.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while admin(proxy, "GET", "/api/audit", token=newcomer).status != 200:
        assert time.monotonic() < deadline, proxy.log()
        time.sleep(0.1)
    assert admin(proxy, "GET", "/api/audit", token=DPO_TOKEN).status == 401
    entries = admin(proxy, "GET", "/api/audit", token=newcomer).json()["entries"]
    assert {e["token"] for e in entries} == {"dpo"}  # the name stays with the entry in the configuration


BASE = """
[server]
listen = ["127.0.0.1:8080"]
admin_listen = "127.0.0.1:9090"

[sites.shop]
hosts = ["shop.example.nl"]
upstream = "http://127.0.0.1:9000"
"""


@pytest.mark.parametrize(("table", "expected"), [
    ('name = "dpo"\nscope = "read"\nsha256 = "hunter2-the-actual-token"',
     "server.admin_tokens[0].sha256: must be the token's SHA-256 as 64 hexadecimal digits"),
    (f'name = "dpo"\nscope = "read"\nsha256 = "{"g" * 64}"', "server.admin_tokens[0].sha256: must be"),
    (f'name = "dpo"\nscope = "read"\nsha256 = "{digest("")}"', "server.admin_tokens[0].sha256: is the SHA-256 of an "
                                                               "empty token"),
    (f'name = "dpo"\nscope = "write"\nsha256 = "{digest("x")}"', "server.admin_tokens[0].scope: must be \"read\" or"),
    (f'name = "admin"\nscope = "read"\nsha256 = "{digest("x")}"', "server.admin_tokens[0].name: 'admin' is the name "
                                                                  "of [secrets] admin_token"),
    (f'scope = "read"\nsha256 = "{digest("x")}"', "server.admin_tokens[0].name: is required"),
    (f'name = "dpo"\nsha256 = "{digest("x")}"', "server.admin_tokens[0].scope: is required"),
    ('name = "dpo"\nscope = "read"', "server.admin_tokens[0].sha256: is required"),
    (f'name = "dpo"\nscope = "read"\nsha256 = "{digest("x")}"\ntoken = "x"',
     "server.admin_tokens[0].token: unknown key"),
])
def test_token_configuration_errors_name_the_key(tmp_path: Path, table: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + "\n[[server.admin_tokens]]\n" + table + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: {expected}" in str(error.value)
    assert "hunter2" not in str(error.value)  # a token pasted in place of its digest is not echoed


def test_duplicate_tokens_and_a_good_one(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    one = f'[[server.admin_tokens]]\nname = "dpo"\nscope = "read"\nsha256 = "{digest("a")}"\n'
    path.write_text(BASE + one + one.replace('"read"', '"full"'))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert [p.key for p in error.value.problems] == ["server.admin_tokens[1].name", "server.admin_tokens[1].sha256"]
    path.write_text(BASE + one.replace(digest("a"), digest("a").upper()))
    (token,) = load_config(path).server.admin_tokens
    assert (token.name, token.scope, token.sha256) == ("dpo", "read", digest("a"))


def _documented() -> dict[tuple[str, str], list[str] | None]:
    """(METHOD, path) → the scopes of its security requirement (None: open), read from the YAML by indentation."""
    text = (ROOT / "docs" / "admin-api.yaml").read_text()
    assert text.startswith("openapi: 3.1.0\n")
    paths = text.split("\npaths:\n", 1)[1].split("\ncomponents:\n", 1)[0]
    found: dict[tuple[str, str], list[str] | None] = {}
    path = method = ""
    for line in paths.splitlines():
        if match := re.fullmatch(r"  (/\S*):", line):
            path = match.group(1)
        elif match := re.fullmatch(r"    (get|post|put|patch|delete):", line):
            method = match.group(1).upper()
            found[(method, path)] = None
        elif match := re.fullmatch(r"\s+- adminToken: \[(\w+)\]", line):
            found[(method, path)] = [match.group(1)]
    return found


def test_every_admin_route_is_in_the_openapi_description(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    writer = RecordWriter.for_url(url)
    app = build_admin_app(lambda: True, dict, lambda: AdminContext(tmp_path),
                          AdminStore(writer, lambda: open_store(url)))
    asyncio.run(writer.close())
    served = set()
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                served.add((method, getattr(route, "path", "")))
    documented = _documented()
    assert served == set(documented)
    for op in OPERATIONS:
        assert documented[(op.method, op.path)] == [op.scope], op
    assert {key for key, scopes in documented.items() if scopes is None} == {
        ("GET", "/"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


# -- signed export files (POST /api/sites/{site}/exports, /api/exports/…) ----------------------------


def bulk_events(run: Running, count: int, start: datetime) -> None:
    """`count` refusals a minute apart from `start` (after now: the log's times rise with its seqs, as in
    production), on the notice of one decision made through the proxy."""
    decide(run.proxy, "accept_all")
    with open_store(run.store_url) as store:
        (first,) = store.events(SITE)
        store.append([ConsentEvent.new(site=SITE, principal=f"bulk-principal-{i:06d}", notice_id=first.notice_id,
                                       event_type="refused", method="reject_all", choices={"necessary": True},
                                       ip="81.2.69.0", expires_at=start + timedelta(days=365),
                                       time=start + timedelta(minutes=i)) for i in range(count)])


def exports_dir(run: Running) -> Path:
    return run.proxy.config_path.parent / "data0" / "exports"


def download(run: Running, path: str, into: Path) -> Path:
    """GET an export file as curl -OJ would: saved under the name its Content-Disposition gives."""
    got = admin(run.proxy, "GET", path, token=DPO_TOKEN)
    assert got.status == 200, got.body
    match = re.fullmatch(r'attachment; filename="([^"/]+)"', got.headers["content-disposition"])
    assert match is not None, got.headers
    assert int(got.headers["content-length"]) == len(got.body)
    into.mkdir(exist_ok=True)
    saved = into / match.group(1)
    saved.write_bytes(got.body)
    return saved


def verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentproxy", "verify", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_exports_are_made_listed_downloaded_and_verify(running: Running, tmp_path: Path) -> None:
    proxy = running.proxy
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    bulk_events(running, 2500, start)  # some MB in receipts: several chunks each way
    made: dict[str, dict[str, Any]] = {}
    for fmt in ("ndjson", "csv", "receipts"):
        created = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN, body={"format": fmt})
        assert created.status == 201, created.body
        body = created.json()
        extension = "receipts.ndjson" if fmt == "receipts" else fmt
        assert re.fullmatch(rf"{SITE}-\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}\.{extension}", body["name"]), body["name"]
        assert body["manifest"]["format"] == fmt and body["manifest"]["count"] == 2501
        assert body["manifest"]["first_seq"] == 1 and body["manifest"]["last_seq"] == 2501
        assert created.headers["location"] == body["download"] == f"/api/exports/{body['name']}"
        assert body["manifest_download"] == body["download"] + ".manifest.json"
        made[fmt] = body
    window = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN,
                   body={"since": f"{start + timedelta(minutes=10):%Y-%m-%dT%H:%M}Z",
                         "until": f"{start + timedelta(minutes=20):%Y-%m-%dT%H:%M:%S}"}).json()
    assert window["manifest"]["count"] == 10 and window["manifest"]["first_seq"] == 12, window["manifest"]
    assert window["manifest"]["range"]["until"] == f"{start + timedelta(minutes=20):%Y-%m-%dT%H:%M:%S}"

    directory = exports_dir(running)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}  # personal data
    assert len(list(directory.iterdir())) == 8 and not list(directory.glob("*.partial"))

    listed = admin(proxy, "GET", "/api/exports", token=DPO_TOKEN)
    assert listed.status == 200, listed.body
    entries = {e["name"]: e for e in listed.json()["exports"]}
    assert set(entries) == {b["name"] for b in (*made.values(), window)}
    for fmt, body in made.items():
        entry = entries[body["name"]]
        assert entry["complete"] is True
        assert entry["bytes"] == body["bytes"] == (directory / body["name"]).stat().st_size
        assert entry["manifest"]["format"] == fmt and entry["manifest"]["count"] == 2501
        assert entry["manifest"]["sha256"] == body["manifest"]["sha256"] and "notices" not in entry["manifest"]
        assert (entry["download"], entry["manifest_download"]) == (body["download"], body["manifest_download"])

    for fmt, body in made.items():
        into = tmp_path / f"downloaded-{fmt}"
        data = download(running, body["download"], into)
        manifest = download(running, body["manifest_download"], into)
        assert data.name == body["name"] and manifest.name == body["name"] + ".manifest.json"
        assert data.read_bytes() == (directory / body["name"]).read_bytes()
        checked = verify_cli(data)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(f"OK: 2,501 events of site {SITE}, seq 1\N{EN DASH}2501"), checked.stdout
    head = admin(proxy, "HEAD", made["csv"]["download"], token=DPO_TOKEN)
    assert head.status == 200 and head.body == b"" and head.headers["content-type"].startswith("text/csv")
    assert int(head.headers["content-length"]) == made["csv"]["bytes"]
    tampered = tmp_path / "downloaded-ndjson" / made["ndjson"]["name"]
    tampered.write_bytes(tampered.read_bytes().replace(b"bulk-principal-000007", b"bulk-principal-000070", 1))
    assert verify_cli(tampered).returncode == 1

    for bad, code in (({"format": "xml"}, "bad_parameter"), ({"since": "yesterday"}, "bad_parameter"),
                      ({"since": "2025-02-01", "until": "2025-01-01"}, "bad_parameter"),
                      ({"fmt": "csv"}, "bad_parameter"), (b"csv please", "bad_parameter"),
                      (["ndjson"], "bad_parameter")):
        refused = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN, body=bad)
        assert (refused.status, refused.json()["error"]) == (400, code), (bad, refused.body)
    assert admin(proxy, "POST", "/api/sites/nowhere/exports", token=OPS_TOKEN).json()["error"] == "unknown_site"
    assert len(list(directory.iterdir())) == 8

    created_audit = admin(proxy, "GET", "/api/audit?action=export", token=DPO_TOKEN).json()["entries"]
    assert [(e["status"], e["token"], e["detail"].get("format"), e["detail"].get("count"))
            for e in created_audit[:4]] == [(201, "ops", "ndjson", 2501), (201, "ops", "csv", 2501),
                                            (201, "ops", "receipts", 2501), (201, "ops", "ndjson", 10)]
    assert created_audit[3]["detail"]["since"] == f"{start + timedelta(minutes=10):%Y-%m-%dT%H:%M}Z"
    assert created_audit[3]["site"] == SITE
    assert created_audit[3]["detail"]["name"] == window["name"]
    assert [e["status"] for e in created_audit[4:]] == [400] * 6 + [404]
    downloads = admin(proxy, "GET", "/api/audit?action=export_download", token=DPO_TOKEN).json()["entries"]
    assert [e["detail"]["name"] for e in downloads[:6]] == [
        name for b in made.values() for name in (b["name"], b["name"] + ".manifest.json")]
    assert {e["token"] for e in downloads} == {"dpo"}
    assert [e["detail"] for e in admin(proxy, "GET", "/api/audit?action=exports", token=DPO_TOKEN).json()[
        "entries"]] == [{"exports": 4}]


def test_export_names_reach_nothing_else(on_sqlite: Running, tmp_path: Path) -> None:
    run, proxy = on_sqlite, on_sqlite.proxy
    decide(proxy, "accept_all")
    name = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN).json()["name"]
    directory = exports_dir(run)
    secret = (directory.parent / "secrets" / "admin-token").read_bytes()
    (directory / "leak.ndjson").symlink_to(directory.parent / "secrets" / "admin-token")
    (directory / "leak.ndjson.manifest.json").symlink_to(directory / f"{name}.manifest.json")
    (directory / "stale.ndjson.partial").write_bytes(b"half an export\n")
    (directory / "stale.ndjson.partial.manifest.json").write_bytes(b"{}")
    attempts = [
        "..%2Fsecrets%2Fadmin-token", "..%2F..%2Fproxy0.toml", "%2Fetc%2Fpasswd", "%2E%2E", "..", ".",
        "%2e%2e%2fsecrets%2fadmin-token", "..%5Csecrets%5Cadmin-token", "leak.ndjson", "stale.ndjson.partial",
        f"{name}%00", f"{name}%2F..", f"{name}.manifest.json.manifest.json", f"{name.upper()}", "nothing.ndjson",
        "exports%2F" + name, f"..%2Fexports%2F{name}",
    ]
    for attempt in attempts:
        for path in (f"/api/exports/{attempt}", f"/api/exports/{attempt}.manifest.json"):
            got = admin(proxy, "GET", path, token=DPO_TOKEN)
            assert got.status == 404, (path, got.status, got.body[:200])
            assert got.json()["error"] in ("unknown_export", "not_found"), (path, got.body)
            assert secret.strip() not in got.body
        gone = admin(proxy, "DELETE", f"/api/exports/{attempt}", token=OPS_TOKEN)
        assert gone.status == 404, (attempt, gone.body)
    # nothing was removed or reached, and the listing shows only what the API wrote
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [name, f"{name}.manifest.json", "leak.ndjson", "leak.ndjson.manifest.json", "stale.ndjson.partial",
         "stale.ndjson.partial.manifest.json"])
    assert (directory.parent / "secrets" / "admin-token").read_bytes() == secret
    assert [e["name"] for e in admin(proxy, "GET", "/api/exports", token=DPO_TOKEN).json()["exports"]] == [name]
    assert admin(proxy, "GET", f"/api/exports/{name}", token=DPO_TOKEN).status == 200
    # the names asked for are in the audit, for whoever looks for probing
    probed = admin(proxy, "GET", "/api/audit?action=export_download", token=DPO_TOKEN).json()["entries"]
    assert {"..", "leak.ndjson", "nothing.ndjson"} <= {e["detail"]["name"] for e in probed}
    assert {e["status"] for e in probed} == {404, 200}


def test_read_tokens_cannot_make_or_delete_exports_and_delete_removes_both(on_sqlite: Running) -> None:
    run, proxy = on_sqlite, on_sqlite.proxy
    decide(proxy, "reject_all")
    refused = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=DPO_TOKEN, body={"format": "csv"})
    assert refused.status == 403 and refused.json()["error"] == "insufficient_scope"
    directory = exports_dir(run)
    assert not directory.exists() or not list(directory.iterdir())
    name = admin(proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN, body={"format": "csv"}).json()["name"]
    assert admin(proxy, "DELETE", f"/api/exports/{name}", token=DPO_TOKEN).status == 403
    assert sorted(p.name for p in directory.iterdir()) == [name, f"{name}.manifest.json"]
    deleted = admin(proxy, "DELETE", f"/api/exports/{name}", token=OPS_TOKEN)
    assert deleted.status == 200, deleted.body
    assert deleted.json() == {"name": name, "removed": [f"{name}.manifest.json", name]}
    assert list(directory.iterdir()) == []
    assert admin(proxy, "GET", "/api/exports", token=DPO_TOKEN).json() == {"exports": []}
    assert admin(proxy, "GET", f"/api/exports/{name}", token=DPO_TOKEN).status == 404
    assert admin(proxy, "DELETE", f"/api/exports/{name}", token=OPS_TOKEN).status == 404
    # a data file whose manifest never came (a crash in between) is listed as incomplete and can be deleted
    (directory / "kade-20250101T000000Z-00000000.ndjson").write_bytes(b"{}\n")
    (incomplete,) = admin(proxy, "GET", "/api/exports", token=DPO_TOKEN).json()["exports"]
    assert incomplete["complete"] is False and incomplete["manifest"] is None and incomplete["download"] is None
    assert admin(proxy, "GET", f"/api/exports/{incomplete['name']}", token=DPO_TOKEN).status == 404
    assert admin(proxy, "DELETE", f"/api/exports/{incomplete['name']}", token=OPS_TOKEN).status == 200
    assert list(directory.iterdir()) == []
    audited = admin(proxy, "GET", "/api/audit?action=export_delete", token=DPO_TOKEN).json()["entries"]
    assert [(e["token"], e["status"], e["detail"]["name"]) for e in audited] == [
        ("dpo", 403, name), ("ops", 200, name), ("ops", 404, name), ("ops", 200, incomplete["name"])]


def test_an_export_the_audit_cannot_record_is_not_kept(upstream: Upstream, tmp_path: Path) -> None:
    database = tmp_path / "records.db"
    run = start(tmp_path, upstream, f"sqlite:///{database}?busy_timeout=300")
    try:
        for action in ("accept_all", "reject_all"):
            decide(run.proxy, action)
        directory = exports_dir(run)
        with closing(sqlite3.connect(database, isolation_level=None)) as blocker:
            blocker.execute("BEGIN EXCLUSIVE")  # the export can read (WAL), its audit entry cannot be written
            refused = admin(run.proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN)
            assert refused.status == 503, refused.body
            assert refused.json()["error"] == "store_unavailable" and int(refused.headers["retry-after"]) > 0
            assert list(directory.iterdir()) == []  # no half file, no unaudited whole one
            blocker.execute("ROLLBACK")
        made = admin(run.proxy, "POST", f"/api/sites/{SITE}/exports", token=OPS_TOKEN)
        assert made.status == 201 and made.json()["manifest"]["count"] == 2
    finally:
        run.proxy.stop(signal.SIGTERM)


# The failures a real process cannot be made to have on cue: the app in-process, on a store that breaks.


class BreakingReader:
    """A reader that streams events slowly and fails part-way, as a store going down mid-export does."""

    def __init__(self, url: str, fail_after: int | None, delay: float = 0.0) -> None:
        self.store = open_store(url, migrate=False)
        self.fail_after, self.delay = fail_after, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __enter__(self) -> BreakingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    def events(self, *args: Any, **kwargs: Any) -> Iterator[ConsentEvent]:
        for index, event in enumerate(self.store.events(*args, **kwargs)):
            if self.fail_after is not None and index == self.fail_after:
                raise StoreUnavailable("the database went away", retry_after=7)
            time.sleep(self.delay)
            yield event


async def asgi(app: Any, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request straight into the ASGI app."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "scheme": "http", "root_path": "",
             "headers": [(b"host", b"admin"), (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 9090)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start_message = sent[0]
    headers = {k.decode().lower(): v.decode() for k, v in start_message["headers"]}
    return start_message["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def in_process(tmp_path: Path, reader: Callable[[], Any]) -> tuple[Any, RecordWriter, str]:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    keys = generate_keys(tmp_path / "keys")
    with open_store(url) as store:
        notice = NoticeVersion.create(SITE, 1, notice_content())
        store.put_notice(notice)
        moment = datetime(2025, 1, 1, tzinfo=UTC)
        store.append([ConsentEvent.new(site=SITE, principal=f"p-{i:06d}", notice_id=notice.id, event_type="refused",
                                       method="reject_all", choices={"necessary": True},
                                       expires_at=moment + timedelta(days=365), time=moment + timedelta(seconds=i))
                      for i in range(3000)])
    writer = RecordWriter.for_url(url)
    context = AdminContext(tmp_path / "data", (AdminToken("ops", "full", hashlib.sha256(OPS_TOKEN.encode()).digest()),),
                           (SITE,), f"file:{keys['export_key']}")
    app = build_admin_app(lambda: True, dict, lambda: context, AdminStore(writer, reader))
    return app, writer, url


def test_a_store_failure_mid_export_leaves_no_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    app, writer, _ = in_process(tmp_path, lambda: BreakingReader(url, fail_after=1500))

    async def scenario() -> None:
        try:
            status, headers, body = await asgi(app, "POST", f"/api/sites/{SITE}/exports", OPS_TOKEN,
                                               b'{"format": "receipts"}')
            assert status == 503 and headers["retry-after"] == "7", body
            assert json.loads(body)["error"] == "store_unavailable"
        finally:
            await writer.close()

    asyncio.run(scenario())
    assert list((tmp_path / "data" / "exports").iterdir()) == []
    with open_store(url) as store:
        assert store.audit() == []  # like every 503: the store could not be written


def test_an_export_whose_client_left_is_stopped_and_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    app, writer, _ = in_process(tmp_path, lambda: BreakingReader(url, fail_after=None, delay=0.002))
    directory = tmp_path / "data" / "exports"

    async def scenario() -> None:
        try:
            request = asyncio.ensure_future(asgi(app, "POST", f"/api/sites/{SITE}/exports", OPS_TOKEN))
            deadline = time.monotonic() + 10
            while not list(directory.glob("*.partial")):  # the export is under way
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            while list(directory.iterdir()):  # the thread notices at its next record and cleans up
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        finally:
            await writer.close()

    asyncio.run(scenario())
    assert list(directory.iterdir()) == []
