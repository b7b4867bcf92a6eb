"""The visitor consent API at the consent prefix: `GET` the state, `POST` a decision.

The banner calls it with `fetch`; the answer is the new state as JSON and
the signed consent cookie, sent only once the decision is committed to the
consent log (503 with Retry-After otherwise: nothing is acknowledged that is
not stored, and the visitor stays undecided). A decision can only be made by the site's own
pages: a cross-site Origin or Sec-Fetch-Site is refused (the Origin's scheme,
host and port must all be the site's), and a JSON content type is required
(an HTML form cannot send one without a CORS preflight, which is never
granted). Each of these three headers may come once: which of two a check
would read is a guess an attacker could steer. Errors are JSON with a stable
code and a sentence.

A consent ended through the admin API (an erasure, a withdrawal on the
visitor's behalf: `consent.revocations`) reads as undecided, its cookie is
expired, its principal is never reused, and its receipt says what happened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import orjson

from consentproxy.config.model import CATEGORY_IDS, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.consent.notice import site_notice
from consentproxy.consent.state import ConsentCodec, ConsentState, consent_set_cookie, new_principal
from consentproxy.cookies.enforcement import CONSENT_COOKIE, DECISION, REVOKED, CookieEnforcement
from consentproxy.observability import metrics
from consentproxy.privacy.ip import reduce_ip
from consentproxy.proxy.pipeline import Endpoint, Exchange, Receive, Reply
from consentproxy.proxy.requestbody import BodyTooLarge, ClientGone, read_body
from consentproxy.proxy.sites import normalise_host
from consentproxy.records import (
    ConsentEvent,
    NoticeVersion,
    RecordStore,
    RecordWriter,
    StoreError,
    StoreUnavailable,
    event_type_for,
)
from consentproxy.records.minimise import ua_family
from consentproxy.records.stats import outcomes
from consentproxy.records.store import AuditEntry, subject_commitment

#: gpc_signal: the banner records the browser's Global Privacy Control signal as a refusal
ACTIONS = ("accept_all", "reject_all", "save_selection", "withdraw", "gpc_signal")
MAX_BODY = 4096
_MAX_KEY = 200
#: the request headers a decision is judged by: each may come once
_SINGLE_HEADERS = (b"origin", b"content-type", b"sec-fetch-site")
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"vary", b"Cookie"),
]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or []


def state_json(decision: Decision, revision: int) -> dict[str, Any]:
    """What the banner and the visitor see of a decision (never the cookie itself)."""
    state = decision.state
    return {
        "principal": state.principal if state else None,
        "decided": state is not None,
        "granted": [c for c in CATEGORY_IDS if c in decision.allowed],
        "choices": {c: c in decision.allowed for c in CATEGORY_IDS},
        "revision": revision,
        "decided_at": state.decided_at if state else None,
        "expires_at": state.expires_at if state else None,
        "method": state.method if state else None,
        "gpc": decision.kind == "gpc",
    }


def json_reply(status: int, body: object, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, [*_JSON_HEADERS, *(extra or [])], orjson.dumps(body))


def error_reply(error: ApiError) -> Reply:
    return json_reply(error.status, {"error": error.code, "message": str(error)}, error.headers)


@dataclass(frozen=True, slots=True)
class Request:
    """A validated POST body."""

    action: str
    granted: frozenset[str]


class ConsentApi(Endpoint):
    """`/_consent` for one site. Steps before it have put the visitor's decision in `exchange.extra`."""

    def __init__(self, site: SiteConfig, codec: ConsentCodec, cookies: CookieEnforcement,
                 records: RecordWriter) -> None:
        self.site = site.name
        self.consent = site.consent
        self.codec = codec
        self.cookies = cookies
        self.records = records
        self._site_config = site
        self._notice: NoticeVersion | None = None
        self._notice_stored = False

    @property
    def notice(self) -> NoticeVersion:
        """The site's notice version, made at its first use: most of 10,000 sites get no consent between
        two reloads, and a reload must not spend a millisecond on each of them."""
        notice = self._notice
        if notice is None:
            notice = self._notice = site_notice(self._site_config)
        return notice

    def read(self, exchange: Exchange) -> Reply:
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        return json_reply(200, state_json(decision, self.consent.revision), self._revoked_expiries(exchange))

    def _revoked_expiries(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        """For a revoked consent cookie: its expiry and that of every cookie it no longer allows."""
        if REVOKED not in exchange.extra:
            return []
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        return [self.cookies.consent_cookie_expiry(exchange), *self.cookies.expiries_for(exchange, decision.allowed)]

    def _revoked_principal(self, exchange: Exchange) -> str | None:
        """The principal of the consent cookie sent, if its consent was revoked (its state then reads as None)."""
        cookie: bytes | None = exchange.extra.get(CONSENT_COOKIE)
        if REVOKED not in exchange.extra or not cookie:
            return None
        previous = self.codec.verified(cookie.decode("latin-1"))
        return previous.principal if previous is not None else None

    async def _receipt(self, exchange: Exchange) -> Reply:
        """The visitor's own record, every event of their principal, as a download (access and portability).

        After an erasure there is nothing left to show: 410 says so (a bare 404 would read as "never
        recorded"). After a withdrawal on their behalf the record stands, the withdrawal last.
        """
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        state = decision.state
        if exchange.extra.get(REVOKED) == "erasure":
            raise _erased(self._revoked_expiries(exchange))
        principal = state.principal if state is not None else self._revoked_principal(exchange)
        if principal is None:
            raise ApiError(404, "no_decision", "there is no decision of yours on this site")
        record = await self._store_call(lambda store: self._read_own_record(store, principal))
        if record is None:  # erased a moment ago, on a worker whose poll has not reached this one yet
            self.cookies.revocations.add(self.site, subject_commitment(self.site, principal), "erasure")
            raise _erased([self.cookies.consent_cookie_expiry(exchange)])
        events, notices = record
        body = {
            "site": self.site,
            "controller": self.consent.controller or self.site,
            "privacy_url": self.consent.privacy_url,
            "principal": principal,
            "generated_at": int(time.time()),
            "current": state_json(decision, self.consent.revision),
            "events": [_receipt_event(event) for event in events],
            "notices": {n.id: n.to_dict() for n in notices if n is not None},
        }
        return json_reply(200, body, [(b"content-disposition", b'attachment; filename="consent-receipt.json"'),
                                      *self._revoked_expiries(exchange)])

    def _read_own_record(self, store: RecordStore, principal: str) -> tuple[list[ConsentEvent],
                                                                           list[NoticeVersion | None]] | None:
        """The visitor's events and notices; the access request itself is audited before anything is shown.

        None when there are none because they were erased (the audit log says so).
        """
        events = store.events_of(self.site, principal)
        subject = subject_commitment(self.site, principal)
        if not events and any(200 <= entry.status < 300 and entry.outcome == "ok" for entry in store.audit(
                site=self.site, action="erasure", subject=subject, limit=100)):
            return None
        notices = [store.notice(n) for n in sorted({event.notice_id for event in events})]
        store.add_audit(AuditEntry(
            token="visitor",  # noqa: S106 - who asked (the visitor themselves), not a secret
            scope="own", action="access", status=200, outcome="ok", site=self.site,
            subject=subject, detail={"via": "receipt", "events": len(events)}))
        return events, notices

    async def _store_call(self, function: Any) -> Any:
        try:
            return await self.records.call(function)
        except StoreError as exc:
            raise _unavailable(exc) from None

    async def respond(self, exchange: Exchange, receive: Receive) -> Reply:
        try:
            if exchange.method == "POST":
                return await self._decide(exchange, receive)
            reply = await self._receipt(exchange)
            return Reply(reply.status, reply.headers, b"") if exchange.method == "HEAD" else reply
        except ApiError as error:
            metrics.inc(metrics.CONSENT_API_ERRORS, self.site, error.code)
            return error_reply(error)

    async def _decide(self, exchange: Exchange, receive: Receive) -> Reply:
        headers = single_headers(exchange.request_headers)
        check_same_origin(headers, exchange.public_origin())
        key = idempotency_key(headers)
        content_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise ApiError(415, "unsupported_media_type", "send the decision as application/json")
        declared = exchange.owned_headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, "body_too_large", f"a decision is at most {MAX_BODY} bytes")
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLarge:
            raise ApiError(413, "body_too_large", f"a decision is at most {MAX_BODY} bytes") from None
        except ClientGone:
            raise ApiError(400, "client_gone", "the request body did not arrive") from None
        request = parse_decision(body)
        if request.action == "gpc_signal" and headers.get(b"sec-gpc", b"").strip() != b"1":
            raise ApiError(422, "gpc_not_sent", "gpc_signal records a Sec-GPC: 1 request header, and this request "
                                                "has none")
        cookie: bytes = exchange.extra.get(CONSENT_COOKIE) or b""
        previous = self.codec.verified(cookie.decode("latin-1")) if cookie else None
        if previous is not None and self.cookies.revocations.reason(self.site, previous.principal) is not None:
            previous = None  # an erased or withdrawn-on-behalf consent id is never used again: a new one
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        event = self._event(exchange, request, previous, key, headers.get(b"user-agent"), decision)
        if not self._notice_stored:
            await self._store_call(lambda store: store.put_notice(self.notice))
            self._notice_stored = True
        try:
            stored = await self.records.record(event)
        except StoreError as exc:
            raise _unavailable(exc) from None
        if stored.record_id != event.record_id:
            # A retry: the key was recorded before (by this or another instance); answer as then.
            if stored.method != event.method or dict(stored.choices) != dict(event.choices):
                raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for another decision")
            if stored.principal is None:
                raise ApiError(409, "erased", "this decision was erased on request")
            if self.cookies.revocations.reason(self.site, stored.principal) is not None:
                raise ApiError(409, "revoked", "this decision was withdrawn on request; make a new one")
        else:
            metrics.inc(metrics.CONSENT_DECISIONS, self.site, request.action)
            for category, outcome in outcomes(stored.event_type, stored.choices):
                metrics.inc(metrics.CONSENT_OUTCOMES, self.site, category, outcome)
        state = ConsentState(
            principal=stored.principal or event.principal or "", granted=request.granted,
            revision=self.consent.revision, decided_at=int(stored.time.timestamp()),
            expires_at=int(stored.expires_at.timestamp()), method=request.action,
        )
        set_cookie = consent_set_cookie(self.codec, state, self.consent.cookie_name, exchange.scheme == "https")
        rows = [(b"set-cookie", set_cookie), *self.cookies.expiries_for(exchange, request.granted)]
        return json_reply(200, state_json(Decision("explicit", request.granted, state), self.consent.revision), rows)

    def _event(self, exchange: Exchange, request: Request, previous: ConsentState | None, key: bytes | None,
               user_agent: bytes | None, decision: Decision) -> ConsentEvent:
        """The record of this decision, with as little personal data as the site asks for."""
        now = dt.datetime.now(dt.UTC)
        choices = {c: c in request.granted for c in CATEGORY_IDS}
        event_type = event_type_for(request.action, choices)  # type: ignore[arg-type]
        if (event_type == "given" and previous is not None and previous.granted == request.granted
                and previous.method != "withdraw"):
            event_type = "renewed"  # the same grant again, after an expiry or a new notice revision
        mode = self.consent.record_ip
        return ConsentEvent.new(
            site=self.site, principal=previous.principal if previous else new_principal(),
            notice_id=self.notice.id, event_type=event_type, method=request.action,  # type: ignore[arg-type]
            choices=choices, expires_at=now + dt.timedelta(days=self.consent.validity_days),
            ip=reduce_ip(exchange.client, mode, self._ip_key(now) if mode == "keyed_hash" else None),
            ua=ua_family(user_agent.decode("latin-1")) if user_agent else None,
            idempotency_key=key.decode("ascii") if key is not None else None, time=now,
            country=decision.country, regime=decision.regime,
        )

    def _ip_key(self, now: dt.datetime) -> bytes:
        """A key that changes every day, so a keyed IP hash links a visitor's records for one day at most."""
        day = now.strftime("%Y-%m-%d").encode("ascii")
        return hmac.new(self.codec.keys[0].key, b"record-ip:" + day, hashlib.sha256).digest()


