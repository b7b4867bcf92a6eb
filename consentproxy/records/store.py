"""The consent log's storage interface, with the logic both backends share.

`open(url)` gives a `RecordStore` for `sqlite:///abs/path.db`,
`sqlite:relative.db` or `postgresql://…`. Everything about the log — chaining,
idempotency, erasure, purge, the admin audit — is written once here against a tiny
transaction interface (`Tx`); a backend only says how to connect, how to
take the exclusive write transaction and how its errors map:

- `StoreUnavailable`: the database cannot be reached or written (down, disk
  full, locked too long, read-only). Nothing of the call was stored; retry later.
- `StoreError`: anything else the store refuses (e.g. a record id stored twice).

A store object is used by one thread at a time (the `RecordWriter` owns one);
processes and proxy instances share the log through the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentproxy.inventory.model import Sighting
from consentproxy.records.chain import GENESIS, link
from consentproxy.records.checkpoint import Checkpoint, sign_checkpoint
from consentproxy.records.migrations import CREATE_MIGRATIONS_TABLE, LATEST, MIGRATIONS
from consentproxy.records.model import ConsentEvent, NoticeVersion, canonical, from_ms, iso_ms, to_ms, utc_ms
from consentproxy.records.stats import ConsentStats, add_to_rollup, day_number, tally

PAGE_SIZE = 1000


class StoreError(Exception):
    """The store refused an operation; retrying the same call will not help."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written right now; nothing of the call was stored."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Tx(Protocol):
    """One open transaction. SQL uses `?` placeholders; backends translate."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


EVENT_COLUMNS = (
    "site", "seq", "record_id", "schema_version", "time_ms", "notice_id", "event_type", "method", "choices",
    "expires_ms", "regime", "idempotency_key", "principal", "ip", "ua", "country", "salt",
    "principal_c", "ip_c", "ua_c", "country_c", "prev_hash", "hash",
)
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"  # noqa: S608 - constant column names
_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_CHECKPOINT_COLUMNS = "site, seq, kind, head, time_ms, key_id, signature"
_SELECT_CHECKPOINTS = f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints"  # noqa: S608 - constant column names
_INSERT_CHECKPOINT = (
    f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - constant
    "ON CONFLICT (site, seq, kind) DO NOTHING"
)


_AUDIT_COLUMNS = "time_ms, token, scope, action, site, subject, status, outcome, detail"
_INSERT_AUDIT = f"INSERT INTO admin_audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
AUDIT_PAGE_MAX = 10_000
RIGHTS_ACTIONS: frozenset[str] = frozenset({"access", "erasure", "withdrawal"})


def subject_commitment(site: str, consent_id: str) -> str:
    """What the audit keeps of a consent id: SHA-256 over a domain tag, the site and the id, hex.

    Not the raw id, so the audit log never has to be rewritten when that
    person's events are erased. Unkeyed on purpose: whoever holds the id (the
    visitor, the privacy officer answering them) can find the requests made
    for it, while a consent id's 128 random bits make guessing it from the
    commitment hopeless (the admin API refuses ids that are not such tokens).
    """
    return hashlib.sha256(b"consentproxy-audit-subject-v1\x00" + site.encode("utf-8") + b"\x00"
                          + consent_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin action as the audit log keeps it: who (the token's configured name), what, outcome.

    Rights requests (a data subject's access or erasure asked for by consent
    id) are the entries whose action is in RIGHTS_ACTIONS.
    """

    token: str
    scope: str
    action: str
    status: int
    outcome: str
    site: str | None = None
    subject: str | None = None  # subject_commitment of the consent id, never the id
    detail: Mapping[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=utc_ms)
    id: int = 0  # set by the store

    @property
    def rights_request(self) -> bool:
        return self.action in RIGHTS_ACTIONS

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": iso_ms(self.time), "token": self.token, "scope": self.scope,
                "action": self.action, "rights_request": self.rights_request, "site": self.site,
                "subject": self.subject, "status": self.status, "outcome": self.outcome,
                "detail": dict(self.detail)}


