"""The first-party analytics endpoints under `/_consent/a/`: receive, anonymise, forward.

The rewriter points tracker snippets here, so a hit never goes from the
browser to a third-party host. Per hit, the visitor's consent decides: with
statistics consent the hit goes on reduced; without it, where the site
declares statistics exempt, only what CNIL accepts as anonymous audience
measurement; otherwise it is answered 204 and dropped. The browser always
gets a quick, uninformative answer; what the backend said is only counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging

import aiohttp
import orjson
from yarl import URL

from consentproxy.analytics.anonymiser import Backend, anonymise
from consentproxy.analytics.keys import DailyKeys
from consentproxy.analytics.model import Context, Dropped, Hit, Mode, Policy, parse_query
from consentproxy.config.model import AnalyticsConfig, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.cookies.enforcement import DECISION
from consentproxy.geo.lookup import Location
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Endpoint, Exchange, Receive, Reply
from consentproxy.proxy.requestbody import BodyTooLarge, ClientGone, read_body

logger = logging.getLogger("consentproxy.analytics")

PREFIX = b"/_consent/a"
_PREFIX_TEXT = PREFIX.decode()
MAX_BODY = 256 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
#: path under the prefix → backend
ROUTES: dict[bytes, Backend] = {
    b"/g/collect": "ga4", b"/mp/collect": "ga4", b"/matomo.php": "matomo", b"/piwik.php": "matomo",
    b"/api/event": "plausible", b"/api/send": "umami", b"/collect": "generic",
}
_NO_CONTENT = Reply(204, [(b"cache-control", b"no-store"), (b"content-length", b"0")], b"")
#: what a browser may send with a hit that the anonymisers read; nothing else is passed to them
_READ_HEADERS = frozenset({b"user-agent", b"content-type", b"accept-language", b"referer", b"origin",
                           b"content-encoding", b"sec-ch-ua", b"sec-ch-ua-mobile", b"sec-ch-ua-platform"})


class AnalyticsEndpoint(Endpoint):
    """One site's analytics endpoints; the visitor's decision and place come from the steps before."""

    def __init__(self, site: SiteConfig, site_secret: bytes, matomo_token: str | None = None) -> None:
        self.site = site.name
        self.config: AnalyticsConfig = site.analytics
        self.exempt = site.consent.statistics_exempt
        self.policy = Policy(ipv4=self.config.ipv4, ipv6=self.config.ipv6,  # type: ignore[arg-type]
                             query_allow=frozenset(self.config.query_allow),
                             referrer=self.config.referrer,  # type: ignore[arg-type]
                             own_hosts=frozenset(h.lstrip("*.") for h in site.hosts if h != "*"),
                             matomo_token_auth=matomo_token)
        self.keys = DailyKeys(hmac.new(site_secret, b"analytics:" + site.name.encode(), hashlib.sha256).digest())
        self._session: aiohttp.ClientSession | None = None
        self._base_urls: dict[tuple[Backend, str], str] = {}

    def backend_for(self, path: bytes) -> Backend | None:
        """The backend a path under the prefix belongs to, when the site configured it."""
        backend = ROUTES.get(path[len(PREFIX):])
        return backend if backend is not None and self._url(backend, "") else None

    def _url(self, backend: Backend, path: str) -> str:
        config = self.config
        if backend == "ga4":
            return config.ga4 and config.ga4 + path
        if backend == "plausible":
            return config.plausible and config.plausible + "/api/event"
        if backend == "umami":
            return config.umami and config.umami + "/api/send"
        return config.matomo if backend == "matomo" else config.generic

    async def respond(self, exchange: Exchange, receive: Receive) -> Reply:
        backend = self.backend_for(exchange.scope["raw_path"])
        if backend is None:  # checked by the router; kept for safety
            return _NO_CONTENT
        metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, "received")
        try:
            body = await read_body(receive, MAX_BODY) if exchange.method == "POST" else b""
        except (BodyTooLarge, ClientGone):
            metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, "dropped_malformed")
            return _NO_CONTENT
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        now = dt.datetime.now(dt.UTC)
        hit = Hit(exchange.method, exchange.scope["path"].removeprefix(_PREFIX_TEXT),
                  parse_query(exchange.scope["query_string"].decode("latin-1")),
                  tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in exchange.request_headers
                        if k in _READ_HEADERS), body, exchange.client, now)
        statistics, marketing = decision.allows("statistics"), decision.allows("marketing")
        mode: Mode = "consented" if statistics else "exempt" if self.exempt else "drop"
        location = Location(decision.country, None) if decision.country else None
        result = anonymise(backend, hit, self.policy, Context(mode, self.keys.for_time(now), statistics, marketing,
                                                              location))
        if isinstance(result, Dropped):
            metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, f"dropped_{result.reason}")
            return _NO_CONTENT
        if mode == "exempt":
            metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, "anonymised")
        # A page that closes (sendBeacon) must not take its hit with it: the forward finishes and is counted
        # even when the visitor's connection goes away first.
        await asyncio.shield(self._forward(backend, result))
        return _NO_CONTENT

    def _base_url(self, backend: Backend, path: str) -> str:
        """The backend's URL for a hit path, normalised by yarl once: the query is appended already encoded."""
        key = (backend, path)
        url = self._base_urls.get(key)
        if url is None:
            url = self._base_urls[key] = str(URL(self._url(backend, path)))
        return url

    async def _forward(self, backend: Backend, hit: Hit) -> None:
        url = self._base_url(backend, hit.path)
        query = hit.query_string()
        if query:
            url += ("&" if "?" in url else "?") + query
        if self.config.dry_run:
            logger.info("analytics dry run, site %s: %s", self.site, orjson.dumps({
                "backend": backend, "method": hit.method, "url": url, "headers": hit.headers,
                "body": hit.body.decode("utf-8", "replace")}).decode())
            metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, "dry_run")
            return
        if self._session is None:
            # Like the proxy's own session: nothing of aiohttp's added to a hit (no Accept, Accept-Encoding or
            # User-Agent of its own), no HTTP_PROXY from the environment.
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT, cookie_jar=aiohttp.DummyCookieJar(),
                                                  auto_decompress=False, trust_env=False,
                                                  skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"))
        try:
            # encode_query's escapes are final: yarl need not parse and re-quote the query of every hit
            async with self._session.request(hit.method, URL(url, encoded=True), headers=hit.headers,
                                             data=hit.body or None, allow_redirects=False) as response:
                await response.read()
                outcome = "forwarded" if response.status < 400 else "backend_error"
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("site %s: analytics backend %s failed: %s", self.site, backend, exc)
            outcome = "backend_error"
        metrics.inc(metrics.ANALYTICS_HITS, self.site, backend, outcome)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
