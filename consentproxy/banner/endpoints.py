"""The proxy's own URLs under the consent prefix (`/_consent/…`): never forwarded to the site.

The consent API itself (`/_consent`, `/_consent/receipt`), the site's cookie
declaration as a page (`/_consent/declaration`), banner assets by
content-hashed name (each site's client-side guard with its tracker table among
them, registered by consentproxy/banner/guard.py), and the Consent Mode default
as an external script for pages whose CSP refuses inline script.
"""

from __future__ import annotations

from consentproxy.analytics.endpoint import PREFIX as ANALYTICS_PREFIX
from consentproxy.analytics.endpoint import AnalyticsEndpoint
from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.declaration import SiteDeclaration
from consentproxy.banner.markup import (
    accepted_language,
    analytics_bootstrap,
    consent_mode_code,
    parse_consent_mode_query,
)
from consentproxy.banner.theme import theme_css, theme_name
from consentproxy.config.model import LANGUAGES, SiteConfig
from consentproxy.consent.api import ConsentApi
from consentproxy.proxy.errors import error_page
from consentproxy.proxy.pipeline import Endpoint, Exchange, Reply, Step

PREFIX = b"/_consent"
_JS = b"text/javascript; charset=utf-8"
#: the standalone declaration: its own style element, nothing else
_DECLARATION_CSP = (b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                    b"frame-ancestors 'self'")


class ConsentEndpoints(Step):
    def __init__(self, site: SiteConfig, assets: BannerAssets, api: ConsentApi,
                 analytics: AnalyticsEndpoint | None = None, declaration: SiteDeclaration | None = None) -> None:
        self.assets = assets
        self.declaration = declaration
        self.default_language = site.consent.default_language
        self.api = api
        self.analytics = analytics
        self.bootstrap = analytics_bootstrap(site.analytics)
        self.ids = site.consent.category_ids
        self.signals = site.consent.consent_mode
        css = theme_css(site.consent.theme)
        self.theme = (theme_name(css), _stylesheet(css.encode("ascii"))) if css else None
        self._consent_mode: dict[bytes, Reply] = {}

    def on_request(self, exchange: Exchange) -> Reply | Endpoint | None:
        path: bytes = exchange.scope["raw_path"]
        if not path.startswith(PREFIX) or (len(path) > len(PREFIX) and path[len(PREFIX)] != ord("/")):
            return None
        if path == PREFIX:
            if exchange.method == "POST":
                return self.api
            if exchange.method not in ("GET", "HEAD"):
                return _error(405, [(b"allow", b"GET, HEAD, POST")])
            return _head(exchange, self.api.read(exchange))
        if path.startswith(ANALYTICS_PREFIX + b"/"):
            if self.analytics is None or self.analytics.backend_for(path) is None:
                return _error(404)
            if exchange.method not in ("GET", "POST"):
                return _error(405, [(b"allow", b"GET, POST")])
            return self.analytics
        if exchange.method not in ("GET", "HEAD"):
            return _error(405, [(b"allow", b"GET, HEAD")])
        name = path[len(PREFIX) + 1:].decode("latin-1")
        asset = self.assets.by_path.get(name)
        if asset is not None:
            accept_encoding = next((v for k, v in exchange.request_headers if k == b"accept-encoding"), None)
            body, coding = asset.body(accept_encoding)
            return _head(exchange, Reply(200, asset.headers(coding, len(body)), body))
        if self.theme is not None and name == self.theme[0]:
            return _head(exchange, self.theme[1])
        if name == "receipt":
            return self.api
        if name == "declaration" and self.declaration is not None:
            return _head(exchange, self._declaration_reply(exchange))
        if name == "consent-mode.js":
            return _head(exchange, self._consent_mode_reply(exchange.scope["query_string"]))
        return _error(404)

    def _consent_mode_reply(self, query: bytes) -> Reply:
        reply = self._consent_mode.get(query)
        if reply is None:
            value = query.decode("latin-1").removeprefix("g=")
            body = consent_mode_code(parse_consent_mode_query(value, self.ids), self.bootstrap,
                                     self.signals).encode("ascii")
            reply = Reply(200, [(b"content-type", _JS), (b"cache-control", b"public, max-age=86400"),
                                (b"x-content-type-options", b"nosniff"),
                                (b"content-length", str(len(body)).encode("ascii"))], body)
            if len(self._consent_mode) < 64:
                self._consent_mode[query] = reply
        return reply


    def _declaration_reply(self, exchange: Exchange) -> Reply:
        """The declaration in `?lang=` (one of the bundled languages), else in the visitor's language."""
        assert self.declaration is not None
        lang = None
        for field in exchange.scope["query_string"].split(b"&"):
            key, _, value = field.partition(b"=")
            if key == b"lang":
                lang = value.decode("latin-1").strip().lower()
                if lang not in LANGUAGES:
                    return _error(400)
        if lang is None:
            accept = next((v for k, v in exchange.request_headers if k == b"accept-language"), None)
            lang = accepted_language(accept.decode("latin-1"), self.default_language) if accept else \
                self.default_language
        body = self.declaration.page(lang)
        return Reply(200, [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-cache"),
                           (b"vary", b"Accept-Language"), (b"content-security-policy", _DECLARATION_CSP),
                           (b"x-content-type-options", b"nosniff"),
                           (b"content-length", str(len(body)).encode("ascii"))], body)


def _stylesheet(body: bytes) -> Reply:
    """Named by its content's hash, so it never changes under its URL."""
    return Reply(200, [(b"content-type", b"text/css; charset=utf-8"),
                       (b"cache-control", b"public, max-age=31536000, immutable"),
                       (b"x-content-type-options", b"nosniff"),
                       (b"content-length", str(len(body)).encode("ascii"))], body)


def _head(exchange: Exchange, reply: Reply) -> Reply:
    """HEAD gets the headers of GET and no body."""
    return Reply(reply.status, reply.headers, b"") if exchange.method == "HEAD" else reply


def _error(status: int, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    headers, body = error_page(status)
    return Reply(status, [*headers, *(extra or [])], body)