def _erased(headers: list[tuple[bytes, bytes]]) -> ApiError:
    return ApiError(410, "erased", "your consent record on this site was erased on request; nothing of it is "
                                   "kept, and your earlier choice no longer applies", headers)


def _unavailable(error: StoreError) -> ApiError:
    retry = error.retry_after if isinstance(error, StoreUnavailable) else 5
    return ApiError(503, "store_unavailable", "your choice could not be recorded just now; please try again",
                    [(b"retry-after", str(retry).encode("ascii"))])


def _receipt_event(event: ConsentEvent) -> dict[str, Any]:
    """An event as its principal may see it: no salt or commitments, but the hash that proves it is in the log."""
    data = event.to_dict()
    return {k: data[k] for k in ("record_id", "seq", "time", "event_type", "method", "choices", "expires_at",
                                 "notice_id", "ua", "ip", "country", "hash")}


def single_headers(rows: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request headers by name; 400 when one of those a decision is judged by came more than once."""
    headers: dict[bytes, bytes] = {}
    for name, value in rows:
        if name in headers and name in _SINGLE_HEADERS:
            raise ApiError(400, "duplicate_header", f"the {name.decode('ascii').title()} header came more than "
                                                    "once")
        headers[name] = value
    return headers


def check_same_origin(headers: dict[bytes, bytes], public_origin: str) -> None:
    """Refuse what a browser marks as coming from another site; non-browser clients send neither header.

    `public_origin` is the origin the visitor's browser is on (`Exchange.public_origin`: our scheme and
    Host, or what a trusted proxy in front of us forwarded); an Origin matches it only with the same
    scheme, host and port (a missing port is the scheme's default).
    """
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.strip().lower() not in (b"same-origin", b"none"):
        raise ApiError(403, "cross_site", "a decision can only be sent from the site's own pages")
    origin = headers.get(b"origin")
    if origin is not None:
        ours = _origin_key(public_origin.encode("latin-1"))
        if ours is None or _origin_key(origin.strip()) != ours:
            raise ApiError(403, "cross_site", "a decision can only be sent from the site's own pages")


def _origin_key(origin: bytes) -> tuple[bytes, bytes, int] | None:
    """`https://Shop.NL` → (b"https", b"shop.nl", 443); None for `null` or anything not an http(s) origin."""
    scheme, sep, authority = origin.partition(b"://")
    scheme = scheme.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if not sep or default is None:
        return None
    host = normalise_host(authority)
    if host is None or authority != authority.strip():
        return None
    name, colon, port = host.rpartition(b":")
    if colon and port.isdigit() and not host.endswith(b"]"):
        return scheme, name, int(port)
    return scheme, host, default


def idempotency_key(headers: dict[bytes, bytes]) -> bytes | None:
    key = headers.get(b"idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= _MAX_KEY or not all(0x21 <= byte <= 0x7E for byte in key):
        raise ApiError(400, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {_MAX_KEY} visible ASCII "
                                                       "characters")
    return key


def parse_decision(body: bytes) -> Request:
    """The action and the granted categories, or an ApiError that says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", 'expected a JSON object such as {"action": "accept_all"}')
    unknown = sorted(set(data) - {"action", "choices"})
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field {unknown[0]!r}; expected action and choices")
    action = data.get("action")
    if action not in ACTIONS:
        raise ApiError(422, "unknown_action", f"action must be one of {', '.join(ACTIONS)}")
    choices = data.get("choices")
    chosen: set[str] = set()
    if choices is not None:
        if not isinstance(choices, dict):
            raise ApiError(422, "invalid_choices", "choices must be an object of category: true/false")
        for category, value in choices.items():
            if category not in CATEGORY_IDS:
                raise ApiError(422, "unknown_category", f"unknown category {category!r}; the categories are "
                                                        f"{', '.join(CATEGORY_IDS)}")
            if not isinstance(value, bool):
                raise ApiError(422, "invalid_choices", f"choice for {category!r} must be true or false")
            if category == "necessary" and not value:
                raise ApiError(422, "necessary_required", "the necessary category cannot be refused")
            if value:
                chosen.add(category)
    elif action == "save_selection":
        raise ApiError(422, "choices_required", "save_selection needs choices")
    if action == "accept_all":
        granted = frozenset(CATEGORY_IDS)
    elif action == "save_selection":
        granted = frozenset(chosen | {"necessary"})
    else:
        granted = frozenset({"necessary"})
    return Request(action, granted)
