"""Exports of a site's consent log, their offline verification, and retention purges.

An export is one file, one record per line so it streams in and out, and a
signed manifest beside it (`manifest.py`). Formats:

- `ndjson`: each event as stored (`ConsentEvent.to_dict()`, canonical JSON)
  but without the idempotency key, a retry token that proves nothing and that
  an erasure treats as personal data;
- `csv`: the same fields flat for spreadsheets: one column per consent
  category (`choice_<id>`: true, false or empty when the event did not carry
  it; `choices_other` holds any other category as JSON), the commitments as
  `<field>_c`, the chain fields last — still everything needed to verify;
- `receipts`: one Kantara-style consent receipt per event (`receipts.py`).

Range: `[since, until)` is taken as a contiguous run of seqs, from the first
event recorded at or after `since` up to (not including) the first event
recorded at or after `until`. With one clock that is exactly the events of
the window; when instances' clocks differ a little an event near a boundary
may fall on the other side, but consecutive ranges still tile the log with no
gap or overlap, and every export is a contiguous piece of the chain that
verifies on its own.

The export checks what it streams (every hash and link, the stored signed
checkpoints in range, the notices against their ids) and refuses to sign a
log that does not verify. `verify_export` needs only the two files:

- all formats: the manifest's Ed25519 signature (and, if pinned, that it is the
  expected key), the file's SHA-256 and size, count and seq range, every
  record's hash and its link to the one before, starting from the manifest's
  `first_prev_hash` (genesis at seq 1, else the purge's signed cut checkpoint
  when the export is not a time range), the commitments of raw personal
  values still present, the signed checkpoint at the last seq, and that each
  line is byte for byte the rendering of its record (CSV: cell for cell; a
  change of quoting alone is left to the file digest) — so an edit anywhere
  in a line, chained field or not, is named by its seq;
- receipts: as above (each receipt embeds its record); the Kantara fields are
  rebuilt from that record and the notice in the manifest and must be identical.

What no export can prove: that the store recorded every decision (only that
none of those it holds were changed, removed or reordered), anything about
records outside the range (a time range starts from a `first_prev_hash` that
only the manifest's signature vouches for), or who holds the signing key —
compare the manifest's key id with the operator's key, or pin it with
`verify --public-key`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentproxy import __version__
from consentproxy.config.model import CATEGORY_IDS, SiteConfig
from consentproxy.records.chain import GENESIS, Verdict, verify_chain
from consentproxy.records.checkpoint import Checkpoint, checkpoint_problem, key_id, load_public_key, sign_checkpoint
from consentproxy.records.manifest import (
    MANIFEST_TYPE,
    MANIFEST_VERSION,
    ManifestUnreadable,
    manifest_bytes,
    manifest_path,
    read_manifest,
    sign_manifest,
    signature_problem,
    structure_problem,
    write_atomically,
)
from consentproxy.records.model import PERSONAL_FIELDS, ConsentEvent, NoticeVersion, canonical, iso_ms, utc_ms
from consentproxy.records.receipts import receipt, recipient_line
from consentproxy.records.store import RecordStore, StoreUnavailable

FORMATS: tuple[str, ...] = ("ndjson", "csv", "receipts")
CHOICE_PREFIX = "choice_"
CSV_COLUMNS: tuple[str, ...] = (
    "seq", "time", "record_id", "event_type", "method", *(CHOICE_PREFIX + c for c in CATEGORY_IDS),
    "choices_other", "expires_at", "notice_id", "regime", "principal", "ip", "ua", "country", "site",
    "schema_version", "salt", *(f"{name}_c" for name in PERSONAL_FIELDS), "prev_hash", "hash",
)
_NULLABLE = frozenset({"principal", "ip", "ua", "country", "regime", "salt", *(f"{n}_c" for n in PERSONAL_FIELDS)})


class ExportError(Exception):
    """The export cannot be made faithfully (e.g. the stored log does not verify); nothing was written."""


# -- rendering ----------------------------------------------------------------------------------


def export_record(event: ConsentEvent) -> dict[str, Any]:
    """The event as exports carry it: everything stored except the idempotency key."""
    record = event.to_dict()
    del record["idempotency_key"]
    return record


def ndjson_line(event: ConsentEvent) -> bytes:
    return canonical(export_record(event)) + b"\n"


def receipt_line(event: ConsentEvent, notice: NoticeVersion | None) -> bytes:
    return canonical(receipt(event, notice, export_record(event))) + b"\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_cells(event: ConsentEvent, columns: tuple[str, ...] = CSV_COLUMNS) -> list[str]:
    record = export_record(event)
    known = {c[len(CHOICE_PREFIX):] for c in columns if c.startswith(CHOICE_PREFIX)}
    other = {name: value for name, value in event.choices.items() if name not in known}
    values = {**record, "choices_other": canonical(other).decode("utf-8") if other else "",
              **{f"{name}_c": event.commitments.get(name) for name in PERSONAL_FIELDS}}
    return [_cell(event.choices.get(c[len(CHOICE_PREFIX):]) if c.startswith(CHOICE_PREFIX) else values[c])
            for c in columns]


def csv_event(cells: list[str], columns: tuple[str, ...] = CSV_COLUMNS) -> ConsentEvent:
    """The event a CSV row holds; ValueError/KeyError when it does not hold one."""
    row = dict(zip(columns, cells, strict=True))
    choices: dict[str, bool] = {}
    for column in columns:
        if column.startswith(CHOICE_PREFIX) and row[column]:
            if row[column] not in ("true", "false"):
                raise ValueError(f"{column} is neither true, false nor empty")
            choices[column[len(CHOICE_PREFIX):]] = row[column] == "true"
    if row["choices_other"]:
        other = orjson.loads(row["choices_other"])
        if not isinstance(other, dict):
            raise ValueError("choices_other is not a JSON object")
        choices.update(other)
    data: dict[str, Any] = {name: (row[name] or None) if name in _NULLABLE else row[name] for name in columns}
    data["choices"] = choices
    data["commitments"] = {name: data[f"{name}_c"] for name in PERSONAL_FIELDS}
    return ConsentEvent.from_dict(data)


class _CsvRenderer:
    """One CSV row to bytes, RFC 4180 style (CRLF), as the csv module writes it."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def __call__(self, cells: Iterable[str]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue().encode("utf-8")


