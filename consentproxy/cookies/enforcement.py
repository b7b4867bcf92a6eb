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
A cookie whose consent was erased or withdrawn through the admin API
(`consent.revocations`) counts as no decision, and is expired in the response.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import orjson

from consentproxy.config.model import SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision, decide
from consentproxy.consent.revocations import REVOCATIONS, Revocations
from consentproxy.consent.state import ConsentCodec
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.expiry import expiring_set_cookies
from consentproxy.cookies.header import join_pieces, parse_set_cookie
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.geo.regimes import SiteLocator
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Exchange, Reply, Step
from consentproxy.proxy.sites import host_name

if TYPE_CHECKING:
    from consentproxy.consent.notice import SiteNotices

logger = logging.getLogger("consentproxy.cookies")

DECISION = "consent.decision"
CONSENT_COOKIE = "consent.cookie"  # the raw value of the visitor's consent cookie, when sent
_STALE = "cookies.stale"  # names the browser sent that are not allowed: they get expiries
REVOKED = "consent.revoked"  # why the consent cookie sent no longer counts (erasure, withdrawal), when so
GPC_PATH = b"/.well-known/gpc.json"


class _Plan(NamedTuple):
    keep: tuple[bool, ...] | None  # None: keep every piece
    stale: tuple[bytes, ...]  # names that are not allowed: they get expiries



@functools.lru_cache(maxsize=2)
def gpc_reply(today: str) -> Reply:
    """`/.well-known/gpc.json`: the same for every site (one object for thousands of them; never mutated)."""
    return Reply(200, [
        (b"content-type", b"application/json"), (b"cache-control", b"public, max-age=86400"),
        (b"access-control-allow-origin", b"*"),
    ], orjson.dumps({"gpc": True, "lastUpdate": today}))

