"""Exports, offline verification and retention purges on real stores: SQLite files and PostgreSQL.

The commands run as an operator runs them (`python -m consentproxy …` in a
subprocess); the many-tampering loops call `verify_export` in-process, which
is what the `verify` command prints. Tampering is done on the files, the
store is tampered with plain SQL.
"""

from __future__ import annotations

import hashlib
import os
import pty
import secrets
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Upstream, launch_proxy, site_toml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_support import pg_schema
from test_consent_api import call
from test_records import notice_content, sql

from consentproxy.config.loader import load_config
from consentproxy.config.secrets import EXPORT_KEY_FILE, generate_keys
from consentproxy.records import ConsentEvent, NoticeVersion, load_private_key_file, open_store, verify_chain
from consentproxy.records.checkpoint import public_key_text
from consentproxy.records.export import (
    CSV_COLUMNS,
    expired_count,
    export_record,
    parse_time,
    purge_expired,
    verify_export,
)
from consentproxy.records.manifest import manifest_bytes, sign_manifest

ROOT = Path(__file__).resolve().parent.parent
SITE = "kade"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
FORMATS = ("ndjson", "csv", "receipts")


@dataclass
class Setup:
    tmp: Path
    url: str
    config: Path
    key: Ed25519PrivateKey
    notice: NoticeVersion

    def store(self) -> Any:
        return open_store(self.url)

    def fill(self, times: list[datetime], **fields: Any) -> list[ConsentEvent]:
        """Events at these times (in this order), in batches as a busy proxy writes them; returns them stored."""
        stored: list[ConsentEvent] = []
        with self.store() as store:
            store.put_notice(self.notice)
            batch = []
            for index, moment in enumerate(times):
                choices = {"necessary": True, "preferences": index % 3 == 0, "statistics": index % 2 == 0,
                           "marketing": False}
                batch.append(ConsentEvent.new(
                    site=SITE, principal=secrets.token_urlsafe(16), notice_id=self.notice.id,
                    event_type="given" if any(v for k, v in choices.items() if k != "necessary") else "refused",
                    method="save_selection", choices=choices, expires_at=moment + timedelta(days=365),
                    ua="Firefox 133", ip="81.2.69.0", time=moment, idempotency_key=secrets.token_hex(8), **fields))
                if len(batch) == 1000:
                    stored += store.append(batch)
                    batch = []
            stored += store.append(batch)
        return stored

    def out(self, name: str) -> Path:
        return self.tmp / name


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    def make(url: str) -> Setup:
        keys = generate_keys(tmp_path / "keys")
        config = tmp_path / "consentproxy.toml"
        config.write_text(
            f'[server]\nlisten = ["127.0.0.1:18080"]\ndata_dir = "{tmp_path / "data"}"\n\n'
            f'[store]\nurl = "{url}"\n\n[secrets]\nexport_key = "file:{keys["export_key"]}"\n\n'
            + site_toml(SITE, "http://127.0.0.1:9", hosts=("kade.example",))
            + f'[sites.{SITE}.consent]\njurisdiction = "NL"\n')
        notice = NoticeVersion.create(SITE, 1, notice_content(
            purposes=[{"id": "necessary", "legal_basis": "strictly-necessary-exemption"},
                      {"id": "statistics", "legal_basis": "consent", "label": {"en": "Statistics", "nl": "Statistiek"},
                       "services": ["Matomo"]},
                      {"id": "preferences", "legal_basis": "consent"}, {"id": "marketing", "legal_basis": "consent"}],
            controller={"name": "Kade BV", "address": "Kade 1, Utrecht", "contact": "privacy@kade.example",
                        "privacy_url": {"en": "/privacy", "nl": "/privacy-nl"}},
            hosts=["kade.example"]))
        return Setup(tmp_path, url, config, load_private_key_file(keys["export_key"]), notice)

    if request.param == "sqlite":
        yield make(f"sqlite:///{tmp_path / 'records.db'}")
        return
    with pg_schema("test_export") as url:
        yield make(url)


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentproxy", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def export(setup: Setup, out: Path, *extra: str, fmt: str = "ndjson") -> subprocess.CompletedProcess[str]:
    done = cli("export", "-c", setup.config, "--site", SITE, "--format", fmt, "-o", out, *extra)
    return done