# -- ranges and times ---------------------------------------------------------------------------


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time, UTC unless it says otherwise.

    A date alone means its start, or with `end_of_day` (for `--until`) the
    start of the next day, so `--until 2025-01-31` includes all of that day.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time "
                         "(e.g. 2025-01-31, 2025-01-31T12:00:00Z or 2025-01-31T13:00+01:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _first_seq_at(store: RecordStore, site: str, moment: datetime | None) -> int | None:
    """The first seq recorded at or after `moment` (the very first with None); None when there is none."""
    first = next(iter(store.events(site, since=moment)), None)
    return None if first is None else first.seq


def _bounds(store: RecordStore, site: str, since: datetime | None, until: datetime | None,
            key: Ed25519PrivateKey) -> tuple[int, int, Checkpoint | None]:
    """(first seq, last seq, the checkpoint taken at the last seq); last < first when the range is empty.

    Without an `until` that cuts the log, the export ends at the head, signed
    now under the store's head lock; events appended meanwhile are not in it.
    """
    until_seq = None if until is None else _first_seq_at(store, site, until)
    end_cp: Checkpoint | None = None
    if until_seq is None:
        try:
            end_cp = store.add_checkpoint(site, key)
            end = end_cp.seq if end_cp is not None else 0
        except StoreUnavailable:  # a read-only store: end at the head as read, sign it ourselves
            end = store.head(site)[0]
        if until is not None:  # an event at or after `until` may have come in before the checkpoint
            until_seq = _first_seq_at(store, site, until)
            if until_seq is not None and until_seq <= end:
                end_cp, end = None, until_seq - 1
    else:
        end = until_seq - 1
    start = _first_seq_at(store, site, since)
    if start is None:
        return end + 1, end, None
    return start, end, end_cp


# -- progress -----------------------------------------------------------------------------------


