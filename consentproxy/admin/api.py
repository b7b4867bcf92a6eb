"""The admin API (`/api/…` on the admin listener): the privacy officer's and operator's tools.

Every operation needs a bearer token of sufficient scope (see `auth`) and
is audited: the entry (token name, action, site, a commitment of the consent
id, status, outcome) is committed before the answer leaves, so nothing is
disclosed or changed without its record; if the audit cannot be written the
answer is 503 and nothing is disclosed. Requests without a valid token are
refused with 401 and only logged (they name no one the audit could hold to
account). An erasure and its audit entry share one transaction.

An erasure or a withdrawal on the visitor's behalf also ends the consent the
visitor's cookie carries: the successful audit entry is what every worker's
revocation set (`consent.revocations`) reads, and this worker adds it at once.

Short store calls run on the worker's `RecordWriter` thread, between consent
commits; the long ones (an event export, a verification, a signed export
file) open a connection of their own on a thread, so they never hold up
visitors' decisions.

Signed exports (`/api/sites/{site}/exports`, `/api/exports/…`) are the CLI's
`consentproxy export`, written to `DATA_DIR/exports/` (see `exports`) so that
logs of any size stream to disk and then to the client, and a downloaded pair
verifies with `consentproxy verify`.

`OPERATIONS` lists every route with its scope and audit action; the OpenAPI
description (docs/admin-api.yaml) is tested against it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from consentproxy.admin import exports as export_files
from consentproxy.admin.auth import AdminContext, AdminToken, bearer
from consentproxy.admin.verification import verify_site
from consentproxy.config.model import AdminScope, SiteConfig
from consentproxy.config.secrets import SecretError, read_secret
from consentproxy.consent.notice import site_notice
from consentproxy.consent.revocations import REVOCATIONS, Revocations
from consentproxy.inventory.listing import chosen, item
from consentproxy.records.checkpoint import load_private_key, public_key_text
from consentproxy.records.export import FORMATS, ExportError, ExportResult, Progress, export_site, parse_time
from consentproxy.records.export import verify_export as verify_export_at
from consentproxy.records.manifest import MANIFEST_SUFFIX
from consentproxy.records.model import ConsentEvent, iso_ms, utc_ms
from consentproxy.records.store import AuditEntry, RecordStore, StoreError, StoreUnavailable, subject_commitment
from consentproxy.records.writer import RecordWriter

logger = logging.getLogger("consentproxy.admin")

# Consent ids are 128 random bits in base64url (consent.state.new_principal); anything else (an e-mail
# address pasted by mistake) is refused, so the audit's unkeyed commitment never hides a guessable value.
_CONSENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SITE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
STREAM_BATCH = 500  # events per chunk of an NDJSON export
AUDIT_LIMIT_DEFAULT = 1000
FILE_CHUNK = 256 * 1024  # bytes per chunk of an export file download
EXPORT_BODY_LIMIT = 4096  # an export request is three short fields
STATS_DEFAULT_DAYS = 30  # the statistics' window without since/until: the last 30 UTC days, today included
STATS_MAX_DAYS = 3660  # ten years: every day is listed, zeros too
_CATEGORY_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True)
class AdminStore:
    """The consent log as the admin API reaches it."""

    writer: RecordWriter  # short calls, taking turns with the consent API's commits
    open_reader: Callable[[], RecordStore]  # long reads, on a connection of their own
    #: a configured site by name (None when not configured): a withdrawal is recorded under its current notice
    site_config: Callable[[str], SiteConfig | None] = lambda name: None
    revocations: Revocations = REVOCATIONS  # this worker's; the others learn of a revocation from the audit log


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    scope: AdminScope
    action: str  # as the audit log names it; `access` and `erasure` are rights requests


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/api/inventory", "read", "inventory"),
    Operation("GET", "/api/sites", "read", "sites"),
    Operation("GET", "/api/sites/{site}/inventory", "read", "site_inventory"),
    Operation("GET", "/api/sites/{site}/stats", "read", "stats"),
    Operation("GET", "/api/sites/{site}/consents/{consent_id}", "read", "access"),
    Operation("DELETE", "/api/sites/{site}/consents/{consent_id}", "full", "erasure"),
    Operation("POST", "/api/sites/{site}/consents/{consent_id}/withdraw", "full", "withdrawal"),
    Operation("GET", "/api/sites/{site}/events", "read", "events"),
    Operation("GET", "/api/sites/{site}/verify", "read", "verify"),
    Operation("GET", "/api/sites/{site}/notices", "read", "notices"),
    Operation("GET", "/api/sites/{site}/checkpoints", "read", "checkpoints"),
    Operation("POST", "/api/sites/{site}/checkpoints", "full", "checkpoint"),
    Operation("POST", "/api/sites/{site}/exports", "full", "export"),
    Operation("GET", "/api/exports", "read", "exports"),
    # Before `/api/exports/{name}`, which would match the manifest's name too.
    Operation("GET", "/api/exports/{name}" + MANIFEST_SUFFIX, "read", "export_download"),
    Operation("GET", "/api/exports/{name}", "read", "export_download"),
    Operation("DELETE", "/api/exports/{name}", "full", "export_delete"),
    Operation("GET", "/api/exports/{name}/verify", "read", "export_verify"),
    Operation("GET", "/api/audit", "read", "audit"),
)


class ApiFailure(Exception):
    """An answer other than success: status, stable code, a sentence for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def unavailable(error: StoreError) -> JSONResponse:
    retry = error.retry_after if isinstance(error, StoreUnavailable) else 5
    logger.warning("admin API: consent store unavailable: %s", error)
    return error_response(503, "store_unavailable", "the consent store cannot be reached just now; nothing was "
                          "done or disclosed; try again", {"Retry-After": str(retry)})