class CookieEnforcement(Step):
    def __init__(self, site: SiteConfig, codec: ConsentCodec, inventory: CookieInventory,
                 locator: SiteLocator | None = None, revocations: Revocations = REVOCATIONS,
                 notices: SiteNotices | None = None) -> None:
        """`notices`: the site's notice versions; a granted category that now names a vendor the visitor's
        consent did not is asked again (with `reask_on_new_vendor`)."""
        self.site = site.name
        self.notices = notices if site.consent.reask_on_new_vendor else None
        self.revocations = revocations
        self.locator = locator
        self.consent = site.consent
        self.cookie_name = site.consent.cookie_name.encode("latin-1")
        self.codec = codec
        self.classifier = CookieClassifier(site.consent)
        self.inventory = inventory
        self.allow_unknown = site.consent.unknown_cookies == "allow"
        #: the site's categories, its own included
        self.everything = frozenset(site.consent.category_ids)
        self._categories: dict[bytes, str] = {}
        self._plans: dict[tuple[tuple[bytes, ...], frozenset[str]], _Plan] = {}
        self._expiry_rows: dict[tuple[tuple[bytes, ...], bytes, bool, int], list[tuple[bytes, bytes]]] = {}
        self._state_counts: dict[str, Callable[[float], None]] = {}  # CONSENT_STATES of this site, by label
        self._gpc_reply = gpc_reply(dt.date.today().isoformat())

    def category(self, name: bytes) -> str:
        """The category of a cookie name as raw bytes (cached: names repeat on every request)."""
        category = self._categories.get(name)
        if category is None:
            category = self.classifier.classify(name.decode("latin-1")).category
            if len(self._categories) >= 10_000:
                self._categories.clear()
            self._categories[name] = category
        return category

    def allowed(self, category: str, allowed: frozenset[str]) -> bool:
        return self.allow_unknown if category == "unknown" else category in allowed

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
            exchange.extra[CONSENT_COOKIE] = consent_value
            state = self.codec.decode(consent_value.decode("latin-1"), self.consent.revision)
            if state is not None and self.site in self.revocations.by_site:  # no hashing for other sites
                reason = self.revocations.reason(self.site, state.principal)
                if reason is not None:
                    exchange.extra[REVOKED] = reason
                    metrics.inc(metrics.REVOKED_COOKIES, self.site)
                    state = None
        reask: frozenset[str] = frozenset()
        if state is not None and state.told and self.notices is not None:
            reask = self.notices.stale(state.granted, state.told)
        if self.locator is None:
            decision = decide(state, gpc, reask=reask)
        else:
            decision = decide(state, gpc, *self.locator.locate(exchange.client), reask=reask,
                              everything=self.everything)
        exchange.extra[DECISION] = decision
        label = decision.label
        count = self._state_counts.get(label)
        if count is None:
            count = self._state_counts[label] = metrics.adder(metrics.CONSENT_STATES, self.site, label)
        count(1)
        if cookie_rows:
            self._filter_cookie_headers(exchange, cookie_rows, decision)
        return None

    def _find_consent(self, headers: list[tuple[bytes, bytes]], rows: list[int]) -> bytes | None:
        """The consent cookie's value: a substring search, then a check that it starts a piece."""
        prefix = self.cookie_name + b"="
        for index in rows:
            value = headers[index][1]
            start = value.find(prefix)
            while start != -1:
                before = value[:start].rstrip(b" \t")
                if not before or before.endswith(b";"):
                    end = value.find(b";", start)
                    return value[start + len(prefix):end if end != -1 else len(value)].strip(b" \t")
                start = value.find(prefix, start + 1)
        return None

    def _filter_cookie_headers(self, exchange: Exchange, rows: list[int], decision: Decision) -> None:
        headers = exchange.request_headers
        stale: list[bytes] = []
        drop_rows: list[int] = []
        for index in rows:
            pieces = headers[index][1].split(b";")
            plan = self._plan(tuple([p.partition(b"=")[0].strip(b" \t") for p in pieces]), decision.allowed)
            if plan.keep is None:
                continue  # every piece stays: the header goes on byte-identical
            stale.extend(plan.stale)
            joined = join_pieces([piece for piece, keep in zip(pieces, plan.keep, strict=True) if keep])
            if joined.strip(b" \t;"):
                headers[index] = (b"cookie", joined)
            else:
                drop_rows.append(index)
        for index in reversed(drop_rows):
            del headers[index]
        if stale:
            exchange.extra[_STALE] = stale
            self._count_blocked([self.category(name) for name in stale], "request")

    def _plan(self, names: tuple[bytes, ...], allowed: frozenset[str]) -> _Plan:
        """Which pieces of a Cookie header with these names stay, for this decision.

        Cached: a visitor sends the same names (with changing values) on every request.
        """
        key = (names, allowed)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        keep: list[bool] = []
        stale: list[bytes] = []
        for name in names:
            if name == self.cookie_name:
                keep.append(False)  # the consent cookie is ours, never the site's
            elif not name or self.allowed(self.category(name), allowed):
                keep.append(True)
            else:
                keep.append(False)
                stale.append(name)
        plan = _Plan(None if all(keep) else tuple(keep), tuple(stale))
        if len(self._plans) >= 4096:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    # -- response --------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> None:
        headers = exchange.response_headers
        depends = False
        for name, _ in headers:
            if name == b"set-cookie":
                depends = True
                break
        if depends:
            decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
            blocked: list[str] = []
            headers[:] = [row for row in headers
                          if row[0] != b"set-cookie" or self._keep(row[1], decision, blocked)]
            if blocked:
                self._count_blocked(blocked, "response")
        stale: list[bytes] | None = exchange.extra.get(_STALE)
        if stale:
            depends = True
            headers.extend(self._expiries(tuple(stale), exchange.host, exchange.scheme == "https"))
        if REVOKED in exchange.extra:
            depends = True
            headers.append(self.consent_cookie_expiry(exchange))
        if depends:
            mark_private(headers)

    def expiries_for(self, exchange: Exchange, allowed: frozenset[str]) -> list[tuple[bytes, bytes]]:
        """Expiring Set-Cookie rows for every cookie this request carried that `allowed` no longer permits.

        For the consent API's answer to a withdrawal: the cookies go in the same
        response, not only on the next page.
        """
        names: list[bytes] = list(exchange.extra.get(_STALE) or ())
        for name, value in exchange.request_headers:
            if name == b"cookie":
                names += [piece.partition(b"=")[0].strip(b" \t") for piece in value.split(b";")]
        stale = tuple(dict.fromkeys(n for n in names if n and n != self.cookie_name
                                    and not self.allowed(self.category(n), allowed)))
        return self._expiries(stale, exchange.host, exchange.scheme == "https") if stale else []

    def consent_cookie_expiry(self, exchange: Exchange) -> tuple[bytes, bytes]:
        """The Set-Cookie row that deletes the consent cookie (as `consent_set_cookie` sets it: host-only, Path=/)."""
        value = self.cookie_name + (b"=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; "
                                    b"SameSite=Lax")
        return b"set-cookie", value + b"; Secure" if exchange.scheme == "https" else value

    def _expiries(self, stale: tuple[bytes, ...], host: bytes, secure: bool) -> list[tuple[bytes, bytes]]:
        """Expiring Set-Cookie rows for these names; cached until the inventory learns a new path."""
        key = (stale, host, secure, self.inventory.paths_version)
        rows = self._expiry_rows.get(key)
        if rows is None:
            name_of_host = host_name(host)
            rows = [(b"set-cookie", value) for name in dict.fromkeys(stale)
                    for value in expiring_set_cookies(name, name_of_host, self.inventory.paths(self.site, name),
                                                      secure)]
            if len(self._expiry_rows) >= 4096:
                self._expiry_rows.clear()
            self._expiry_rows[key] = rows
        return rows

    def _count_blocked(self, categories: list[str], direction: str) -> None:
        for category in set(categories):
            metrics.inc(metrics.COOKIES_BLOCKED, self.site, category, direction, amount=categories.count(category))

    def _keep(self, value: bytes, decision: Decision, blocked: list[str]) -> bool:
        parsed = parse_set_cookie(value)
        if parsed is None:
            metrics.inc(metrics.MALFORMED_SET_COOKIES, self.site)
            logger.info("site %s: dropped a malformed Set-Cookie (%d bytes)", self.site, len(value))
            return False
        name, attributes = parsed
        if name == self.cookie_name:
            logger.warning("site %s: the upstream tried to set the consent cookie; dropped", self.site)
            return False
        category = self._categories.get(name) or self.category(name)
        keep = self.allowed(category, decision.allowed)
        self.inventory.record(self.site, name, attributes, self.classifier, not keep, decision.kind == "none")
        if not keep:
            blocked.append(category)
        return keep