class Progress:
    """A one-line counter on a terminal; silent when the stream is not one (logs want no carriage returns)."""

    def __init__(self, stream: IO[str] | None, label: str, interval: float = 0.2) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._label = label
        self._interval = interval
        self._total = 0
        self._began = self._shown = 0.0

    def start(self, total: int) -> None:
        self._total = total
        self._began = time.monotonic()
        self.update(0, force=True)

    def update(self, done: int, force: bool = False) -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        if not force and now - self._shown < self._interval:
            return
        self._shown = now
        elapsed = now - self._began
        rate = f", {done / elapsed:,.0f}/s" if elapsed > 0.05 else ""
        share = f" ({100 * done // self._total}%)" if self._total else ""
        self._stream.write(f"\r{self._label}: {done:,} / {self._total:,} events{share}{rate}\x1b[K")
        self._stream.flush()

    def finish(self, done: int) -> None:
        if self._stream is not None:
            self.update(done, force=True)
            self._stream.write("\n")
            self._stream.flush()


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    seconds: float


class _Sink:
    """The export file: counts and hashes what is written, so the file is never read back."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


@dataclass
class _Follow:
    """What the checker learns while records stream past: names for messages, hashes at wanted seqs."""

    wanted: set[int] = field(default_factory=set)
    hashes: dict[int, str] = field(default_factory=dict)
    recent: dict[int, str] = field(default_factory=dict)
    latest: tuple[int, str] | None = None  # the seq the last record claims, and its record id

    def note(self, event: ConsentEvent) -> None:
        self.latest = (event.seq, event.record_id)
        self.recent[event.seq] = event.record_id
        self.recent.pop(event.seq - 2, None)
        if event.seq in self.wanted:
            self.hashes[event.seq] = event.hash


def _check_segment(events: Iterable[ConsentEvent], site: str, first_seq: int, first_prev_hash: str) -> Verdict:
    """verify_chain on a contiguous piece of a site's chain that starts at `first_seq`.

    verify_chain starts a log past seq 1 only from a signed cut checkpoint; the
    start of a piece is vouched for otherwise (by the signed manifest, or by
    the store when exporting), so a throw-away key signs a cut there that
    lives only in this call. Every per-record check stays verify_chain's own.
    """
    start: list[Checkpoint] = []
    ephemeral = Ed25519PrivateKey.generate()
    if first_seq > 1:
        start.append(sign_checkpoint(ephemeral, site, first_seq - 1, first_prev_hash, "cut"))
    return verify_chain(events, start, ephemeral.public_key(), site=site)


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def export_site(store: RecordStore, site: str, out: Path, fmt: str, key: Ed25519PrivateKey, *,
                since: datetime | None = None, until: datetime | None = None,
                asked: tuple[str | None, str | None] = (None, None),
                progress: Progress | None = None) -> ExportResult:
    """Stream a site's events in [since, until) to `out` in `fmt`, then write the signed manifest.

    Written to `out.partial` and renamed when complete; on any failure neither
    the file nor a manifest is left behind. `asked` is the range as the user
    wrote it, kept in the manifest beside the UTC instants it meant.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if since is not None and until is not None and since >= until:
        raise ExportError("--since must be before --until")
    began = time.monotonic()
    public = key.public_key()
    kid = key_id(public)
    start, end, end_cp = _bounds(store, site, since, until, key)
    total = max(0, end - start + 1)
    stored = [cp for cp in store.checkpoints(site) if start - 1 <= cp.seq <= end and cp.key_id == kid] if total else []
    follow = _Follow(wanted={cp.seq for cp in stored})
    notices: dict[str, NoticeVersion | None] = {}

    def notice_of(notice_id: str) -> NoticeVersion | None:
        if notice_id not in notices:
            found = store.notice(notice_id)
            if found is not None and hashlib.sha256(canonical(dict(found.content))).hexdigest() != found.id:
                raise ExportError(f"notice version {notice_id} in the store does not match its id (edited)")
            notices[notice_id] = found
        return notices[notice_id]

    render: Callable[[ConsentEvent], bytes]
    if fmt == "ndjson":
        render = ndjson_line
    elif fmt == "receipts":
        def render(event: ConsentEvent) -> bytes:
            return receipt_line(event, notice_of(event.notice_id))
    else:
        row = _CsvRenderer()

        def render(event: ConsentEvent) -> bytes:
            return row(csv_cells(event))

    mpath = manifest_path(out)
    partial = out.with_name(out.name + ".partial")
    renamed = False
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
        with os.fdopen(fd, "wb") as handle:
            sink = _Sink(handle)
            if fmt == "csv":
                sink.write(_CsvRenderer()(CSV_COLUMNS))
            first_prev_hash, last_hash = GENESIS, GENESIS
            if total:
                source = iter(store.events(site, after_seq=start - 1))
                first = next(source, None)
                if first is None or first.seq > end:
                    raise ExportError(f"seq {start}-{end} of {site} are no longer in the store (purged meanwhile?)")
                first_prev_hash = first.prev_hash
                if progress is not None:
                    progress.start(total)

                def written() -> Iterator[ConsentEvent]:
                    for done, event in enumerate(itertools.chain([first], source), 1):
                        if event.seq > end:
                            return
                        follow.note(event)
                        notice_of(event.notice_id)
                        sink.write(render(event))
                        if progress is not None:
                            progress.update(done)
                        yield event

                verdict = _check_segment(written(), site, start, first_prev_hash)
                if progress is not None:
                    progress.finish(verdict.count)
                if not verdict.ok:
                    named = follow.recent.get(verdict.bad_seq or 0)
                    raise ExportError(
                        f"the stored log of {site} does not verify at seq {verdict.bad_seq}"
                        f"{f' (record_id {named})' if named else ''}: {verdict.reason}; nothing exported")
                if verdict.last_seq != end:
                    raise ExportError(f"seq {(verdict.last_seq or start - 1) + 1} of {site} is missing from the "
                                      "store; nothing exported")
                last_hash = verdict.head
                end_cp = _settle_checkpoints(site, start, end, first_prev_hash, last_hash, stored, follow,
                                             end_cp, since, key)
            handle.flush()
            os.fsync(handle.fileno())
        manifest = sign_manifest({
            "type": MANIFEST_TYPE, "version": MANIFEST_VERSION, "generator": f"consentproxy {__version__}",
            "format": fmt, "file": out.name, "bytes": sink.size, "sha256": sink.digest.hexdigest(),
            "site": site,
            "range": {"since": asked[0], "until": asked[1],
                      "since_utc": iso_ms(since) if since else None, "until_utc": iso_ms(until) if until else None},
            "count": total, "first_seq": start if total else None, "last_seq": end if total else None,
            "first_prev_hash": first_prev_hash if total else None, "last_hash": last_hash if total else None,
            "exported_at": iso_ms(utc_ms()),
            "checkpoint": end_cp.to_dict() if total and end_cp else None,
            "cut": next((cp.to_dict() for cp in stored if cp.seq == start - 1 and cp.kind == "cut"), None),
            "notices": {nid: n.to_dict() if n else None for nid, n in sorted(notices.items())},
        }, key)
        _unlink(mpath)  # an old manifest must never vouch for the new file
        os.replace(partial, out)
        renamed = True
        write_atomically(mpath, manifest_bytes(manifest))
    except BaseException:
        _unlink(partial, *((out, mpath) if renamed else ()))
        raise
    return ExportResult(out, mpath, manifest, time.monotonic() - began)