def _event_row(event: ConsentEvent) -> tuple[Any, ...]:
    c = event.commitments
    return (
        event.site, event.seq, event.record_id, event.schema_version, to_ms(event.time), event.notice_id,
        event.event_type, event.method, canonical(dict(event.choices)).decode("utf-8"), to_ms(event.expires_at),
        event.regime, event.idempotency_key, event.principal, event.ip, event.ua, event.country, event.salt,
        c.get("principal"), c.get("ip"), c.get("ua"), c.get("country"), event.prev_hash, event.hash,
    )


def _row_event(row: Sequence[Any]) -> ConsentEvent:
    (site, seq, record_id, schema_version, time_ms, notice_id, event_type, method, choices, expires_ms,
     regime, idempotency_key, principal, ip, ua, country, salt, principal_c, ip_c, ua_c, country_c,
     prev_hash, hash_) = row
    return ConsentEvent(
        record_id=record_id, site=site, time=from_ms(time_ms), principal=principal, notice_id=notice_id,
        event_type=event_type, method=method, choices=orjson.loads(choices), expires_at=from_ms(expires_ms),
        ip=ip, ua=ua, country=country, regime=regime, idempotency_key=idempotency_key, salt=salt,
        commitments={"principal": principal_c, "ip": ip_c, "ua": ua_c, "country": country_c},
        schema_version=schema_version, seq=seq, prev_hash=prev_hash, hash=hash_,
    )


_INVENTORY_COLUMNS = ("site, kind, name, set_by, category, source, service, count, before_consent, blocked, "
                      "first_seen_ms, last_seen_ms, details")
_SELECT_INVENTORY = f"SELECT {_INVENTORY_COLUMNS} FROM inventory"  # noqa: S608 - constant column names
_INSERT_EMPTY_SIGHTING = (
    f"INSERT INTO inventory ({_INVENTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, '{{}}') "  # noqa: S608
    "ON CONFLICT (site, kind, name, set_by) DO NOTHING"
)
_UPDATE_SIGHTING = (
    "UPDATE inventory SET category = ?, source = ?, service = ?, count = ?, before_consent = ?, blocked = ?, "
    "first_seen_ms = ?, last_seen_ms = ?, details = ? WHERE site = ? AND kind = ? AND name = ? AND set_by = ?"
)


def _row_sighting(row: Sequence[Any]) -> Sighting:
    (site, kind, name, set_by, category, source, service, count, before_consent, blocked, first_seen_ms,
     last_seen_ms, details) = row
    return Sighting(site=site, kind=kind, name=name, set_by=set_by, category=category, source=source,
                    service=service, count=int(count), before_consent=int(before_consent), blocked=int(blocked),
                    first_seen_ms=int(first_seen_ms), last_seen_ms=int(last_seen_ms), details=orjson.loads(details))


def _row_checkpoint(row: Sequence[Any]) -> Checkpoint:
    site, seq, kind, head, time_ms, key_id, signature = row
    return Checkpoint(site, seq, kind, head, from_ms(time_ms), key_id, signature)


