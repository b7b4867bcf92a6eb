"""`/_consent/report`: browsers' CSP reports and the banner's cookie names, into the site's inventory.

Only the site's own pages may report: the Origin (else the Referer) must be
one of the site's hosts, and so must each report's document (403 otherwise).
A body is at most `MAX_BODY` bytes (413) and a client may send `RATE` reports
a minute (429; counted by a salted hash of its address, the /64 for IPv6:
no address is kept). Nothing from a report is logged; what is kept is hosts
and cookie names, as sightings in the inventory's buffer, which the
application merges into the store. 204 on success.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.cookies.enforcement import DECISION
from consentproxy.discovery.csp import REPORT_PATH, before_consent
from consentproxy.discovery.reports import ReportError, Violation, cookie_names, csp_report, reporting_api, url_host
from consentproxy.discovery.sightings import Classifier
from consentproxy.inventory.model import InventoryBuffer
from consentproxy.observability import metrics
from consentproxy.proxy.errors import error_page
from consentproxy.proxy.limits import LimitLog, client_key
from consentproxy.proxy.pipeline import Endpoint, Exchange, Receive, Reply, Step
from consentproxy.proxy.requestbody import BodyTooLarge, ClientGone, read_body
from consentproxy.proxy.sites import host_name

MAX_BODY = 64 * 1024
#: reports per client per `WINDOW` seconds: a page with many third parties sends one per host with report-uri
RATE = 240
WINDOW = 60.0
_NO_CONTENT = Reply(204, [(b"cache-control", b"no-store")], b"")
_LIMITS = LimitLog()


class ClientRate:
    """Requests per client in fixed windows, keyed by a salted hash of the client's address (never the address)."""

    def __init__(self, limit: int = RATE, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._started = clock()
        self._counts: dict[int, int] = {}

    def allow(self, client: str) -> bool:
        now = self.clock()
        if now - self._started >= self.window:
            self._started = now
            self._counts.clear()
        key = hash(client_key(client))  # str hashes are salted per process
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True


def _error(status: int, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    headers, body = error_page(status)
    return Reply(status, [*headers, *(extra or [])], body)


class ReportEndpoint(Endpoint):
    def __init__(self, site: str, classifier: Classifier, buffer: InventoryBuffer, consent_cookie: str,
                 rate: ClientRate | None = None) -> None:
        self.site = site
        self.classifier = classifier
        self.buffer = buffer
        self.consent_cookie = consent_cookie
        self.rate = rate or ClientRate()

    def _refuse(self, status: int, outcome: str) -> Reply:
        metrics.inc(metrics.DISCOVERY_REPORTS, self.site, outcome)
        return _error(status)

    def _own(self, host: str | None, exchange: Exchange) -> bool:
        if not host:
            return False
        if host == host_name(exchange.host) or self.classifier.own(host):
            return True
        origin = exchange.public_origin()
        return bool(origin) and url_host(origin) == host

    def _same_site(self, exchange: Exchange) -> bool:
        """The Origin's host, else the Referer's, is the site's; a request with neither is judged by its reports."""
        origin = referer = None
        for name, value in exchange.request_headers:
            if name == b"origin":
                origin = value
            elif name == b"referer":
                referer = value
        header = origin if origin is not None and origin.strip() != b"null" else referer
        return header is None or self._own(url_host(header.decode("latin-1")), exchange)

    async def respond(self, exchange: Exchange, receive: Receive) -> Reply:
        if not self.rate.allow(exchange.client):
            _LIMITS.hit("discovery_reports", "site %s: a client sent more than %d reports a minute; refused (429)",
                        self.site, self.rate.limit)
            metrics.inc(metrics.DISCOVERY_REPORTS, self.site, "rate_limited")
            return _error(429, [(b"retry-after", b"60")])
        declared = exchange.owned_headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return self._refuse(413, "too_large")
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLarge:
            return self._refuse(413, "too_large")
        except ClientGone:
            return self._refuse(400, "invalid")
        if not self._same_site(exchange):
            return self._refuse(403, "cross_site")
        content_type = b""
        for name, value in exchange.request_headers:
            if name == b"content-type":
                content_type = value.partition(b";")[0].strip().lower()
        try:
            if content_type == b"application/csp-report":
                return self._violations(exchange, csp_report(body))
            if content_type == b"application/reports+json":
                return self._violations(exchange, reporting_api(body))
            if content_type in (b"application/json", b"text/plain"):  # the banner's beacon sends text/plain
                return self._cookies(exchange, body)
        except ReportError:
            return self._refuse(400, "invalid")
        return self._refuse(415, "invalid")

    def _violations(self, exchange: Exchange, violations: list[Violation]) -> Reply:
        ours = [v for v in violations if self._own(v.document_host, exchange)]
        if violations and not ours:
            return self._refuse(403, "cross_site")
        # The page's state when it was served; but a report that carries the visitor's consent (report-uri
        # sends the page's cookies, the Reporting API none) came after the choice made on that very page.
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        before = exchange.scope.get("query_string", b"") == b"b=1" and before_consent(decision)
        for violation in ours:
            if violation.host == host_name(exchange.host):
                continue
            sighting = self.classifier.host(violation, before)
            if sighting is not None:
                self.buffer.add(sighting)
        metrics.inc(metrics.DISCOVERY_REPORTS, self.site, "accepted")
        return _NO_CONTENT

    def _cookies(self, exchange: Exchange, body: bytes) -> Reply:
        if not any(name in (b"origin", b"referer") for name, _ in exchange.request_headers):
            return self._refuse(403, "cross_site")  # the banner's fetch always sends its Origin
        report = cookie_names(body)
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        before = before_consent(decision)
        for name in report.names:
            if name != self.consent_cookie:
                self.buffer.add(self.classifier.cookie(name, before))
        metrics.inc(metrics.DISCOVERY_REPORTS, self.site, "accepted")
        return _NO_CONTENT


class ReportRoute(Step):
    """Routes `POST /_consent/report` to the endpoint; before the consent endpoints, which take the rest of
    the prefix."""

    def __init__(self, endpoint: ReportEndpoint) -> None:
        self.endpoint = endpoint

    def on_request(self, exchange: Exchange) -> Reply | Endpoint | None:
        if exchange.scope["raw_path"] != REPORT_PATH:
            return None
        if exchange.method != "POST":
            return _error(405, [(b"allow", b"POST")])
        return self.endpoint
