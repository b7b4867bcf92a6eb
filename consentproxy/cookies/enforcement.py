"""The pipeline step that enforces the visitor's choice on cookies, both ways.

Request: the consent cookie is read (HMAC, no database) and never forwarded;
every cookie of a category the visitor did not consent to is cut from the
Cookie header, the rest stays byte-identical and in order.
Response: each Set-Cookie of a non-consented category is dropped, HttpOnly or
not; malformed ones are dropped and counted; every one is counted in the
inventory. Cookies the browser still sent although they are no longer allowed
(a withdrawal, a refusal, a cookie from before the proxy) get expiring
Set-Cookie headers for every domain/path variant. Responses whose cookies
depend on the consent state are marked `Vary: Cookie` and `private`.
"""

from __future__ import annotations

import datetime as dt
import logging

import orjson

from consentproxy.config.model import SiteConfig
from consentproxy.consent.decision import Decision, decide
from consentproxy.consent.state import ConsentCodec
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.expiry import expiring_set_cookies
from consentproxy.cookies.header import cookie_pieces, is_malformed, join_pieces, parse_set_cookie, piece_name
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Exchange, Reply, Step
from consentproxy.proxy.sites import host_name

logger = logging.getLogger("consentproxy.cookies")

DECISION = "consent.decision"
_STALE = "cookies.stale"  # names the browser sent that are not allowed: they get expiries
GPC_PATH = b"/.well-known/gpc.json"


class CookieEnforcement(Step):
    def __init__(self, site: SiteConfig, codec: ConsentCodec, inventory: CookieInventory) -> None:
        self.site = site.name
        self.consent = site.consent
        self.cookie_name = site.consent.cookie_name.encode("latin-1")
        self.codec = codec
        self.classifier = CookieClassifier(site.consent)
        self.inventory = inventory
        self.allow_unknown = site.consent.unknown_cookies == "allow"
        self._gpc_reply = Reply(200, [
            (b"content-type", b"application/json"), (b"cache-control", b"public, max-age=86400"),
            (b"access-control-allow-origin", b"*"),
        ], orjson.dumps({"gpc": True, "lastUpdate": dt.date.today().isoformat()}))

    def allowed(self, name: str, decision: Decision) -> bool:
        category = self.classifier.classify(name).category
        if category == "unknown":
            return self.allow_unknown
        return decision.allows(category)

    # -- request ---------------------------------------------------------------
    def on_request(self, exchange: Exchange) -> Reply | None:
        if exchange.scope["raw_path"] == GPC_PATH:
            return self._gpc_reply
        headers = exchange.request_headers
        consent_value: bytes | None = None
        gpc = False
        cookie_rows: list[int] = []
        for index, (name, value) in enumerate(headers):
            if name == b"cookie":
                cookie_rows.append(index)
            elif name == b"sec-gpc":
                gpc = value.strip() == b"1"
        if cookie_rows:
            consent_value = self._find_consent(headers, cookie_rows)
        state = None
        if consent_value is not None:
            state = self.codec.decode(consent_value.decode("latin-1"), self.consent.revision)
        decision = decide(state, gpc)
        exchange.extra[DECISION] = decision
        metrics.inc(metrics.CONSENT_STATES, self.site, decision.label)
        if cookie_rows:
            self._filter_cookie_headers(exchange, cookie_rows, decision)
        return None

    def _find_consent(self, headers: list[tuple[bytes, bytes]], rows: list[int]) -> bytes | None:
        prefix = self.cookie_name + b"="
        for index in rows:
            for piece in cookie_pieces(headers[index][1]):
                stripped = piece.lstrip(b" \t")
                if stripped.startswith(prefix):
                    return stripped[len(prefix):].strip(b" \t")
        return None

    def _filter_cookie_headers(self, exchange: Exchange, rows: list[int], decision: Decision) -> None:
        headers = exchange.request_headers
        stale: list[bytes] = []
        drop_rows: list[int] = []
        for index in rows:
            pieces = cookie_pieces(headers[index][1])
            kept = []
            for piece in pieces:
                name = piece_name(piece)
                if name == self.cookie_name:
                    continue  # the consent cookie is ours, never the site's
                if not name or self.allowed(name.decode("latin-1"), decision):
                    kept.append(piece)
                else:
                    stale.append(name)
                    category = self.classifier.classify(name.decode("latin-1")).category
                    metrics.inc(metrics.COOKIES_BLOCKED, self.site, category, "request")
            if len(kept) != len(pieces):
                joined = join_pieces(kept)
                if joined.strip(b" \t;"):
                    headers[index] = (b"cookie", joined)
                else:
                    drop_rows.append(index)
        for index in reversed(drop_rows):
            del headers[index]
        if stale:
            exchange.extra[_STALE] = stale

    # -- response --------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> None:
        decision: Decision = exchange.extra.get(DECISION) or decide(None, False)
        headers = exchange.response_headers
        depends = False
        if any(name == b"set-cookie" for name, _ in headers):
            depends = True
            headers[:] = [row for row in headers if row[0] != b"set-cookie" or self._keep(row[1], decision)]
        stale: list[bytes] | None = exchange.extra.get(_STALE)
        if stale:
            depends = True
            host = host_name(exchange.host)
            secure = exchange.scheme == "https"
            for name in dict.fromkeys(stale):
                paths = self.inventory.paths(self.site, name.decode("latin-1"))
                headers.extend((b"set-cookie", value) for value in expiring_set_cookies(name, host, paths, secure))
        if depends:
            mark_private(headers)

    def _keep(self, value: bytes, decision: Decision) -> bool:
        if is_malformed(value):
            metrics.inc(metrics.MALFORMED_SET_COOKIES, self.site)
            logger.info("site %s: dropped a malformed Set-Cookie (%d bytes)", self.site, len(value))
            return False
        cookie = parse_set_cookie(value)
        if cookie is None:
            metrics.inc(metrics.MALFORMED_SET_COOKIES, self.site)
            return False
        if cookie.name.encode("latin-1") == self.cookie_name:
            logger.warning("site %s: the upstream tried to set the consent cookie %s; dropped", self.site,
                           cookie.name)
            return False
        classification = self.classifier.classify(cookie.name)
        category = classification.category
        keep = self.allow_unknown if category == "unknown" else decision.allows(category)
        self.inventory.record(self.site, cookie, classification, blocked=not keep)
        if not keep:
            metrics.inc(metrics.COOKIES_BLOCKED, self.site, category, "response")
        return keep


def mark_private(headers: list[tuple[bytes, bytes]]) -> None:
    """`Vary: Cookie`, and no shared cache may store this response (it is one visitor's)."""
    vary_done = False
    cache_done = False
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            tokens = [t.strip().lower() for t in value.split(b",")]
            if b"cookie" not in tokens and b"*" not in tokens:
                headers[index] = (name, value + b", Cookie")
            vary_done = True
        elif name == b"cache-control":
            directives = [d.strip() for d in value.split(b",") if d.strip()]
            lowered = [d.lower() for d in directives]
            if b"no-store" not in lowered:
                kept = [d for d, low in zip(directives, lowered, strict=True)
                        if not low.startswith((b"public", b"s-maxage", b"proxy-revalidate"))]
                if b"private" not in lowered:
                    kept.insert(0, b"private")
                headers[index] = (name, b", ".join(kept))
            cache_done = True
    if not vary_done:
        headers.append((b"vary", b"Cookie"))
    if not cache_done:
        headers.append((b"cache-control", b"private"))