#: Cache directives addressed to one cache or class of caches, which it obeys over Cache-Control: the
#: Edge Architecture's Surrogate-Control (Fastly, Varnish, Akamai), Akamai's Edge-Control, nginx's
#: X-Accel-Expires, and RFC 9213's targeted fields (CDN-Cache-Control, Cloudflare-CDN-Cache-Control,
#: Vercel-CDN-Cache-Control, Netlify-CDN-Cache-Control, X-LiteSpeed-Cache-Control...: any name that ends
#: in -cache-control).
_TARGETED_CACHE_CONTROL = frozenset({b"surrogate-control", b"edge-control", b"x-accel-expires"})


def _targets_a_cache(name: bytes) -> bool:
    return name in _TARGETED_CACHE_CONTROL or name.endswith(b"-cache-control")


def mark_private(headers: list[tuple[bytes, bytes]]) -> None:
    """`Vary: Cookie`, and no shared cache may store this response (it is one visitor's).

    Cache directives targeted at a CDN or another shared cache go (`_TARGETED_CACHE_CONTROL`): such a
    cache obeys them over `Cache-Control: private` and would serve one visitor's consent state to others.
    """
    if any(_targets_a_cache(name) for name, _ in headers):
        headers[:] = [row for row in headers if not _targets_a_cache(row[0])]
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