def _settle_checkpoints(site: str, start: int, end: int, first_prev_hash: str, last_hash: str,
                        stored: list[Checkpoint], follow: _Follow, end_cp: Checkpoint | None,
                        since: datetime | None, key: Ed25519PrivateKey) -> Checkpoint:
    """Check the stored checkpoints in range against what was streamed; the signed checkpoint at `end`."""
    public = key.public_key()
    for cp in stored:
        problem = checkpoint_problem(cp, public)
        expected = first_prev_hash if cp.seq == start - 1 else follow.hashes.get(cp.seq)
        if problem or cp.head != expected:
            raise ExportError(f"the stored {cp.kind} checkpoint at seq {cp.seq} of {site}: "
                              f"{problem or 'it names another head than the log (records rewritten)'}; "
                              "nothing exported")
    if since is None and start > 1 and not any(cp.seq == start - 1 and cp.kind == "cut" for cp in stored):
        raise ExportError(f"the log of {site} starts at seq {start} without a cut checkpoint signed by this export "
                          "key (records deleted outside a purge, or the key was changed); nothing exported")
    if end_cp is None or end_cp.key_id != key_id(public):
        end_cp = next((cp for cp in stored if cp.seq == end and cp.kind == "head"), None)
    if end_cp is None:  # a range that ends before the head: sign the head at its end now
        end_cp = sign_checkpoint(key, site, end, last_hash, "head")
    if end_cp.head != last_hash:
        raise ExportError(f"the checkpoint at seq {end} of {site} names another head than the log; nothing exported")
    return end_cp


