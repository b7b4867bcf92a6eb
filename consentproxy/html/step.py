"""The pipeline step that rewrites HTML responses: banner in, trackers blocked, as a stream.

Request: a GET that may come back as HTML asks the upstream for identity
encoding (a compressed body would have to be decoded first) and drops
conditional headers, because the browser's cached copy shows an older
consent state. Response: only `text/html` is rewritten; Content-Length goes,
ETag goes, the response becomes private and varies by Cookie; the body is
decoded if the upstream compressed it anyway, rewritten, and compressed
again for the client at a fast level.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from consentproxy.banner.cookielist import catalogue
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.config.model import SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.cookies.enforcement import DECISION, mark_private
from consentproxy.html import codings
from consentproxy.html.charset import Mode, charset_of_content_type, mode_of_label
from consentproxy.html.csp import NoncePlan, plan_for_headers
from consentproxy.html.functional import ThirdParties, registrable
from consentproxy.html.rewriter import Blocked, NoscriptMemo, PagePlan, PageRewriter, StateMemos
from consentproxy.html.trackers import TrackerMatcher, split_url
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import BodyFilter, Exchange, FilterFailed, Step
from consentproxy.proxy.sites import host_name

logger = logging.getLogger("consentproxy.html")

_CANDIDATE = "html.accept_encoding"  # set on requests whose response may be rewritten
_JOB = "html.job"
_LANGUAGE = "html.accept_language"  # read while the request headers are walked anyway
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since"})
_DROPPED_ON_REWRITE = frozenset({b"content-length", b"etag", b"content-encoding", b"content-md5", b"digest",
                                 b"accept-ranges"})


class _PageFilter(BodyFilter):
    """One response's rewrite: decoded if the upstream compressed it, rewritten, compressed again."""

    __slots__ = ("decoder", "encoder", "learn", "path", "rewriter", "site")

    def __init__(self, site: str, path: str, rewriter: PageRewriter, decoder: codings.Coder | None,
                 encoder: codings.Coder | None, learn: Callable[[list[Blocked]], None] | None = None) -> None:
        self.site = site
        self.learn = learn
        self.path = path
        self.rewriter = rewriter
        self.decoder = decoder
        self.encoder = encoder

    def feed(self, data: bytes) -> bytes:
        if self.decoder is not None:
            data = self._decode(self.decoder.feed, data)
        out = self.rewriter.feed(data) if data else b""
        return self.encoder.feed(out) if self.encoder is not None and out else out

    def finish(self) -> bytes:
        rewriter, encoder = self.rewriter, self.encoder
        tail = self._decode(self.decoder.finish) if self.decoder is not None else b""
        out = rewriter.whole(tail)  # the decoder's last output, and the page's end
        if encoder is not None:
            out = encoder.feed(out) + encoder.finish()
        self._count()
        return out

    def whole(self, data: bytes) -> bytes:
        if self.decoder is None and self.encoder is None:  # the usual case: one join, no copies in between
            out = self.rewriter.whole(data)
            self._count()
            return out
        return super().whole(data)

    def _decode(self, step: Callable[..., bytes], *data: bytes) -> bytes:
        try:
            return step(*data)
        except codings.CodingError as exc:
            metrics.inc(metrics.PAGES_REWRITTEN, self.site, "failed")
            logger.warning("site %s: the upstream body of %s does not decode as declared: %s", self.site,
                           self.path, exc)
            raise FilterFailed(str(exc)) from exc

    def _count(self) -> None:
        metrics.inc(metrics.PAGES_REWRITTEN, self.site, "rewritten")
        counts: dict[tuple[str, str], int] = {}
        for blocked in self.rewriter.blocked:
            key = (blocked.kind, blocked.category)
            counts[key] = counts.get(key, 0) + 1
        for (kind, category), count in counts.items():  # one locked increment per label set, not per element
            metrics.inc(metrics.ELEMENTS_BLOCKED, self.site, kind, category, amount=count)
        if self.learn is not None and self.rewriter.blocked:
            self.learn(self.rewriter.blocked)
        new = self.rewriter.new_unknown_hosts
        if new:
            metrics.inc(metrics.UNKNOWN_THIRD_PARTIES, self.site, amount=new)



