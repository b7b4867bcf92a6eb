"""Consents ended from outside the visitor's browser: an erasure, or a withdrawal made on their behalf.

The consent cookie is signed and self-contained, so the proxy never asks the
database about it; after an erasure by consent id that browser's cookie would
still count, with no record left to prove it. So each worker keeps a
revocation set in memory — the (site, subject commitment) of every successful
`erasure` and `withdrawal` in the admin audit log — and a cookie whose
principal is in it counts as no decision. The hot path only hashes the
principal when its site has any revocation at all (a dict lookup otherwise).

The set is fed by `RevocationPoller`, one per worker: it reads the audit log
through the worker's record writer every `POLL_SECONDS`, so an erasure made on
any worker or instance sharing the store takes effect everywhere within
seconds. The worker that served the erasure adds it at once.

The set never shrinks: a revoked principal is never issued again (a new
decision after a revocation gets a new one), so an entry only ever matches
cookies issued before the revocation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

from consentproxy.observability import metrics
from consentproxy.records.store import AUDIT_PAGE_MAX, AuditEntry, RecordStore, StoreError, subject_commitment

logger = logging.getLogger("consentproxy.consent")
T = TypeVar("T")

Reason = Literal["erasure", "withdrawal"]
#: audit actions that end a consent, as the admin API's operations name them
REVOKING_ACTIONS: tuple[Reason, ...] = ("erasure", "withdrawal")
POLL_SECONDS = 2.0
#: each poll re-reads entries this far before the previous poll's start: an entry is timed when the admin API
#: builds it, a little before its commit, by the clock of whichever instance served it; clocks and commits
#: within this margin are never missed (and an entry read twice changes nothing)
OVERLAP_SECONDS = 300.0
_CHECKED_LIMIT = 8192


class Revocations:
    """The revoked (site, subject commitment) pairs of one worker process, with why each was revoked."""

    def __init__(self) -> None:
        # site → commitment → reason; a site is only here once it has a revocation (the hot path's test)
        self.by_site: dict[str, dict[str, Reason]] = {}
        # (site, principal) → verdict: a visitor sends the same cookie on every request, so it is hashed once
        # (emptied on every change: revocations are rare, lookups are not)
        self._checked: dict[tuple[str, str], Reason | None] = {}

    def add(self, site: str, subject: str, reason: Reason) -> bool:
        """Revoke one subject; True if it was not revoked before (an erasure outranks a withdrawal)."""
        subjects = self.by_site.get(site)
        if subjects is None:
            subjects = self.by_site[site] = {}
        known = subjects.get(subject)
        if known == "erasure" or known == reason:
            return False
        subjects[subject] = reason
        self._checked.clear()
        metrics.REVOKED_CONSENTS.labels(site).set(len(subjects))
        return known is None

    def reason(self, site: str, principal: str) -> Reason | None:
        """Why this principal's consent was ended on `site`, or None if it was not."""
        subjects = self.by_site.get(site)
        if not subjects:
            return None
        key = (site, principal)
        try:
            return self._checked[key]
        except KeyError:
            pass
        found = subjects.get(subject_commitment(site, principal))
        if len(self._checked) >= _CHECKED_LIMIT:
            self._checked.clear()
        self._checked[key] = found
        return found

    def count(self, site: str) -> int:
        return len(self.by_site.get(site, ()))

    def take(self, entries: Iterable[AuditEntry]) -> int:
        """Revoke the subjects of the successful revoking entries among `entries`; how many were new."""
        added = 0
        for entry in entries:
            if (entry.action in REVOKING_ACTIONS and 200 <= entry.status < 300 and entry.outcome == "ok"
                    and entry.site is not None and entry.subject is not None):
                added += self.add(entry.site, entry.subject, entry.action)
        return added


#: the worker's revocation set: one per process, shared by every site's steps across reloads
REVOCATIONS = Revocations()


def read_revoking_entries(store: RecordStore, since: datetime | None) -> list[AuditEntry]:
    """Every revoking audit entry timed at or after `since` (all of them for None), paged by id."""
    found: list[AuditEntry] = []
    for action in REVOKING_ACTIONS:
        after = 0
        while True:
            page = store.audit(action=action, since=since, after=after, limit=AUDIT_PAGE_MAX)
            found += page
            if len(page) < AUDIT_PAGE_MAX:
                break
            after = page[-1].id
    return found


class StoreCaller(Protocol):
    """What the poller needs of a `RecordWriter`: a call on the store's own thread."""

    async def call(self, function: Callable[[RecordStore], T]) -> T: ...


class RevocationPoller:
    """Keeps a `Revocations` up to date from the audit log: the whole log once, then a recent window per poll."""

    def __init__(self, revocations: Revocations, writer: StoreCaller, interval: float = POLL_SECONDS,
                 overlap: float = OVERLAP_SECONDS) -> None:
        self.revocations = revocations
        self.writer = writer
        self.interval = interval
        self.overlap = overlap
        self._read_from: float | None = None  # UNIX time the last successful poll started; None: read everything
        self._failing = False

    async def poll(self) -> int:
        """One read of the audit log; the number of newly revoked subjects. Raises StoreError."""
        started = time.time()
        since = None if self._read_from is None else datetime.fromtimestamp(self._read_from - self.overlap, UTC)
        entries = await self.writer.call(lambda store: read_revoking_entries(store, since))
        added = self.revocations.take(entries)
        self._read_from = started
        if added:
            logger.info("%d consent(s) revoked by erasure or withdrawal now refused", added)  # never the ids
        return added

    async def run(self) -> None:
        """Poll until cancelled; a store error is logged once (and its end) and the next poll tries again."""
        while True:
            try:
                await self.poll()
                if self._failing:
                    logger.info("revocations: the consent store answers again")
                    self._failing = False
            except StoreError as exc:
                if not self._failing:
                    logger.warning("revocations: cannot read the audit log, retrying every %gs: %s",
                                   self.interval, exc)
                    self._failing = True
            except Exception:  # a bug must not end revocation for the life of the worker
                logger.exception("revocations: poll failed; retrying")
            await asyncio.sleep(self.interval)