# -- verify -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """The verdict on an export: status 0 (verifies), 1 (does not), 2 (cannot be read)."""

    status: int
    verdict: str
    details: tuple[str, ...] = ()
    bad_seq: int | None = None

    def __str__(self) -> str:
        return "\n".join((self.verdict, *self.details))


@dataclass(frozen=True, slots=True)
class _Problem:
    seq: int | None
    record_id: str | None
    reason: str


# A reader turns the file's lines into (event, why it is unreadable, why its line is not its rendering).
_Item = tuple[ConsentEvent | None, str | None, str | None]


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return "the line is not valid JSON (edited or cut)"
    if isinstance(exc, KeyError):
        return f"the record lacks the field {exc} (edited)"
    return f"the record does not parse: {exc} (edited)"


_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


def _ndjson_items(lines: Iterator[bytes]) -> Iterator[_Item]:
    for raw in lines:
        try:
            event = ConsentEvent.from_dict(orjson.loads(raw))
        except _PARSE_ERRORS as exc:
            yield None, _unreadable(exc), None
            return
        same = ndjson_line(event) == raw
        yield event, None, None if same else "the line is not its record as exported (edited)"


def _receipt_items(lines: Iterator[bytes], notices: Mapping[str, NoticeVersion | None]) -> Iterator[_Item]:
    for raw in lines:
        try:
            event = ConsentEvent.from_dict(orjson.loads(raw)["consentproxy"]["record"])
        except _PARSE_ERRORS as exc:
            yield None, _unreadable(exc), None
            return
        same = receipt_line(event, notices.get(event.notice_id)) == raw
        yield event, None, None if same else "the receipt does not match its record and notice version (edited)"


def _csv_items(lines: Iterator[bytes]) -> Iterator[_Item]:
    render = _CsvRenderer()
    rows = csv.reader(raw.decode("utf-8") for raw in lines)
    while True:
        try:
            cells = next(rows)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            yield None, f"the row is not valid CSV: {exc} (edited)", None
            return
        try:
            event = csv_event(cells)
        except _PARSE_ERRORS as exc:
            reason = "the row has the wrong number of columns (edited)" if len(cells) != len(CSV_COLUMNS) else None
            yield None, reason or _unreadable(exc), None
            return
        same = render(csv_cells(event)) == render(cells)
        yield event, None, None if same else "the row is not its record as exported (edited)"


def _followed(items: Iterator[_Item], first_seq: int, count: int, follow: _Follow,
              found: list[_Problem]) -> Iterator[ConsentEvent]:
    """The events for verify_chain; a problem it cannot see is put in `found` and ends the stream.

    A line's rendering is compared after verify_chain has checked its event,
    so an edit of a chained field is reported as what it breaks (hash, link…).
    """
    for index, (event, unreadable, mismatch) in enumerate(items):
        if index >= count:
            found.append(_Problem(None, None, f"the file continues after seq {first_seq + count - 1}, "
                                              "the last record in the manifest (content appended)"))
            return
        if event is None:
            found.append(_Problem(first_seq + index, None, unreadable or "unreadable"))
            return
        if index == 0 and event.seq != first_seq:
            found.append(_Problem(first_seq, None, f"the record is missing: the file starts at seq {event.seq}"))
            return
        follow.note(event)
        yield event
        if mismatch:
            found.append(_Problem(event.seq, event.record_id, mismatch))
            return


def _bad(problem: _Problem) -> Report:
    if problem.seq is None:
        return Report(1, f"BAD: {problem.reason}")
    named = f" (record_id {problem.record_id})" if problem.record_id else ""
    return Report(1, f"BAD: record seq {problem.seq}{named}: {problem.reason}", bad_seq=problem.seq)


_CHAIN_REASONS = {
    "hash": "hash does not match its content (record edited)",
}


def _chain_problem(verdict: Verdict, follow: _Follow, first_seq: int) -> _Problem:
    """verify_chain's finding, named by the position in the file where it went wrong."""
    position = (verdict.last_seq or first_seq - 1) + 1  # the seq the record at fault should have
    claimed, record_id = follow.latest or (position, None)
    if verdict.code == "gap":
        return _Problem(position, None, f"the record is missing here (deleted or moved): the file goes on "
                                        f"with seq {claimed}")
    if verdict.code == "order":
        return _Problem(position, record_id, f"the record there says seq {claimed} (moved, duplicated or its seq "
                                             "edited)")
    reason = _CHAIN_REASONS.get(verdict.code or "", verdict.reason or "does not verify")
    return _Problem(verdict.bad_seq, follow.recent.get(verdict.bad_seq or 0), reason)