@functools.cache
def catalogue_sources() -> dict[str, str]:
    """Where a catalogued vendor's rule comes from, shared by every site that declares no service."""
    return {name: "catalogue" for name in catalogue()}

class HtmlRewriting(Step):
    filters_body = True

    def __init__(self, site: SiteConfig, markup: SiteMarkup, matcher: TrackerMatcher | None = None,
                 parties: ThirdParties | None = None) -> None:
        """`matcher`: the site's tracker matcher, built where the configuration's tracker lists are loaded
        (default: the site's services, the catalogue and the Open Cookie Database). `parties`: the site's
        `site_parties`, when the caller made them already."""
        self.site = site.name
        self.markup = markup
        self.matcher = matcher if matcher is not None else TrackerMatcher(site.consent.services)
        self.unblocked, self.script_attributes = analytics_routing(site)
        self.compress = site.compress_html
        self.categories = frozenset(site.consent.category_ids)
        self.noscript_memo: NoscriptMemo = {}
        self.state_memos: StateMemos = {}
        #: the site's third parties and its record of the unknown ones (`third_party`, `functional_hosts`)
        self.parties = parties if parties is not None else site_parties(site)
        self._own_domains: dict[bytes, str] = {}
        #: where the vendors whose elements are held are learnt (the site's notice names them)
        self.inventory = markup.cookie_list.inventory
        declared = {s.name: "declared" for s in site.consent.services}
        self._sources = catalogue_sources() | declared if declared else catalogue_sources()

    # -- request ---------------------------------------------------------------
    def on_request(self, exchange: Exchange) -> None:
        if exchange.method != "GET":
            return None
        headers = exchange.request_headers
        accept: bytes | None = None
        accept_encoding: bytes = b""
        for name, value in headers:
            if name == b"accept":
                accept = value
            elif name == b"accept-encoding":
                accept_encoding = value
            elif name == b"accept-language":
                exchange.extra[_LANGUAGE] = value
            elif name == b"range":
                return None  # a part of a page cannot be rewritten: pass it through
        if accept is not None and b"text/html" not in accept and b"*/*" not in accept:
            return None
        headers[:] = [row for row in headers if row[0] != b"accept-encoding" and row[0] not in _CONDITIONAL]
        headers.append((b"accept-encoding", b"identity"))
        exchange.extra[_CANDIDATE] = accept_encoding
        return None

    # -- response --------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> None:
        client_codings = exchange.extra.get(_CANDIDATE)
        if client_codings is None or exchange.status in (204, 304) or exchange.status < 200:
            return
        headers = exchange.response_headers
        content_type = content_coding = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                content_coding = value.strip().lower()
        if content_type is None or not content_type.lstrip().lower().startswith(b"text/html"):
            return
        mode: Mode | None = None
        label = charset_of_content_type(content_type)
        if label is not None:
            mode = mode_of_label(label)
            if mode == "skip":
                metrics.inc(metrics.PAGES_REWRITTEN, self.site, "skipped_charset")
                return
        decoder = None
        if content_coding not in (None, b"", b"identity"):
            if content_coding not in codings.DECODABLE:
                metrics.inc(metrics.PAGES_REWRITTEN, self.site, "skipped_coding")
                return
            assert content_coding is not None
            decoder = codings.decoder(content_coding)
        out_coding = codings.choose(codings.accepted(client_codings), content_coding) if self.compress else None
        nonces = NoncePlan()
        planned = plan_for_headers(headers)
        if planned is not None:
            nonces, headers[:] = planned
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        injection = PageInjection(self.markup, decision, exchange.extra.get(_LANGUAGE))
        plan = PagePlan(self.matcher, decision.allowed, injection, nonces, unblocked=self.unblocked,
                        script_attributes=self.script_attributes, noscript_memo=self.noscript_memo,
                        state_memos=self.state_memos, parties=self.parties,
                        own_domain=self._own_domain(exchange.host), origin=exchange.public_origin(),
                        categories=self.categories)
        headers[:] = [row for row in headers if row[0] not in _DROPPED_ON_REWRITE]
        if out_coding is not None:
            headers.append((b"content-encoding", out_coding))
        mark_private(headers)
        _add_vary(headers, b"Accept-Encoding")
        exchange.extra[_JOB] = _PageFilter(self.site, exchange.scope["path"], PageRewriter(plan, mode), decoder,
                                           codings.encoder(out_coding) if out_coding else None,
                                           self.learn if self.inventory is not None else None)

    def learn(self, blocked: list[Blocked]) -> None:
        """Note the vendors of the elements a page had held (a set look-up each; new ones go to the store)."""
        assert self.inventory is not None
        vendors, buffer = self.inventory.vendors, self.inventory.buffer
        seen = vendors.seen(self.site)
        for item in blocked:
            if item.service not in seen:
                code = item.kind.endswith(("inline-script", "oversize-script"))  # its detail is code, not a URL
                host = None if code else split_url(item.detail)[1]
                vendors.element(self.site, item.service, item.category, host or "", item.kind,
                                self._sources.get(item.service, "operator"), buffer)

    def body_filter(self, exchange: Exchange) -> BodyFilter | None:
        found: _PageFilter | None = exchange.extra.get(_JOB)
        return found

    def _own_domain(self, host_header: bytes) -> str:
        """The registrable domain of the request's host when the site's `hosts` do not name it (a `*` site:
        its pages' own resources are not third parties), else ""."""
        found = self._own_domains.get(host_header)
        if found is None:
            name = host_name(host_header)
            if ":" in name:  # IPv6, as URLs write it
                name = f"[{name}]"
            found = "" if not name or self.parties.own(name) else registrable(name)
            if len(self._own_domains) >= 1024:
                self._own_domains.clear()
            self._own_domains[host_header] = found
        return found