def manifest_of(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(out.with_name(out.name + ".manifest.json").read_bytes())
    return result


def hours(count: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(hours=index) for index in range(count)]


def record_line(out: Path, seq: int, fmt: str) -> int:
    """The line index of `seq` in an export starting at seq 1 (CSV has its header first)."""
    return seq if fmt == "csv" else seq - 1


# -- export and verify, every format -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_verify_every_format(setup: Setup, fmt: str) -> None:
    events = setup.fill(hours(30))
    with setup.store() as store:
        erased = store.erase(SITE, events[4].principal)  # an erased record still verifies
        assert erased == 1
        extra = store.append([ConsentEvent.new(  # a category no column is named after: choices_other
            site=SITE, principal="p-extra", notice_id=setup.notice.id, event_type="given", method="save_selection",
            choices={"necessary": True, "video": True}, expires_at=T0 + timedelta(days=9), time=T0 + timedelta(days=2),
            country="NL")])
        stored = list(store.events(SITE))
    out = setup.out(f"export.{fmt}")
    done = export(setup, out, "--site", "kade.example", fmt=fmt)  # a host name finds the site too
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"exported 31 events of site kade (seq 1\N{EN DASH}31) as {fmt} to {out}")
    assert done.stderr == ""  # not a terminal: no progress, only the summary line
    assert not out.with_name(out.name + ".partial").exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # personal data

    manifest = manifest_of(out)
    assert manifest["format"] == fmt and manifest["site"] == SITE and manifest["count"] == 31
    assert (manifest["first_seq"], manifest["last_seq"]) == (1, 31)
    assert manifest["first_prev_hash"] == "0" * 64 and manifest["last_hash"] == extra[0].hash
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["notices"] == {setup.notice.id: setup.notice.to_dict()}  # full content: self-contained
    assert manifest["public_key"] == public_key_text(setup.key.public_key())
    checkpoint = manifest["checkpoint"]
    assert (checkpoint["seq"], checkpoint["head"], checkpoint["kind"]) == (31, extra[0].hash, "head")
    with setup.store() as store:  # taken under the store's lock, and kept: the log is pinned there from now on
        assert any(cp.seq == 31 and cp.signature == checkpoint["signature"] for cp in store.checkpoints(SITE))

    lines = out.read_bytes().splitlines()
    if fmt == "ndjson":
        assert [orjson.loads(line) for line in lines] == [export_record(e) for e in stored]
        assert all("idempotency_key" not in orjson.loads(line) for line in lines)
        assert orjson.loads(lines[4])["principal"] is None and orjson.loads(lines[4])["salt"] is None
    elif fmt == "csv":
        import csv

        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 31
        assert (rows[0]["choice_necessary"], rows[0]["choice_statistics"], rows[1]["choice_statistics"]) == (
            "true", "true", "false")
        assert rows[30]["choice_marketing"] == "" and orjson.loads(rows[30]["choices_other"]) == {"video": True}
        assert rows[4]["principal"] == "" and rows[4]["principal_c"] == stored[4].commitments["principal"]
        assert [r["hash"] for r in rows] == [e.hash for e in stored]
    else:
        receipts = [orjson.loads(line) for line in lines]
        first = receipts[0]
        assert first["version"] == "KI-CR-v1.1.0" and first["jurisdiction"] == "NL"
        assert first["consentReceiptID"] == stored[0].record_id and first["piiPrincipalId"] == stored[0].principal
        assert first["consentTimestamp"] == int(T0.timestamp())
        assert first["piiControllers"][0]["piiController"] == "Kade BV"
        assert first["policyUrl"] == "https://kade.example/privacy"
        purposes = first["services"][0]["purposes"]
        assert [p["purposeCategory"] for p in purposes] == [["necessary"], ["statistics"], ["preferences"]]
        assert purposes[1]["purpose"] == "Statistics" and purposes[1]["consentType"] == "EXPLICIT"
        assert purposes[1]["thirdPartyName"] == "Matomo" and purposes[0]["consentType"] == "NOT-REQUIRED"
        assert first["consentproxy"]["hash"] == stored[0].hash
        assert first["consentproxy"]["notice"]["text_sha256"] == setup.notice.text_digests
        assert receipts[4]["piiPrincipalId"] == "(erased)"

    verified = cli("verify", out)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[0] == (
        "OK: 31 events of site kade, seq 1\N{EN DASH}31, chain and signatures verify")
    assert f"signed by key {manifest['key_id']}" in verified.stdout
    # naming the manifest instead of the export works too
    assert cli("verify", out.with_name(out.name + ".manifest.json")).returncode == 0