def verify_export(path: Path, pinned: Ed25519PublicKey | None = None) -> Report:
    """Verify an export and its manifest offline: no configuration, no store (see the module docstring)."""
    try:
        manifest = read_manifest(manifest_path(path))
    except ManifestUnreadable as exc:
        return Report(2, f"UNREADABLE: {exc}")
    problem = signature_problem(manifest, pinned)
    if problem:
        return Report(1, f"BAD: {problem}")
    problem = structure_problem(manifest)
    if problem is None and manifest["format"] not in FORMATS:
        problem = f"unknown export format {manifest['format']!r}"
    if problem:
        return Report(2, f"UNREADABLE: {problem}")
    try:
        notices = {nid: NoticeVersion.from_dict(n) if n else None for nid, n in manifest["notices"].items()}
        end_cp = Checkpoint.from_dict(manifest["checkpoint"]) if manifest["checkpoint"] else None
        cut = Checkpoint.from_dict(manifest["cut"]) if manifest["cut"] else None
        public = load_public_key(manifest["public_key"])
    except _PARSE_ERRORS as exc:
        return Report(2, f"UNREADABLE: the manifest's notices or checkpoints do not parse: {exc}")
    site, fmt, count = str(manifest["site"]), str(manifest["format"]), int(manifest["count"])
    first_seq, last_seq = manifest["first_seq"], manifest["last_seq"]
    for nid, notice in notices.items():
        if notice is not None and hashlib.sha256(canonical(dict(notice.content))).hexdigest() != nid:
            return Report(1, f"BAD: notice version {nid} in the manifest does not match its id")
    if count:
        problem = _manifest_chain_problem(manifest, site, public, end_cp, cut)
        if problem:
            return Report(1, f"BAD: {problem}")
    elif first_seq is not None or last_seq is not None:
        return Report(1, "BAD: the manifest lists no records but a seq range")
    try:
        handle = path.open("rb")
    except OSError as exc:
        return Report(2, f"UNREADABLE: {path}: {exc.strerror or exc}")
    digest = hashlib.sha256()
    size = 0
    found: list[_Problem] = []
    follow = _Follow()
    with handle:
        def lines() -> Iterator[bytes]:
            nonlocal size
            for raw in handle:
                digest.update(raw)
                size += len(raw)
                yield raw

        stream = lines()
        if fmt == "csv":
            header = next(stream, b"")
            if header != _CsvRenderer()(CSV_COLUMNS):
                return Report(1, "BAD: the CSV header is not the one exports write (edited)")
        items = (_ndjson_items(stream) if fmt == "ndjson" else _csv_items(stream) if fmt == "csv"
                 else _receipt_items(stream, notices))
        if count:
            verdict = _check_segment(_followed(items, first_seq, count, follow, found), site, first_seq,
                                     manifest["first_prev_hash"])
            if not verdict.ok:
                return _bad(_chain_problem(verdict, follow, first_seq))
        else:
            verdict = None
            if next(items, None) is not None:
                found.append(_Problem(None, None, "the manifest lists no records but the file holds some"))
        if found:
            return _bad(found[0])
        if verdict is not None and verdict.last_seq != last_seq:
            missing = (verdict.last_seq or first_seq - 1) + 1
            ends = f"the file ends at seq {verdict.last_seq}" if verdict.last_seq else "the file holds no records"
            return _bad(_Problem(missing, None, f"the record is missing: {ends} but the manifest lists records "
                                                f"up to seq {last_seq} (cut off)"))
        if verdict is not None and verdict.head != manifest["last_hash"]:
            return _bad(_Problem(last_seq, None, "the last hash differs from the manifest's"))
    if digest.hexdigest() != manifest["sha256"] or size != manifest["bytes"]:
        return Report(1, "BAD: the file's SHA-256 differs from the manifest's (the file was changed)")
    return _ok(manifest, fmt, site, count, end_cp, cut, notices)