def site_parties(site: SiteConfig) -> ThirdParties:
    """A site's own hosts, the ones it declared (`functional_hosts`, its services' hosts) and its policy."""
    declared = tuple(site.functional_hosts) + tuple(host for service in site.consent.services
                                                    for host in service.hosts)
    return ThirdParties(site.hosts, declared, hold=site.third_party == "hold")


def _add_vary(headers: list[tuple[bytes, bytes]], token: bytes) -> None:
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            if token.lower() not in [t.strip().lower() for t in value.split(b",")]:
                headers[index] = (name, value + b", " + token)
            return
    headers.append((b"vary", token))


#: catalogue services whose hits the analytics endpoints take, by the backend key that routes them
_ROUTED_SERVICES = {"ga4": "Google Analytics", "matomo": "Matomo", "plausible": "Plausible Analytics",
                    "umami": "Umami"}


def analytics_routing(site: SiteConfig) -> tuple[frozenset[str], dict[str, tuple[str, str]]]:
    """Which trackers go through the proxy's anonymiser, and the script attributes that send them there.

    Plausible reads its endpoint from `data-api`, Umami from `data-host-url`; gtag is pointed with
    `transport_url` in the Consent Mode default. Where the site declares statistics exempt, those
    services run for every visitor: without consent the anonymiser reduces their hits to anonymous
    audience measurement (and Consent Mode keeps their cookies off).
    """
    analytics = site.analytics
    routed = [service for backend, service in _ROUTED_SERVICES.items() if getattr(analytics, backend)]
    attributes = {}
    if analytics.plausible:
        attributes["Plausible Analytics"] = ("data-api", "/_consent/a/api/event")
    if analytics.umami:
        attributes["Umami"] = ("data-host-url", "/_consent/a")
    unblocked = frozenset(routed) if site.consent.statistics_exempt else frozenset()
    return unblocked, attributes