@dataclass(slots=True)
class Call:
    """One authorised request on its way: what the audit entry will say about it."""

    request: Request
    context: AdminContext
    store: AdminStore
    token: AdminToken
    operation: Operation
    site: str | None = None
    subject: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False

    def entry(self, status: int, outcome: str) -> AuditEntry:
        return AuditEntry(token=self.token.name, scope=self.token.scope, action=self.operation.action,
                          status=status, outcome=outcome, site=self.site, subject=self.subject,
                          detail=dict(self.detail))

    async def record(self, status: int, outcome: str) -> None:
        entry = self.entry(status, outcome)
        await self.store.writer.call(lambda store: store.add_audit(entry))
        self.recorded = True

    def name_subject(self) -> None:
        """Site and consent id commitment (or export name) from the path, where well-formed (not yet checked)."""
        if "name" in self.request.path_params:  # the file asked for, unknown names and traversal attempts too
            manifest = self.operation.path.endswith(MANIFEST_SUFFIX)
            self.detail["name"] = str(self.request.path_params["name"])[:200] + (MANIFEST_SUFFIX if manifest else "")
        site = str(self.request.path_params.get("site", ""))
        if _SITE_RE.match(site):
            self.site = site
            consent_id = str(self.request.path_params.get("consent_id", ""))
            if _CONSENT_ID_RE.match(consent_id):
                self.subject = subject_commitment(site, consent_id)

    async def known_site(self) -> str:
        """The `{site}` of the path, if configured or in the log (a removed site's records stay reachable)."""
        site = str(self.request.path_params["site"])
        if not _SITE_RE.match(site):
            raise ApiFailure(404, "unknown_site", "no such site")
        self.site = site
        if site not in self.context.sites and site not in await self.store.writer.call(lambda s: s.sites()):
            raise ApiFailure(404, "unknown_site", f"no site {site!r} is configured or in the consent log")
        return site

    def consent_id(self, site: str) -> str:
        consent_id = str(self.request.path_params["consent_id"])
        if not _CONSENT_ID_RE.match(consent_id):
            raise ApiFailure(400, "bad_consent_id", "a consent id is the 22-character code the banner's settings "
                             "show (letters, digits, '-' and '_')")
        self.subject = subject_commitment(site, consent_id)
        return consent_id

    def time_param(self, name: str) -> datetime | None:
        """An ISO 8601 time or date from the query; without a zone it is UTC."""
        text = self.request.query_params.get(name, "").strip()
        if not text:
            return None
        try:
            # A '+' of an unencoded offset arrives as a space.
            moment = datetime.fromisoformat(text.replace(" ", "+") if "T" in text else text)
        except ValueError:
            raise ApiFailure(400, "bad_parameter", f"{name} must be an ISO 8601 time such as 2025-01-31 or "
                             "2025-01-31T12:00:00Z") from None
        return utc_ms(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        text = self.request.query_params.get(name, "").strip()
        if not text:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            raise ApiFailure(400, "bad_parameter", f"{name} must be a whole number from {low} to {high}")
        return int(text)

    def bool_param(self, name: str) -> bool | None:
        text = self.request.query_params.get(name, "").strip().lower()
        if not text:
            return None
        if text not in _BOOLEANS:
            raise ApiFailure(400, "bad_parameter", f"{name} must be true or false")
        return _BOOLEANS[text]

    def date_param(self, name: str) -> date | None:
        text = self.request.query_params.get(name, "").strip()
        if not text:
            return None
        try:
            if len(text) == 10:  # fromisoformat takes 20250131 and week dates too; a day is asked for
                return date.fromisoformat(text)
        except ValueError:
            pass
        raise ApiFailure(400, "bad_parameter", f"{name} must be a day written YYYY-MM-DD (UTC), such as 2025-01-31")

    def export_key(self) -> Ed25519PrivateKey:
        """The Ed25519 export key, read now (a rotated key file applies without a reload)."""
        ref = self.context.export_key_ref
        if ref is None:
            raise ApiFailure(409, "no_export_key", "no [secrets] export_key is configured")
        try:
            return load_private_key(read_secret(ref))
        except (SecretError, ValueError) as exc:
            raise ApiFailure(409, "no_export_key", f"[secrets] export_key cannot be used: {exc}") from None


Handler = Callable[[Call], Awaitable[Response]]


# -- handlers -----------------------------------------------------------------------


async def inventory(call: Call) -> Response:
    """Every site's (or `?site=`'s) inventory; its cookies as before, and the third-party hosts."""
    site = call.request.query_params.get("site") or None
    call.site = site
    found = await call.store.writer.call(lambda store: store.inventory(site))
    return JSONResponse({"site": site, "cookies": [item(s) for s in found if s.kind == "cookie"],
                         "hosts": [item(s) for s in found if s.kind == "host"]})


async def site_inventory(call: Call) -> Response:
    """One site's inventory, unknown items first, then those seen before consent; filtered as asked."""
    site = await call.known_site()
    kind = call.request.query_params.get("kind") or None
    if kind not in (None, "cookie", "host", "vendor"):
        raise ApiFailure(400, "bad_parameter", "kind must be cookie, host or vendor")
    category = call.request.query_params.get("category") or None
    if category is not None and not _CATEGORY_RE.match(category):
        raise ApiFailure(400, "bad_parameter", "category must be a category id such as statistics or unknown")
    unknown, before_consent = call.bool_param("unknown"), call.bool_param("before_consent")
    found = await call.store.writer.call(lambda store: store.inventory(site, kind))
    items = [item(s) for s in chosen(found, unknown=unknown, before_consent=before_consent, category=category)]
    call.detail["items"] = len(items)
    return JSONResponse({"site": site, "items": items})


def _wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format", "").strip().lower()
    if fmt:
        if fmt not in ("json", "csv"):
            raise ApiFailure(400, "bad_parameter", "format must be json or csv")
        return fmt == "csv"
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return "text/csv" in accepted and "application/json" not in accepted


async def stats(call: Call) -> Response:
    """Consent statistics per UTC day and category (JSON, or CSV with format=csv or Accept: text/csv)."""
    site = await call.known_site()
    as_csv = _wants_csv(call.request)
    since, until = call.date_param("since"), call.date_param("until")
    if until is None:
        until = max(datetime.now(UTC).date(), since) if since is not None else datetime.now(UTC).date()
    if since is None:
        since = until - timedelta(days=STATS_DEFAULT_DAYS - 1)
    if since > until:
        raise ApiFailure(400, "bad_parameter", "since must not be after until")
    if (until - since).days + 1 > STATS_MAX_DAYS:
        raise ApiFailure(400, "bad_parameter", f"a window is at most {STATS_MAX_DAYS} days")
    call.detail.update({"since": since.isoformat(), "until": until.isoformat()})
    found = await call.store.writer.call(lambda store: store.stats(site, since, until))
    if as_csv:
        filename = f"{site}-consent-stats-{since.isoformat()}-{until.isoformat()}.csv"
        return Response(found.to_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return JSONResponse(found.to_dict())


async def sites(call: Call) -> Response:
    configured = call.context.sites

    def read(store: RecordStore) -> list[dict[str, Any]]:
        listed = []
        for name in sorted(set(configured) | set(store.sites())):
            seq, head = store.head(name)
            checkpoints = store.checkpoints(name)
            listed.append({"site": name, "configured": name in configured, "events": store.count(name),
                           "head": {"seq": seq, "hash": head},
                           "last_checkpoint": checkpoints[-1].to_dict() if checkpoints else None})
        return listed

    return JSONResponse({"sites": await call.store.writer.call(read)})


def _portable(event: ConsentEvent) -> dict[str, Any]:
    """An event for its data subject: everything but the salt and the retry token, which serve only the log."""
    data = event.to_dict()
    del data["salt"], data["idempotency_key"]
    return data


async def access(call: Call) -> Response:
    site = await call.known_site()
    consent_id = call.consent_id(site)

    def read(store: RecordStore) -> tuple[list[ConsentEvent], dict[str, Any]]:
        events = store.events_of(site, consent_id)
        notices = [store.notice(notice_id) for notice_id in sorted({e.notice_id for e in events})]
        call.detail["events"] = len(events)
        store.add_audit(call.entry(200, "ok"))  # before anything is disclosed
        return events, {n.id: n.to_dict() for n in notices if n is not None}

    events, notices = await call.store.writer.call(read)
    call.recorded = True
    return JSONResponse({"site": site, "consent_id": consent_id, "subject": call.subject,
                         "generated_at": iso_ms(utc_ms()), "events": [_portable(e) for e in events],
                         "notices": notices})


async def erasure(call: Call) -> Response:
    site = await call.known_site()
    consent_id = call.consent_id(site)
    entry = call.entry(200, "ok")
    erased = await call.store.writer.call(lambda store: store.erase(site, consent_id, audit=entry))
    call.recorded = True
    assert call.subject is not None
    call.store.revocations.add(site, call.subject, "erasure")
    body: dict[str, Any] = {"site": site, "subject": call.subject, "erased": erased}
    try:
        body["chain"] = await _verify(call, site)
    except ApiFailure as failure:  # the erasure is done and recorded either way
        body["chain"], body["chain_error"] = None, failure.message
    except StoreError as exc:
        body["chain"], body["chain_error"] = None, f"verification could not run: {exc}"
    return JSONResponse(body)


async def withdrawal(call: Call) -> Response:
    """A withdrawal on the visitor's behalf (they asked the controller, not the banner): recorded in the
    consent log under the site's current notice, every optional category refused, and their cookie revoked.

    The event is committed before its audit entry, in two transactions: if the audit cannot be written the
    answer is 503 and a retry records the withdrawal again (a second withdrawal changes nothing).
    """
    site = await call.known_site()
    consent_id = call.consent_id(site)
    config = call.store.site_config(site)
    if config is None:
        raise ApiFailure(409, "site_not_configured", f"site {site!r} is no longer configured: a withdrawal is "
                         "recorded under the site's current notice, and there is none")
    notice = site_notice(config)
    now = utc_ms()
    choices = {category: category == "necessary" for category in config.consent.category_ids}

    def run(store: RecordStore) -> ConsentEvent | None:
        if not store.events_of(site, consent_id):
            return None
        store.put_notice(notice)
        (stored,) = store.append([ConsentEvent.new(
            site=site, principal=consent_id, notice_id=notice.id, event_type="withdrawn", method="withdraw",
            choices=choices, expires_at=now + timedelta(days=config.consent.validity_days), time=now)])
        call.detail.update({"record_id": stored.record_id, "seq": stored.seq, "notice_id": notice.id})
        store.add_audit(call.entry(201, "ok"))
        return stored

    stored = await call.store.writer.call(run)
    if stored is None:
        raise ApiFailure(404, "unknown_consent", f"site {site!r} holds no record of this consent id (never "
                         "recorded, or erased)")
    call.recorded = True
    assert call.subject is not None
    call.store.revocations.add(site, call.subject, "withdrawal")
    return JSONResponse({"site": site, "subject": call.subject, "withdrawn": True,
                         "event": _portable(stored)}, status_code=201)


async def _verify(call: Call, site: str) -> dict[str, Any]:
    public_key = call.export_key().public_key()

    def run() -> dict[str, Any]:
        with call.store.open_reader() as reader:
            return verify_site(reader, site, public_key)

    return await asyncio.to_thread(run)


async def verify(call: Call) -> Response:
    site = await call.known_site()
    verdict = await _verify(call, site)
    call.detail.update({"ok": verdict["ok"], "code": verdict["code"], "count": verdict["count"]})
    return JSONResponse(verdict)


def _lines(events: Iterator[ConsentEvent], count: int) -> bytes:
    return b"".join(orjson.dumps(event.to_dict()) + b"\n" for event in islice(events, count))


async def events(call: Call) -> Response:
    site = await call.known_site()
    since, until = call.time_param("since"), call.time_param("until")
    call.detail.update({"since": since and iso_ms(since), "until": until and iso_ms(until)})
    filename = f"{site}-events.ndjson"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if call.request.method == "HEAD":  # the headers only: no reason to read the whole log
        return Response(media_type="application/x-ndjson", headers=headers)
    reader = await asyncio.to_thread(call.store.open_reader)
    try:
        await call.record(200, "ok")
    except BaseException:
        reader.close()
        raise

    async def stream() -> AsyncIterator[bytes]:
        # Pulled a batch at a time as the client reads: memory stays flat whatever the log's size.
        # A store failure part-way aborts the connection, so a cut-off export never looks complete.
        try:
            found = reader.events(site, since, until)
            while chunk := await asyncio.to_thread(_lines, found, STREAM_BATCH):
                yield chunk
        finally:
            reader.close()

    return StreamingResponse(stream(), media_type="application/x-ndjson", headers=headers)


async def checkpoints(call: Call) -> Response:
    site = await call.known_site()
    found = await call.store.writer.call(lambda store: store.checkpoints(site))
    return JSONResponse({"site": site, "checkpoints": [cp.to_dict() for cp in found]})


async def checkpoint(call: Call) -> Response:
    site = await call.known_site()
    key = call.export_key()
    signed = await call.store.writer.call(lambda store: store.add_checkpoint(site, key))
    if signed is None:
        raise ApiFailure(409, "no_events", f"site {site!r} has no events to sign yet")
    call.detail.update({"seq": signed.seq, "head": signed.head})
    return JSONResponse({**signed.to_dict(), "public_key": public_key_text(key.public_key())}, status_code=201)


async def notices(call: Call) -> Response:
    """The notice versions a site's log holds (what visitors were shown, revision by revision), oldest first."""
    site = await call.known_site()
    found = await call.store.writer.call(lambda store: store.notices(site))
    return JSONResponse({"site": site, "notices": [n.to_dict() for n in found]})


async def audit(call: Call) -> Response:
    site = call.request.query_params.get("site") or None
    consent_id = call.request.query_params.get("consent_id") or None
    subject = None
    if consent_id is not None:
        if site is None:
            raise ApiFailure(400, "bad_parameter", "consent_id needs site: a consent id belongs to one site")
        if not _CONSENT_ID_RE.match(consent_id):
            raise ApiFailure(400, "bad_consent_id", "not a consent id")
        subject = subject_commitment(site, consent_id)
    action = call.request.query_params.get("action") or None
    since, until = call.time_param("since"), call.time_param("until")
    after = call.int_param("after", 0, 0, 2**62)
    limit = call.int_param("limit", AUDIT_LIMIT_DEFAULT, 1, 10_000)
    call.detail.update({k: v for k, v in (("site", site), ("action", action), ("after", after)) if v})
    found = await call.store.writer.call(lambda store: store.audit(
        since=since, until=until, site=site, action=action, subject=subject, after=after, limit=limit))
    return JSONResponse({"entries": [e.to_dict() for e in found],
                         "next_after": found[-1].id if len(found) == limit else None})


# -- signed export files ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportRequest:
    fmt: str
    since: datetime | None
    until: datetime | None
    asked: tuple[str | None, str | None]  # as written, kept in the manifest


async def _export_request(call: Call) -> ExportRequest:
    """The JSON body `{"format", "since", "until"}`, all optional; read the way the CLI reads its options."""
    body = b""
    async for chunk in call.request.stream():
        body += chunk
        if len(body) > EXPORT_BODY_LIMIT:
            raise ApiFailure(400, "bad_parameter", "the request body is too long for an export request")
    try:
        fields = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise ApiFailure(400, "bad_parameter", "the body must be a JSON object such as "
                         '{"format": "csv", "since": "2025-01-01", "until": "2025-01-31"}') from None
    if not isinstance(fields, dict):
        raise ApiFailure(400, "bad_parameter", "the body must be a JSON object")
    unknown = sorted(set(fields) - {"format", "since", "until"})
    if unknown:
        raise ApiFailure(400, "bad_parameter", f"unknown field(s) {', '.join(unknown)}; "
                         "an export takes format, since and until")
    fmt = fields.get("format") or "ndjson"
    if fmt not in FORMATS:
        raise ApiFailure(400, "bad_parameter", f"format must be one of {', '.join(FORMATS)}")
    moments: list[datetime | None] = []
    for name in ("since", "until"):
        text = fields.get(name)
        if text is not None and not isinstance(text, str):
            raise ApiFailure(400, "bad_parameter", f"{name} must be a string (ISO 8601)")
        try:
            moments.append(parse_time(text, end_of_day=name == "until") if text else None)
        except ValueError as exc:
            raise ApiFailure(400, "bad_parameter", f"{name}: {exc}") from None
    since, until = moments
    if since is not None and until is not None and since >= until:
        raise ApiFailure(400, "bad_parameter", "since must be before until")
    return ExportRequest(str(fmt), since, until, (fields.get("since") or None, fields.get("until") or None))


class _Abandoned(Exception):
    """The request went away during its export: stop writing and keep nothing."""


class _StopWhenAbandoned(Progress):
    """`export_site` reports every record here, which lets an abandoned export stop at the next one."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(None, "export")
        self._stop = stop

    def update(self, done: int, force: bool = False) -> None:
        if self._stop.is_set():
            raise _Abandoned


def _discard(future: asyncio.Future[ExportResult]) -> None:
    """An export that finished for a request no longer there: its files go, unanswered and unaudited."""
    if not future.cancelled() and future.exception() is None:
        result = future.result()
        export_files.remove(result.path.parent, result.path.name)


async def _write_export(call: Call, site: str, out: Path, asked: ExportRequest,
                        key: Ed25519PrivateKey) -> ExportResult:
    """`export_site` on its own connection and thread; a cancelled request leaves no files behind."""
    stop = threading.Event()

    def run() -> ExportResult:
        with call.store.open_reader() as reader:
            return export_site(reader, site, out, asked.fmt, key, since=asked.since, until=asked.until,
                               asked=asked.asked, progress=_StopWhenAbandoned(stop))

    future = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        return await asyncio.shield(future)  # shielded: a result that comes after a cancel is still cleaned up
    except asyncio.CancelledError:
        stop.set()
        future.add_done_callback(_discard)
        raise
    except ExportError as exc:
        raise ApiFailure(409, "export_refused", str(exc)) from None
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise ApiFailure(507 if full else 500, "export_not_written",
                         f"the export could not be written: {exc.strerror or exc}; nothing was kept") from None


async def create_export(call: Call) -> Response:
    site = await call.known_site()
    asked = await _export_request(call)
    call.detail.update({"format": asked.fmt, "since": asked.asked[0], "until": asked.asked[1]})
    key = call.export_key()
    directory = await asyncio.to_thread(export_files.exports_dir, call.context.data_dir, True)
    name = export_files.new_name(site, asked.fmt)
    result = await _write_export(call, site, directory / name, asked, key)
    manifest = result.manifest
    call.detail.update({"name": name, "count": manifest["count"], "first_seq": manifest["first_seq"],
                        "last_seq": manifest["last_seq"], "sha256": manifest["sha256"]})
    try:
        await call.record(201, "ok")
    except BaseException:  # not audited, so not kept: exports hold personal data
        await asyncio.to_thread(export_files.remove, directory, name)
        raise
    download = export_files.download_path(name)
    return JSONResponse({
        "name": name, "bytes": manifest["bytes"], "seconds": round(result.seconds, 3),
        "download": download, "manifest_download": download + MANIFEST_SUFFIX, "manifest": manifest,
    }, status_code=201, headers={"Location": download})


async def list_exports(call: Call) -> Response:
    directory = export_files.exports_dir(call.context.data_dir)
    listed = await asyncio.to_thread(export_files.listing, directory)
    call.detail["exports"] = len(listed)
    return JSONResponse({"exports": listed})


def _unknown_export(name: str) -> ApiFailure:
    return ApiFailure(404, "unknown_export", f"no export named {name[:200]!r}; GET /api/exports lists them")


async def download_export(call: Call) -> Response:
    name = str(call.request.path_params["name"])
    manifest = call.operation.path.endswith(MANIFEST_SUFFIX)
    directory = export_files.exports_dir(call.context.data_dir)
    opened = await asyncio.to_thread(export_files.open_download, directory, name, manifest)
    if opened is None:
        raise _unknown_export(name)
    handle = opened.handle
    headers = {"Content-Disposition": f'attachment; filename="{opened.filename}"',
               "Content-Length": str(opened.size)}
    media = export_files.media_type(opened.filename)
    if call.request.method == "HEAD":
        handle.close()
        return Response(media_type=media, headers=headers)
    try:
        await call.record(200, "ok")
    except BaseException:
        handle.close()
        raise

    async def stream() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
                yield chunk
        finally:
            handle.close()

    return StreamingResponse(stream(), media_type=media, headers=headers)


async def delete_export(call: Call) -> Response:
    name = str(call.request.path_params["name"])
    directory = export_files.exports_dir(call.context.data_dir)
    if name not in await asyncio.to_thread(export_files.data_names, directory):
        raise _unknown_export(name)
    await call.record(200, "ok")  # before the files go, like every change
    try:
        removed = await asyncio.to_thread(export_files.remove, directory, name)
    except OSError as exc:
        raise ApiFailure(500, "export_not_removed", f"the export could not be removed: {exc.strerror or exc}; "
                         "try again") from None
    return JSONResponse({"name": name, "removed": removed})


async def verify_export_file(call: Call) -> Response:
    """`consentproxy verify` on an export file where it lies: the manifest's signature (by the configured
    export key when there is one), the chain and every line."""
    name = str(call.request.path_params["name"])
    directory = export_files.exports_dir(call.context.data_dir)
    if name not in await asyncio.to_thread(export_files.data_names, directory):
        raise _unknown_export(name)
    pinned = call.export_key().public_key() if call.context.export_key_ref is not None else None
    report = await asyncio.to_thread(verify_export_at, directory / name, pinned)
    call.detail.update({"ok": report.status == 0})
    return JSONResponse({"name": name, "ok": report.status == 0, "status": report.status,
                         "verdict": report.verdict, "details": list(report.details)})


HANDLERS: dict[str, Handler] = {
    "inventory": inventory, "site_inventory": site_inventory, "stats": stats,
    "sites": sites, "access": access, "erasure": erasure, "withdrawal": withdrawal,
    "events": events,
    "verify": verify, "notices": notices,
    "checkpoints": checkpoints, "checkpoint": checkpoint, "audit": audit,
    "export": create_export, "exports": list_exports, "export_download": download_export,
    "export_delete": delete_export, "export_verify": verify_export_file,
}


# -- authorisation and audit around every handler ---------------------------------------


def _unauthorized(presented: bool) -> JSONResponse:
    challenge = 'Bearer realm="consentproxy-admin"' + (', error="invalid_token"' if presented else "")
    return error_response(401, "unauthorized", "a valid admin token is required (Authorization: Bearer …)",
                          {"WWW-Authenticate": challenge})


async def perform(call: Call) -> Response:
    """The scope check, the handler and its audit entry: every API call and every console action goes through
    here, so the console can do nothing the API would not, and nothing unaudited."""
    call.name_subject()  # so that a refusal's audit entry says what was asked for, too
    operation, token = call.operation, call.token
    outcome = "ok"
    try:
        if not token.allows(operation.scope):
            raise ApiFailure(403, "insufficient_scope",
                             f"{operation.action} needs a token of scope {operation.scope}; "
                             f"token {token.name!r} has scope {token.scope}",
                             {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{operation.scope}"'})
        response = await HANDLERS[operation.action](call)
    except ApiFailure as failure:
        response, outcome = failure.response(), failure.code
    except StoreError as exc:
        return unavailable(exc)
    if not call.recorded:
        try:
            await call.record(response.status_code, outcome)
        except StoreError as exc:
            return unavailable(exc)
    return response


def operation(method: str, path: str) -> Operation:
    """The operation of OPERATIONS with this method and path template."""
    return next(op for op in OPERATIONS if op.method == method and op.path == path)


def _guarded(operation: Operation, context_of: Callable[[], AdminContext],
             store: AdminStore) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        context = context_of()
        header = request.headers.get("authorization", "")
        token = context.identify(header)
        if token is None:
            client = request.client.host if request.client else "-"
            logger.warning("admin API: %s %s from %s refused: %s", request.method, request.url.path, client,
                           "unknown token" if bearer(header) else "no bearer token")
            return _unauthorized(bearer(header) is not None)
        return await perform(Call(request, context, store, token, operation))

    return endpoint


def api_routes(context_of: Callable[[], AdminContext], store: AdminStore) -> list[Route]:
    return [Route(op.path, _guarded(op, context_of, store), methods=[op.method],
                  name=f"{op.action}") for op in OPERATIONS]