def _manifest_chain_problem(manifest: Mapping[str, Any], site: str, public: Ed25519PublicKey,
                            end_cp: Checkpoint | None, cut: Checkpoint | None) -> str | None:
    """The manifest's own chain claims: range arithmetic, start, and the signed checkpoints at both ends."""
    first_seq, last_seq, count = manifest["first_seq"], manifest["last_seq"], manifest["count"]
    if not isinstance(first_seq, int) or not isinstance(last_seq, int) or last_seq - first_seq + 1 != count:
        return "the manifest's count does not match its seq range"
    if not isinstance(manifest["first_prev_hash"], str) or not isinstance(manifest["last_hash"], str):
        return "the manifest lacks the first prev_hash or the last hash"
    if first_seq == 1 and manifest["first_prev_hash"] != GENESIS:
        return "the export starts at seq 1 but does not continue from the genesis hash"
    if end_cp is None:
        return "the manifest has no signed checkpoint at the last seq"
    for cp, seq, head, what in ((end_cp, last_seq, manifest["last_hash"], "checkpoint at the last seq"),
                                (cut, first_seq - 1, manifest["first_prev_hash"], "purge cut checkpoint")):
        if cp is None:
            continue
        problem = checkpoint_problem(cp, public)
        if problem:
            return f"the {what}: {problem}"
        if cp.site != site or cp.seq != seq or cp.head != head:
            return f"the {what} is not at seq {seq} of {site} with the manifest's hash there"
    if cut is not None and cut.kind != "cut":
        return "the purge cut checkpoint is not of kind cut"
    if manifest["range"].get("since") is None and first_seq > 1 and cut is None:
        return (f"the export starts at seq {first_seq} without the purge's signed cut checkpoint "
                "(records deleted outside a purge?)")
    return None


def _ok(manifest: Mapping[str, Any], fmt: str, site: str, count: int, end_cp: Checkpoint | None,
        cut: Checkpoint | None, notices: Mapping[str, NoticeVersion | None]) -> Report:
    asked = manifest["range"]
    span = (f"from {asked.get('since') or 'the start'} until {asked.get('until') or 'the export'}"
            if asked.get("since") or asked.get("until") else "the whole log")
    details = [f"format {fmt}; {span}; file SHA-256 {manifest['sha256']}",
               f"signed by key {manifest['key_id']} (public key {manifest['public_key']}) "
               f"on {manifest.get('exported_at', '?')}"]
    if end_cp is not None:
        details.append(f"checkpoint at seq {end_cp.seq} ({end_cp.kind}, {iso_ms(end_cp.time)}) matches the last hash")
    if cut is not None:
        details.append(f"continues from the purge's cut checkpoint at seq {cut.seq}")
    missing = sorted(nid for nid, n in notices.items() if n is None)
    details.append(f"{len(notices) - len(missing)} notice version(s) included"
                   + (f"; not in the store: {', '.join(missing)}" if missing else ""))
    for nid, notice in sorted(notices.items()):
        if notice is not None:
            shown = notice.content.get("shown") or {}
            how = f" ({shown.get('language')}, {shown.get('regime')})" if shown else ""
            details.append(f"notice {nid[:12]}{how}: recipients: {recipient_line(notice)}")
    if count == 0:
        return Report(0, f"OK: 0 events of site {site} (nothing in the range), signatures verify", tuple(details))
    span = f"seq {manifest['first_seq']}\N{EN DASH}{manifest['last_seq']}"
    return Report(0, f"OK: {count:,} events of site {site}, {span}, chain and signatures verify", tuple(details))


# -- retention ----------------------------------------------------------------------------------


def retention_cutoff(site: SiteConfig, now: datetime) -> datetime:
    """Events recorded before this are past the site's retention."""
    return now - timedelta(days=site.consent.retention_days)


def purge_expired(store: RecordStore, site: SiteConfig, key: Ed25519PrivateKey, now: datetime) -> int:
    """Delete the site's events older than its retention, leaving a signed cut; the number deleted.

    For the `purge` command and the server's periodic task alike.
    """
    return store.purge(site.name, retention_cutoff(site, now), key)


def expired_count(store: RecordStore, site: str, before: datetime) -> int:
    """How many events `store.purge(site, before, …)` would delete now (for a dry run).

    The same rule: only a prefix goes, up to just before the first event at or after `before`.
    """
    first = _first_seq_at(store, site, None)
    if first is None:
        return 0
    at = _first_seq_at(store, site, before)
    cut = store.head(site)[0] if at is None else at - 1
    return max(0, cut - first + 1)
