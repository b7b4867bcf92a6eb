"""The visitor consent API at the consent prefix: `GET` the state, `POST` a decision.

The banner calls it with `fetch`; the answer is the new state as JSON and
the signed consent cookie. A decision can only be made by the site's own
pages: a cross-site Origin or Sec-Fetch-Site is refused, and a JSON content
type is required (an HTML form cannot send one without a CORS preflight,
which is never granted). Errors are JSON with a stable code and a sentence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from consentproxy.config.model import CATEGORY_IDS, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.consent.idempotency import IdempotencyCache, KeyReused, Replay
from consentproxy.consent.state import ConsentCodec, ConsentState, consent_set_cookie, new_principal
from consentproxy.cookies.enforcement import CONSENT_COOKIE, DECISION, CookieEnforcement
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Endpoint, Exchange, Receive, Reply
from consentproxy.proxy.requestbody import BodyTooLarge, ClientGone, read_body

ACTIONS = ("accept_all", "reject_all", "save_selection", "withdraw")
MAX_BODY = 4096
_MAX_KEY = 200
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

    def __init__(self, site: SiteConfig, codec: ConsentCodec, cookies: CookieEnforcement) -> None:
        self.site = site.name
        self.consent = site.consent
        self.codec = codec
        self.cookies = cookies
        self.idempotency = IdempotencyCache()

    def read(self, exchange: Exchange) -> Reply:
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        return json_reply(200, state_json(decision, self.consent.revision))

    def receipt(self, exchange: Exchange) -> Reply:
        """The visitor's own record, as a download (access and portability)."""
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        state = decision.state
        if state is None:
            return error_reply(ApiError(404, "no_decision", "there is no decision of yours on this site"))
        current = state_json(decision, self.consent.revision)
        body = {
            "site": self.site,
            "controller": self.consent.controller or self.site,
            "privacy_url": self.consent.privacy_url,  # per language
            "principal": state.principal,
            "generated_at": int(time.time()),
            "current": current,
            # Without a consent log (see [store]) only the decision in the cookie is known.
            "events": [{"time": state.decided_at, "method": state.method, "choices": current["choices"],
                        "revision": state.revision, "expires_at": state.expires_at}],
            "complete": False,
        }
        return json_reply(200, body, [(b"content-disposition", b'attachment; filename="consent-receipt.json"')])

    async def respond(self, exchange: Exchange, receive: Receive) -> Reply:
        try:
            return await self._decide(exchange, receive)
        except ApiError as error:
            metrics.inc(metrics.CONSENT_API_ERRORS, self.site, error.code)
            return error_reply(error)

    async def _decide(self, exchange: Exchange, receive: Receive) -> Reply:
        headers = {name: value for name, value in exchange.request_headers}
        check_same_origin(headers, exchange.host)
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
        cookie: bytes = exchange.extra.get(CONSENT_COOKIE) or b""
        if key is not None:
            try:
                replay = self.idempotency.get(key, cookie, body)
            except KeyReused:
                raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for another "
                                                              "decision") from None
            if replay is not None:
                return replay.reply
        request = parse_decision(body)
        reply = self._record(exchange, request, cookie)
        if key is not None:
            self.idempotency.put(key, cookie, body, Replay(reply))
        return reply

    def _record(self, exchange: Exchange, request: Request, cookie: bytes) -> Reply:
        now = int(time.time())
        previous = self.codec.verified(cookie.decode("latin-1")) if cookie else None
        state = ConsentState(
            principal=previous.principal if previous else new_principal(),
            granted=request.granted,
            revision=self.consent.revision,
            decided_at=now,
            expires_at=now + self.consent.validity_days * 86400,
            method=request.action,
        )
        decision = Decision("explicit", request.granted, state)
        metrics.inc(metrics.CONSENT_DECISIONS, self.site, request.action)
        set_cookie = consent_set_cookie(self.codec, state, self.consent.cookie_name, exchange.scheme == "https",
                                        now)
        rows = [(b"set-cookie", set_cookie), *self.cookies.expiries_for(exchange, request.granted)]
        return json_reply(200, state_json(decision, self.consent.revision), rows)


def check_same_origin(headers: dict[bytes, bytes], host: bytes) -> None:
    """Refuse what a browser marks as coming from another site; non-browser clients send neither header."""
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.strip().lower() not in (b"same-origin", b"none"):
        raise ApiError(403, "cross_site", "a decision can only be sent from the site's own pages")
    origin = headers.get(b"origin")
    if origin is not None:
        scheme, sep, netloc = origin.strip().lower().partition(b"://")
        if not sep or scheme not in (b"http", b"https") or netloc != host.lower():
            raise ApiError(403, "cross_site", "a decision can only be sent from the site's own pages")


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