class RecordStore(ABC):
    """The consent log: notices, per-site chained events, signed checkpoints."""

    dialect: str
    # How a backend reads (and locks, where rows can be locked) a chain head inside the write transaction.
    select_head: str = "SELECT seq, hash FROM chain_heads WHERE site = ?"
    # Appended to a SELECT inside the write transaction to lock the rows read (SQLite's writer lock is the file's).
    row_lock: str = ""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """The exclusive write transaction: committed on normal exit, rolled back on error."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A short read."""

    @abstractmethod
    def _migration_lock(self, tx: Tx) -> None:
        """Keep two processes opening a fresh database from migrating it at once."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply missing migrations; returns the versions applied (none on a second open)."""
        applied: list[int] = []
        with self._write() as tx:
            self._migration_lock(tx)
            tx.run(CREATE_MIGRATIONS_TABLE)
            done = {row[0] for row in tx.all("SELECT version FROM schema_migrations")}
            newer = [version for version in done if version > LATEST]
            if newer:
                raise StoreError(f"the database schema is at version {max(newer)}, newer than this "
                                 f"consentproxy knows ({LATEST}); upgrade consentproxy")
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.for_dialect(self.dialect):
                    tx.run(statement)
                if migration.then is not None:
                    migration.then(tx)
                tx.run("INSERT INTO schema_migrations (version, description, applied_ms) VALUES (?, ?, ?)",
                       (migration.version, migration.description, int(time.time() * 1000)))
                applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        with self._read() as tx:
            row = tx.one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    # -- notices --------------------------------------------------------------

    def put_notice(self, notice: NoticeVersion) -> None:
        """Store a notice version once; storing it again (same id) does nothing."""
        with self._write() as tx:
            tx.run("INSERT INTO notices (id, site, revision, created_ms, content) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (id) DO NOTHING",
                   (notice.id, notice.site, notice.revision, to_ms(notice.created),
                    canonical(dict(notice.content)).decode("utf-8")))

    def notice(self, notice_id: str) -> NoticeVersion | None:
        with self._read() as tx:
            row = tx.one("SELECT id, site, revision, created_ms, content FROM notices WHERE id = ?", (notice_id,))
        if row is None:
            return None
        return NoticeVersion(row[0], row[1], row[2], from_ms(row[3]), orjson.loads(row[4]))

    def notices(self, site: str) -> list[NoticeVersion]:
        """A site's notice versions, oldest first (the console shows them and diffs two)."""
        with self._read() as tx:
            rows = tx.all("SELECT id, site, revision, created_ms, content FROM notices WHERE site = ? "
                          "ORDER BY created_ms, revision, id", (site,))
        return [NoticeVersion(r[0], r[1], r[2], from_ms(r[3]), orjson.loads(r[4])) for r in rows]

    # -- events ---------------------------------------------------------------

    def _lock_heads(self, tx: Tx, sites: Sequence[str], create: bool = True) -> dict[str, tuple[int, str]]:
        """Lock each site's chain head (in a fixed order, so two writers cannot deadlock) and read it.

        A site without events gets a head row (seq 0) if `create`, else (0, GENESIS) and no lock.
        """
        heads: dict[str, tuple[int, str]] = {}
        for site in sorted(sites):
            row = tx.one(self.select_head, (site,))
            if row is None and not create:
                heads[site] = (0, GENESIS)
                continue
            if row is None:  # the site's first event: a racing first writer waits on the key, then finds its row
                tx.run("INSERT INTO chain_heads (site, seq, hash) VALUES (?, 0, ?) ON CONFLICT (site) DO NOTHING",
                       (site, GENESIS))
                row = tx.one(self.select_head, (site,))
            assert row is not None
            heads[site] = (int(row[0]), str(row[1]))
        return heads

    def append(self, events: Sequence[ConsentEvent]) -> list[ConsentEvent]:
        """Store events in one transaction; returns them as stored, in the order given.

        Each gets the next seq of its site and is chained to the head, which is
        locked for the transaction, so concurrent writers (processes, instances)
        produce one gap-free order. An event whose (site, idempotency key) is
        already stored — or appears earlier in the same call — is not stored
        again: the stored event is returned in its place.
        """
        if not events:
            return []
        results: list[ConsentEvent | None] = [None] * len(events)
        with self._write() as tx:
            heads = self._lock_heads(tx, sorted({event.site for event in events}))
            stored = self._stored_by_key(tx, events)
            first_index: dict[tuple[str, str], int] = {}
            duplicates: list[tuple[int, int]] = []
            fresh: dict[str, list[tuple[int, ConsentEvent]]] = {}
            for index, event in enumerate(events):
                if event.idempotency_key is not None:
                    key = (event.site, event.idempotency_key)
                    if key in stored:
                        results[index] = stored[key]
                        continue
                    if key in first_index:
                        duplicates.append((index, first_index[key]))
                        continue
                    first_index[key] = index
                fresh.setdefault(event.site, []).append((index, event))
            rows = []
            for site, items in fresh.items():
                seq, head = heads[site]
                linked = link((event for _, event in items), seq, head)
                for (index, _), event in zip(items, linked, strict=True):
                    results[index] = event
                    rows.append(_event_row(event))
                tx.run("UPDATE chain_heads SET seq = ?, hash = ? WHERE site = ?",
                       (linked[-1].seq, linked[-1].hash, site))
            if rows:
                tx.many(_INSERT_EVENT, rows)
                # The statistics' rollup, in the same transaction: counted exactly once, whatever fails.
                add_to_rollup(tx, tally((event.site, to_ms(event.time), event.event_type, event.method, event.choices)
                                        for items in fresh.values() for _, event in items))
        for index, original in duplicates:
            results[index] = results[original]
        return [event for event in results if event is not None]

    def _stored_by_key(self, tx: Tx, events: Sequence[ConsentEvent]) -> dict[tuple[str, str], ConsentEvent]:
        keys: dict[str, set[str]] = {}
        for event in events:
            if event.idempotency_key is not None:
                keys.setdefault(event.site, set()).add(event.idempotency_key)
        found: dict[tuple[str, str], ConsentEvent] = {}
        for site, site_keys in keys.items():
            marks = ", ".join("?" for _ in site_keys)
            for row in tx.all(f"{_SELECT_EVENTS} WHERE site = ? AND idempotency_key IN ({marks})",
                              (site, *site_keys)):
                event = _row_event(row)
                assert event.idempotency_key is not None
                found[(site, event.idempotency_key)] = event
        return found

    def head(self, site: str) -> tuple[int, str]:
        """The site's last seq and hash; (0, GENESIS) before its first event."""
        with self._read() as tx:
            row = tx.one("SELECT seq, hash FROM chain_heads WHERE site = ?", (site,))
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def sites(self) -> list[str]:
        with self._read() as tx:
            return [str(row[0]) for row in tx.all("SELECT site FROM chain_heads ORDER BY site")]

    def events_of(self, site: str, principal: str) -> list[ConsentEvent]:
        """A principal's events in seq order (for access and portability); none once erased."""
        with self._read() as tx:
            rows = tx.all(f"{_SELECT_EVENTS} WHERE site = ? AND principal = ? ORDER BY seq", (site, principal))
        return [_row_event(row) for row in rows]

    def events(self, site: str, since: datetime | None = None, until: datetime | None = None,
               after_seq: int = 0) -> Iterator[ConsentEvent]:
        """A site's events in seq order, streamed a page at a time (each page a short read).

        `since` (inclusive) and `until` (exclusive) filter on event time; the
        order stays seq order, which is the chain's.
        """
        where = "site = ? AND seq > ?"
        extra: list[Any] = []
        if since is not None:
            where += " AND time_ms >= ?"
            extra.append(to_ms(since))
        if until is not None:
            where += " AND time_ms < ?"
            extra.append(to_ms(until))
        last = after_seq
        while True:
            with self._read() as tx:
                rows = tx.all(f"{_SELECT_EVENTS} WHERE {where} ORDER BY seq LIMIT {PAGE_SIZE}",
                              (site, last, *extra))
            for row in rows:
                yield _row_event(row)
            if len(rows) < PAGE_SIZE:
                return
            last = int(rows[-1][1])

    def count(self, site: str) -> int:
        with self._read() as tx:
            row = tx.one("SELECT COUNT(*) FROM events WHERE site = ?", (site,))
        return int(row[0]) if row else 0

    def erase(self, site: str, principal: str, audit: AuditEntry | None = None) -> int:
        """Delete a principal's personal fields and their salts; commitments stay, so the chain verifies.

        The idempotency key goes too: it is a per-request token that could link
        a retry to the person. Returns the number of events erased. `audit`, if
        given, is stored in the same transaction (its detail gains `erased`):
        an erasure is never done without its record, nor recorded undone.
        The statistics' rollup stays as it is: it holds no personal data.
        """
        with self._write() as tx:
            erased = tx.run("UPDATE events SET principal = NULL, ip = NULL, ua = NULL, country = NULL, salt = NULL, "
                            "idempotency_key = NULL WHERE site = ? AND principal = ?", (site, principal))
            if audit is not None:
                self._insert_audit(tx, dataclasses.replace(audit, detail={**audit.detail, "erased": erased}))
            return erased

    # -- admin audit -------------------------------------------------------------

    def add_audit(self, entry: AuditEntry) -> None:
        """Append one entry to the admin audit log (committed when this returns)."""
        with self._write() as tx:
            self._insert_audit(tx, entry)

    @staticmethod
    def _insert_audit(tx: Tx, e: AuditEntry) -> None:
        tx.run(_INSERT_AUDIT, (to_ms(e.time), e.token, e.scope, e.action, e.site, e.subject, e.status, e.outcome,
                               canonical(dict(e.detail)).decode("utf-8")))

    def audit(self, *, since: datetime | None = None, until: datetime | None = None, site: str | None = None,
              action: str | None = None, subject: str | None = None, after: int = 0,
              limit: int = 1000) -> list[AuditEntry]:
        """Audit entries in the order written (by id), filtered; page on with `after` = the last id seen."""
        where = ["id > ?"]
        params: list[Any] = [after]
        for column, value in (("site", site), ("action", action), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("time_ms >= ?")
            params.append(to_ms(since))
        if until is not None:
            where.append("time_ms < ?")
            params.append(to_ms(until))
        limit = max(1, min(int(limit), AUDIT_PAGE_MAX))
        with self._read() as tx:
            rows = tx.all(f"SELECT id, {_AUDIT_COLUMNS} FROM admin_audit WHERE {' AND '.join(where)} "  # noqa: S608
                          f"ORDER BY id LIMIT {limit}", params)
        return [AuditEntry(id=int(row[0]), time=from_ms(row[1]), token=row[2], scope=row[3], action=row[4],
                           site=row[5], subject=row[6], status=int(row[7]), outcome=row[8],
                           detail=orjson.loads(row[9])) for row in rows]

    # -- inventory -----------------------------------------------------------------

    def merge_inventory(self, sightings: Sequence[Sighting]) -> None:
        """Add sightings into the stored inventory, in one transaction, with `Sighting.merge`'s semantics.

        Counts add, first/last seen widen, the newer classification wins, CSP
        directives and cookie paths (details "directives", "paths") are the
        union. Rows are created empty first and then read locked, in key order,
        so instances merging the same items at once add up instead of
        overwriting each other, and cannot deadlock.
        """
        if not sightings:
            return
        merged: dict[tuple[str, str, str, str], Sighting] = {}
        for sighting in sightings:
            key = sighting.key()
            if key in merged:
                merged[key].merge(sighting)
            else:
                merged[key] = dataclasses.replace(sighting, details=dict(sighting.details))
        with self._write() as tx:
            for key in sorted(merged):
                new = merged[key]
                tx.run(_INSERT_EMPTY_SIGHTING, (*key, "", "", ""))
                row = tx.one(f"{_SELECT_INVENTORY} WHERE site = ? AND kind = ? AND name = ? AND set_by = ?"
                             f"{self.row_lock}", key)
                assert row is not None
                stored = _row_sighting(row)
                stored.merge(new)
                tx.run(_UPDATE_SIGHTING, (stored.category, stored.source, stored.service, stored.count,
                                          stored.before_consent, stored.blocked, stored.first_seen_ms,
                                          stored.last_seen_ms, canonical(stored.details).decode("utf-8"), *key))

    def inventory(self, site: str | None = None, kind: str | None = None) -> list[Sighting]:
        """The stored inventory: unknown items first, then those seen before consent, then the most seen."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("site", site), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as tx:
            rows = tx.all(f"{_SELECT_INVENTORY}{clause} ORDER BY CASE WHEN source = 'unknown' THEN 0 ELSE 1 END, "
                          "CASE WHEN before_consent > 0 THEN 0 ELSE 1 END, count DESC, site, kind, name, set_by",
                          params)
        return [_row_sighting(row) for row in rows]

    # -- statistics -------------------------------------------------------------------

    def stats(self, site: str, since: date, until: date) -> ConsentStats:
        """Consent statistics of the UTC days since..until, both included (see records/stats.py)."""
        if until < since:
            raise ValueError("until is before since")
        with self._read() as tx:
            rows = tx.all("SELECT day, category, outcome, method, count FROM consent_daily "
                          "WHERE site = ? AND day >= ? AND day <= ? ORDER BY day, category, outcome, method",
                          (site, day_number(since), day_number(until)))
        return ConsentStats.from_rows(site, since, until, rows)

    # -- checkpoints and retention ---------------------------------------------

    def add_checkpoint(self, site: str, key: Ed25519PrivateKey) -> Checkpoint | None:
        """Sign and store the site's current head; None before the first event.

        Signed under the head lock, so the checkpoint names a head that is in
        the log; an unchanged head returns the checkpoint already taken.
        """
        with self._write() as tx:
            seq, head = self._lock_heads(tx, [site], create=False)[site]
            if seq == 0:
                return None
            row = tx.one(f"{_SELECT_CHECKPOINTS} WHERE site = ? AND seq = ? AND kind = ?", (site, seq, "head"))
            if row is not None:
                return _row_checkpoint(row)
            checkpoint = sign_checkpoint(key, site, seq, head, "head")
            self._insert_checkpoint(tx, checkpoint)
            return checkpoint

    @staticmethod
    def _insert_checkpoint(tx: Tx, cp: Checkpoint) -> None:
        tx.run(_INSERT_CHECKPOINT, (cp.site, cp.seq, cp.kind, cp.head, to_ms(cp.time), cp.key_id, cp.signature))

    def checkpoints(self, site: str) -> list[Checkpoint]:
        with self._read() as tx:
            rows = tx.all(f"{_SELECT_CHECKPOINTS} WHERE site = ? ORDER BY seq, kind", (site,))
        return [_row_checkpoint(row) for row in rows]

    def purge(self, site: str, before: datetime, key: Ed25519PrivateKey) -> int:
        """Delete the site's oldest events, those before `before`, leaving a signed cut checkpoint.

        Only a prefix of the chain can go (what remains must continue from a
        signed head): the cut is just before the first event at or after
        `before`. An older event behind it (clocks of several instances differ
        a little) waits for the next purge. Returns the number deleted. Their
        counts stay in the statistics' rollup (no personal data in it).
        """
        with self._write() as tx:
            head_seq, _ = self._lock_heads(tx, [site], create=False)[site]
            row = tx.one("SELECT MIN(seq) FROM events WHERE site = ? AND time_ms >= ?", (site, to_ms(before)))
            cut = head_seq if row is None or row[0] is None else int(row[0]) - 1
            first = tx.one("SELECT MIN(seq) FROM events WHERE site = ?", (site,))
            if first is None or first[0] is None or cut < int(first[0]):
                return 0
            at_cut = tx.one("SELECT hash FROM events WHERE site = ? AND seq = ?", (site, cut))
            if at_cut is None:
                raise StoreError(f"event {site} seq {cut} is missing; verify the log before purging")
            self._insert_checkpoint(tx, sign_checkpoint(key, site, cut, str(at_cut[0]), "cut"))
            return tx.run("DELETE FROM events WHERE site = ? AND seq <= ?", (site, cut))


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite:"):]
    if rest.startswith("//"):
        if not rest.startswith("///"):
            raise ValueError(f"{url!r}: use sqlite:///absolute/path.db or sqlite:relative/path.db")
        rest = rest[2:]
    if not rest.split("?", 1)[0]:
        raise ValueError(f"{url!r}: no database path")
    return rest


def open(url: str, **options: Any) -> RecordStore:
    """Open (and migrate) the store a URL names: sqlite:///abs.db, sqlite:rel.db, postgresql://…

    SQLite URLs take `?busy_timeout=MS` and `?mode=ro` (read-only: no
    migrations, writes fail as StoreUnavailable); PostgreSQL URLs are libpq
    connection URIs (e.g. `?options=-csearch_path%3Dconsent` for a schema).
    """
    if url.startswith("sqlite:"):
        from consentproxy.records.sqlite import SqliteStore

        return SqliteStore(_sqlite_path(url), **options)
    if url.startswith(("postgresql://", "postgres://")):
        from consentproxy.records.postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(f"unknown store URL {url!r}: use sqlite:///path/to/file.db or postgresql://…")


open_store = open


def options_of(query: str) -> Mapping[str, str]:
    """`a=1&b=2` → {"a": "1", "b": "2"} (for the few SQLite URL options)."""
    pairs = (part.partition("=") for part in query.split("&") if part)
    return {name: value for name, _, value in pairs}