def test_time_ranges_export_a_contiguous_verifiable_piece(setup: Setup) -> None:
    days = [T0 + timedelta(days=day, hours=hour) for day in range(10) for hour in (1, 9, 17)]
    events = setup.fill(days)
    out = setup.out("march.ndjson")
    done = export(setup, out, "--since", "2025-03-03", "--until", "2025-03-05")  # a date alone: all of that day
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(out)
    assert (manifest["count"], manifest["first_seq"], manifest["last_seq"]) == (9, 7, 15)
    assert manifest["range"] == {"since": "2025-03-03", "until": "2025-03-05", "since_utc": "2025-03-03T00:00:00.000Z",
                                 "until_utc": "2025-03-06T00:00:00.000Z"}
    assert manifest["first_prev_hash"] == events[5].hash and manifest["last_hash"] == events[14].hash
    assert manifest["checkpoint"]["seq"] == 15  # signed at the range's end, not at the head
    assert [orjson.loads(line)["seq"] for line in out.read_bytes().splitlines()] == list(range(7, 16))
    verified = cli("verify", out)
    assert verified.returncode == 0 and "seq 7\N{EN DASH}15" in verified.stdout, verified.stdout

    # with an offset, and a date-time --until is exclusive: 01:00+01:00 is midnight UTC
    offset = setup.out("offset.ndjson")
    assert export(setup, offset, "--since", "2025-03-03T01:00+01:00", "--until", "2025-03-06T00:00").returncode == 0
    assert offset.read_bytes() == out.read_bytes()

    # consecutive ranges tile the log: no gap, no overlap, each verifies on its own
    before, after = setup.out("before.csv"), setup.out("after.csv")
    assert export(setup, before, "--until", "2025-03-04T12:00:00Z", fmt="csv").returncode == 0
    assert export(setup, after, "--since", "2025-03-04T12:00:00Z", fmt="csv").returncode == 0
    first, second = manifest_of(before), manifest_of(after)
    assert first["count"] + second["count"] == 30 and second["first_seq"] == first["last_seq"] + 1
    assert second["first_prev_hash"] == first["last_hash"]
    assert cli("verify", before).returncode == 0 and cli("verify", after).returncode == 0

    empty = setup.out("empty.receipts")
    done = export(setup, empty, "--since", "2030-01-01", fmt="receipts")
    assert done.returncode == 0 and "exported 0 events" in done.stdout
    verified = cli("verify", empty)
    assert verified.returncode == 0 and verified.stdout.startswith("OK: 0 events"), verified.stdout

    assert export(setup, setup.out("x"), "--since", "2025-03-05", "--until", "2025-03-01").returncode == 2
    wrong = export(setup, setup.out("x"), "--since", "last tuesday")
    assert wrong.returncode == 2 and "ISO 8601" in wrong.stderr
    assert not setup.out("x").exists()


