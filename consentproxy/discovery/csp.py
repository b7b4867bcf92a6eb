"""The pipeline step that makes sampled page views report every host they load from.

On a sampled HTML response it adds a `Content-Security-Policy-Report-Only`
policy that allows only the page's own origin (and inline code, `data:` and
`blob:`, which name no host), so the browser reports every script, frame,
image, style, font, media and connect request to another host — including
the ones page scripts inject, which the server never sees. Report-only blocks
nothing. It is a header of its own: browsers apply every policy
independently, so the site's own policies (enforced or report-only) keep
working unchanged, and the HTML step, which edits the site's policies for the
banner's nonce, never sees ours (this step comes after it). The reports go to
`/_consent/report` by `report-uri` (Firefox, Safari), and on HTTPS pages also
`report-to` with a `Reporting-Endpoints` entry (Chromium, which then uses that
alone, and uploads to HTTPS endpoints only); the URL says
whether the page was served before consent, since Reporting API uploads carry
no cookies.

Sampling is decided per page view in `on_request` (one random number for a
GET), so the banner script of the same view is told to report its cookies too.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from consentproxy.config.model import SiteConfig
from consentproxy.consent.decision import NECESSARY_ONLY, NO_DECISION, Decision
from consentproxy.cookies.enforcement import DECISION
from consentproxy.proxy.pipeline import Exchange, Step

#: set in `exchange.extra` on a sampled page view (the HTML step tells the banner script)
SAMPLED = "discovery.sampled"
REPORT_PATH = b"/_consent/report"
ENDPOINT_NAME = "consentproxy-discovery"
#: every fetch directive falls back to default-src; inline code, eval, data: and blob: name no host
POLICY = "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob: mediastream: filesystem:; report-uri {url}"
#: Chromium uploads Reporting API reports to HTTPS endpoints only, and with `report-to` ignores `report-uri`:
#: a page served over HTTP gets `report-uri` alone
REPORT_TO = "; report-to " + ENDPOINT_NAME


def before_consent(decision: Decision) -> bool:
    """Whether the visitor had not consented: no decision yet, or Global Privacy Control's refusal (where an
    opt-out regime allows everything until the visitor objects, nothing is "before consent")."""
    return decision.state is None and decision.allowed <= NECESSARY_ONLY


def _headers(before: bool, https: bool) -> tuple[tuple[bytes, bytes], bytes | None]:
    url = REPORT_PATH.decode() + ("?b=1" if before else "?b=0")
    policy = POLICY.format(url=url) + (REPORT_TO if https else "")
    return ((b"content-security-policy-report-only", policy.encode("ascii")),
            f'{ENDPOINT_NAME}="{url}"'.encode("ascii") if https else None)


_HEADERS = {(before, https): _headers(before, https) for before in (True, False) for https in (True, False)}


class DiscoveryPolicy(Step):
    def __init__(self, site: SiteConfig, sample: Callable[[], float] = random.random) -> None:
        self.site = site.name
        self.share = site.discovery_sample
        self.sample = sample
        #: the headers by (served before consent, over HTTPS), built once for every site
        self._headers = _HEADERS

    def on_request(self, exchange: Exchange) -> None:
        share = self.share
        if exchange.method == "GET" and share > 0 and (share >= 1 or self.sample() < share):
            exchange.extra[SAMPLED] = True
        return None

    def on_response(self, exchange: Exchange) -> None:
        if SAMPLED not in exchange.extra or not 200 <= exchange.status < 300:
            return
        headers = exchange.response_headers
        endpoints = -1
        html = False
        for index, (name, value) in enumerate(headers):
            if name == b"content-type":
                html = value.lstrip()[:9].lower() == b"text/html"
            elif name == b"reporting-endpoints":
                endpoints = index
        if not html:
            del exchange.extra[SAMPLED]  # no page view: nothing to report
            return
        decision: Decision = exchange.extra.get(DECISION) or NO_DECISION
        policy, endpoint = self._headers[(before_consent(decision), exchange.public_origin().startswith("https:"))]
        headers.append(policy)
        if endpoint is None:
            return
        if endpoints >= 0:  # one dictionary: ours joins the site's entries
            name, value = headers[endpoints]
            headers[endpoints] = (name, value + b", " + endpoint if value.strip() else endpoint)
        else:
            headers.append((b"reporting-endpoints", endpoint))