def test_parse_time_reads_dates_and_offsets() -> None:
    assert parse_time("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_time("2025-01-31", end_of_day=True) == datetime(2025, 2, 1, tzinfo=UTC)
    assert parse_time("2025-01-31T12:30") == datetime(2025, 1, 31, 12, 30, tzinfo=UTC)  # UTC without offset
    assert parse_time("2025-01-31T12:30:00Z") == datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
    assert parse_time("2025-01-31T12:30:00+02:00") == datetime(2025, 1, 31, 10, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("31/01/2025")


# -- tampering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_flipping_any_byte_of_a_record_names_it(setup: Setup, fmt: str) -> None:
    setup.fill(hours(12))
    out = setup.out(f"tamper.{fmt}")
    assert export(setup, out, fmt=fmt).returncode == 0
    original = out.read_bytes()
    lines = original.split(b"\n")
    index = record_line(out, 7, fmt)
    start = sum(len(line) + 1 for line in lines[:index])
    end = start + len(lines[index]) + 1  # its line break too
    named: dict[int | None, int] = {}
    for position in range(start, end):
        changed = bytearray(original)
        changed[position] ^= 0x01
        out.write_bytes(bytes(changed))
        report = verify_export(out)
        assert report.status == 1, (position - start, report.verdict)
        named[report.bad_seq] = named.get(report.bad_seq, 0) + 1
    assert named == {7: end - start}, named

    changed = bytearray(original)
    changed[start + len(lines[index]) // 2] ^= 0x01
    out.write_bytes(bytes(changed))
    done = cli("verify", out)
    assert done.returncode == 1 and done.stdout.startswith("BAD: record seq 7"), done.stdout
    out.write_bytes(original)
    assert cli("verify", out).returncode == 0


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_deleted_moved_duplicated_or_cut_records_are_named(setup: Setup, fmt: str) -> None:
    setup.fill(hours(10))
    out = setup.out(f"cut.{fmt}")
    assert export(setup, out, fmt=fmt).returncode == 0
    original = out.read_bytes()
    lines = original.splitlines(keepends=True)
    at = record_line(out, 5, fmt)

    def verdict(changed: list[bytes]) -> str:
        out.write_bytes(b"".join(changed))
        done = cli("verify", out)
        assert done.returncode == 1, done.stdout
        return done.stdout.splitlines()[0]

    assert verdict(lines[:at] + lines[at + 1:]).startswith("BAD: record seq 5: the record is missing")
    assert verdict([*lines[:at], lines[at + 1], lines[at], *lines[at + 2:]]).startswith("BAD: record seq 5:")
    assert verdict([*lines[:at + 1], lines[at], *lines[at + 1:]]).startswith("BAD: record seq 6 (record_id")
    assert verdict(lines[:-1]).startswith("BAD: record seq 10: the record is missing")
    assert verdict([*lines, lines[-1]]).startswith("BAD: the file continues after seq 10")
    first = 1 if fmt == "csv" else 0
    assert verdict(lines[:first] + lines[first + 1:]).startswith("BAD: record seq 1: the record is missing")
    if fmt == "csv":
        assert verdict([lines[0].replace(b"hash", b"hask"), *lines[1:]]).startswith("BAD: the CSV header")
    out.write_bytes(original)
    assert cli("verify", out).returncode == 0


def test_an_edited_manifest_fails_its_signature(setup: Setup) -> None:
    setup.fill(hours(5))
    out = setup.out("signed.ndjson")
    assert export(setup, out).returncode == 0
    path = out.with_name(out.name + ".manifest.json")
    original = path.read_bytes()
    manifest = orjson.loads(original)

    for edit in ({"count": 4, "last_seq": 4}, {"site": "other"}, {"first_prev_hash": "1" * 64},
                 {"notices": {setup.notice.id: {**manifest["notices"][setup.notice.id], "revision": 2}}}):
        path.write_bytes(manifest_bytes({**manifest, **edit}))
        done = cli("verify", out)
        assert done.returncode == 1, (edit, done.stdout)
        assert done.stdout.startswith("BAD: the manifest's signature does not verify"), done.stdout
    path.write_bytes(original.replace(b'"count": 5', b'"count": 6'))
    assert cli("verify", out).returncode == 1

    # re-signed by someone else's key: consistent, but not the operator's key, which can be pinned
    stranger = Ed25519PrivateKey.generate()
    path.write_bytes(manifest_bytes(sign_manifest({k: v for k, v in manifest.items() if k != "signature"},
                                                  stranger)))
    done = cli("verify", out)
    assert done.returncode == 1 and "checkpoint at the last seq" in done.stdout  # its checkpoint is ours
    path.write_bytes(original)
    # "=": a base64url key may start with "-", which argparse would take for an option (1 run in 64 failed so)
    pinned = cli("verify", out, f"--public-key={public_key_text(stranger.public_key())}")
    assert pinned.returncode == 1 and "not by the expected key" in pinned.stdout
    assert cli("verify", out, f"--public-key={public_key_text(setup.key.public_key())}").returncode == 0

    path.write_bytes(b"{ not json")
    assert cli("verify", out).returncode == 2
    path.unlink()
    missing = cli("verify", out)
    assert missing.returncode == 2 and "UNREADABLE" in missing.stdout
    path.write_bytes(original)
    out.unlink()
    assert cli("verify", out).returncode == 2


def test_a_failed_export_leaves_no_file_posing_as_complete(setup: Setup) -> None:
    setup.fill(hours(8))
    kept = setup.out("kept.ndjson")
    assert export(setup, kept).returncode == 0
    before = kept.read_bytes()
    sql(setup.url, "UPDATE events SET choices = ? WHERE site = ? AND seq = 3",
        ('{"marketing":true,"necessary":true}', SITE))
    fresh = setup.out("fresh.ndjson")
    for out in (fresh, kept):
        done = export(setup, out)
        assert done.returncode == 1
        assert "does not verify at seq 3" in done.stderr and "nothing exported" in done.stderr, done.stderr
        assert not out.with_name(out.name + ".partial").exists()
    assert not fresh.exists() and not fresh.with_name(fresh.name + ".manifest.json").exists()
    assert kept.read_bytes() == before and cli("verify", kept).returncode == 0  # the earlier pair is untouched


def test_export_refuses_a_log_cut_or_rewritten_outside_a_purge(setup: Setup) -> None:
    setup.fill(hours(6))
    with setup.store() as store:
        store.add_checkpoint(SITE, setup.key)  # pins seq 6
    sql(setup.url, "UPDATE events SET choices = ? WHERE site = ? AND seq = 6", ('{"necessary":true}', SITE))
    rewritten = export(setup, setup.out("rewritten.ndjson"))
    assert rewritten.returncode == 1 and "at seq 6" in rewritten.stderr, rewritten.stderr
    sql(setup.url, "DELETE FROM events WHERE site = ? AND seq <= 2", (SITE,))
    cut = export(setup, setup.out("cut.ndjson"), "--until", "2025-03-01T04:00:00Z")
    assert cut.returncode == 1 and "starts at seq 3 without a cut checkpoint" in cut.stderr, cut.stderr
    # a time range may start anywhere: what it holds still verifies on its own
    ranged = setup.out("ranged.ndjson")
    assert export(setup, ranged, "--since", "2025-03-01T03:00:00Z", "--until", "2025-03-01T05:00:00Z").returncode == 0
    assert manifest_of(ranged)["count"] == 2 and cli("verify", ranged).returncode == 0
    assert not setup.out("rewritten.ndjson").exists() and not setup.out("cut.ndjson").exists()


def test_export_refuses_an_edited_notice_version(setup: Setup) -> None:
    setup.fill(hours(3))
    content = dict(setup.notice.content) | {"jurisdiction": "US"}
    sql(setup.url, "UPDATE notices SET content = ? WHERE id = ?",
        (orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode(), setup.notice.id))
    done = export(setup, setup.out("notice.receipts"), fmt="receipts")
    assert done.returncode == 1 and f"notice version {setup.notice.id}" in done.stderr, done.stderr
    assert not setup.out("notice.receipts").exists()


def test_the_file_digest_catches_what_parses_to_the_same_records(setup: Setup) -> None:
    setup.fill(hours(4))
    out = setup.out("quoted.csv")
    assert export(setup, out, fmt="csv").returncode == 0
    original = out.read_bytes()
    out.write_bytes(original.replace(b",Firefox 133,", b',"Firefox 133",', 1))  # the same cells, other bytes
    done = cli("verify", out)
    assert done.returncode == 1 and done.stdout.startswith("BAD: the file's SHA-256 differs"), done.stdout


# -- retention -----------------------------------------------------------------------------------


def test_purge_then_export_verifies_from_the_cut(setup: Setup) -> None:
    now = datetime.now(UTC)
    old = [now - timedelta(days=800, hours=5 - index) for index in range(5)]  # default retention: 365 + 365 days
    setup.fill(old + [now - timedelta(days=10, hours=index) for index in range(4)])

    dry = cli("purge", "-c", setup.config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("kade: 5 events recorded before") and "retention 730 days" in dry.stdout
    assert "dry run, nothing removed" in dry.stdout
    with setup.store() as store:
        assert store.count(SITE) == 9 and not [cp for cp in store.checkpoints(SITE) if cp.kind == "cut"]

    done = cli("purge", "-c", setup.config, "--site", "kade.example")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kade: removed 5 events recorded before"), done.stdout
    with setup.store() as store:
        assert store.count(SITE) == 4
        assert verify_chain(store.events(SITE), store.checkpoints(SITE), setup.key.public_key(), SITE).ok

    for fmt in FORMATS:
        out = setup.out(f"after-purge.{fmt}")
        assert export(setup, out, fmt=fmt).returncode == 0
        manifest = manifest_of(out)
        assert (manifest["first_seq"], manifest["last_seq"]) == (6, 9)
        assert manifest["cut"]["kind"] == "cut" and manifest["cut"]["seq"] == 5
        assert manifest["cut"]["head"] == manifest["first_prev_hash"]
        verified = cli("verify", out)
        assert verified.returncode == 0, verified.stdout
        assert "continues from the purge's cut checkpoint at seq 5" in verified.stdout

    # without the cut, an export starting past seq 1 is no proof that nothing was deleted
    path = setup.out("after-purge.ndjson.manifest.json")
    manifest = orjson.loads(path.read_bytes())
    path.write_bytes(manifest_bytes(sign_manifest(
        {k: v for k, v in manifest.items() if k not in ("signature", "cut")} | {"cut": None}, setup.key)))
    unproven = cli("verify", setup.out("after-purge.ndjson"))
    assert unproven.returncode == 1 and "without the purge's signed cut checkpoint" in unproven.stdout

    again = cli("purge", "-c", setup.config)
    assert again.returncode == 0 and "kade: removed 0 events" in again.stdout


def test_purge_expired_follows_the_sites_retention(setup: Setup) -> None:
    now = datetime.now(UTC)
    setup.fill([now - timedelta(days=days) for days in (40, 35, 31, 20, 2)])
    text = setup.config.read_text() + "record_retention = \"30d\"\n"
    setup.config.write_text(text)
    site = load_config(setup.config).sites[0]
    assert site.consent.retention_days == 30
    with setup.store() as store:
        assert expired_count(store, SITE, now - timedelta(days=30)) == 3
        assert store.count(SITE) == 5
        assert purge_expired(store, site, setup.key, now) == 3
        assert purge_expired(store, site, setup.key, now) == 0
        assert [e.seq for e in store.events(SITE)] == [4, 5]
        assert purge_expired(store, site, setup.key, now + timedelta(days=15)) == 1
    out = setup.out("short.csv")
    assert export(setup, out, fmt="csv").returncode == 0
    assert cli("verify", out).returncode == 0


# -- scale and terminals ---------------------------------------------------------------------------


def run_on_terminal(*args: str | Path) -> tuple[int, str, str]:
    """Run the CLI with its standard error on a pseudo-terminal; (exit status, stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "consentproxy", *map(str, args)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = process.communicate(timeout=300)
    os.close(leader)
    return process.returncode, stdout, shown.decode()


def test_a_large_export_streams_with_progress_on_a_terminal(setup: Setup) -> None:
    count = 20_000
    setup.fill(hours(count, T0 - timedelta(days=1000)))
    out = setup.out("large.ndjson")
    status, stdout, terminal = run_on_terminal("export", "-c", setup.config, "--site", SITE, "-o", out)
    assert status == 0, terminal
    assert stdout.startswith(f"exported {count:,} events of site kade (seq 1\N{EN DASH}{count})")
    assert "\r" in terminal and f"/ {count:,} events" in terminal and f"{count:,} / {count:,} events (100%)" in terminal
    with out.open("rb") as handle:
        assert sum(1 for _ in handle) == count
    verified = cli("verify", out)
    assert verified.returncode == 0
    assert verified.stdout.startswith(f"OK: {count:,} events of site kade, seq 1\N{EN DASH}{count},")

    csv_out = setup.out("large.csv")
    done = export(setup, csv_out, "--since", (T0 - timedelta(days=500)).isoformat(), fmt="csv")
    assert done.returncode == 0 and done.stderr == ""
    assert manifest_of(csv_out)["count"] == count - 500 * 24 and cli("verify", csv_out).returncode == 0


def test_site_and_key_problems_are_usage_errors(setup: Setup, tmp_path: Path) -> None:
    setup.fill(hours(2))
    unknown = cli("export", "-c", setup.config, "--site", "nowhere.example", "-o", tmp_path / "x")
    assert unknown.returncode == 2 and "no site named" in unknown.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text(setup.config.read_text().replace('export_key = "file:', 'export_key = "file:/nonexistent'))
    done = cli("export", "-c", broken, "--site", SITE, "-o", tmp_path / "x")
    assert done.returncode == 2 and "export_key" in done.stderr
    assert cli("purge", "-c", broken).returncode == 2
    assert cli("purge", "-c", broken, "--dry-run").returncode == 0  # counting needs no key
    assert not (tmp_path / "x").exists()


# -- through a real proxy --------------------------------------------------------------------------


def test_decisions_through_the_proxy_export_and_verify(upstream: Upstream, tmp_path: Path) -> None:
    """The default setup: SQLite in the data directory and the export key generated beside it."""
    proxy = launch_proxy(tmp_path, 0, site_toml("kade", upstream.url))
    try:
        first = call(proxy, "POST", body={"action": "save_selection", "choices": {"statistics": True}})
        call(proxy, "POST", body={"action": "withdraw"}, cookie=f"cp_consent={first.cookie_value()}")
        call(proxy, "POST", body={"action": "reject_all"})
        out = tmp_path / "kade.receipts"
        done = cli("export", "-c", proxy.config_path, "--site", "127.0.0.1", "--format", "receipts", "-o", out)
        assert done.returncode == 0, done.stderr
    finally:
        proxy.stop(signal.SIGTERM)
    receipts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["consentproxy"]["event_type"] for r in receipts] == ["given", "withdrawn", "refused"]
    assert receipts[0]["piiPrincipalId"] == first.json()["principal"]
    assert receipts[0]["piiControllers"][0]["piiController"] == "kade" and receipts[0]["jurisdiction"] == "NL"
    assert [p["purposeCategory"][0] for p in receipts[0]["services"][0]["purposes"]] == ["necessary", "statistics"]
    assert receipts[0]["policyUrl"] == "https://127.0.0.1/privacy"
    verified = cli("verify", out)
    assert verified.returncode == 0 and verified.stdout.startswith("OK: 3 events of site kade"), verified.stdout
    generated = tmp_path / "data0" / "secrets" / EXPORT_KEY_FILE  # the key `serve` generated signed it
    assert public_key_text(load_private_key_file(generated).public_key()) in verified.stdout
