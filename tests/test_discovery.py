"""Discovery from real browsers (issue 18, items 1 and 7): the sampled report-only policy, `/_consent/report`
(both browser formats and the banner's cookie names), its same-site, size and rate limits, the alerts and the
declaration advice. Units here; a real proxy process and chromium in tests/test_browser_discovery.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from consentproxy.config.model import ConsentConfig, CookieDeclaration, ServiceConfig, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.consent.state import ConsentState
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.enforcement import DECISION
from consentproxy.discovery.csp import SAMPLED, DiscoveryPolicy
from consentproxy.discovery.endpoint import MAX_BODY, ClientRate, ReportEndpoint, ReportRoute
from consentproxy.discovery.reports import ReportError, cookie_names, csp_report, reporting_api
from consentproxy.discovery.sightings import Classifier
from consentproxy.html.step import site_parties
from consentproxy.html.trackers import TrackerMatcher
from consentproxy.inventory.advice import declaration_toml
from consentproxy.inventory.alerts import Alerts
from consentproxy.inventory.model import InventoryBuffer, Sighting
from consentproxy.proxy.pipeline import Exchange, Reply

POLICY = ("default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob: mediastream: filesystem:; "
          "report-uri /_consent/report?b=1; report-to consentproxy-discovery")
HTTP_POLICY = POLICY.removesuffix("; report-to consentproxy-discovery")
#: what Chromium 120+ posts to a report-uri (application/csp-report), one violation per request
CSP_REPORT = orjson.dumps({"csp-report": {
    "document-uri": "https://shop.example/products?id=3", "referrer": "https://www.search.example/",
    "violated-directive": "script-src-elem", "effective-directive": "script-src-elem", "original-policy": POLICY,
    "disposition": "report", "blocked-uri": "https://cdn.unknown-tracker.example/t.js?uid=12345",
    "line-number": 12, "column-number": 34, "source-file": "https://shop.example/products?id=3",
    "status-code": 200, "script-sample": ""}})
#: what Chromium's Reporting API uploads (application/reports+json): a batch, other report types among them
REPORTS_JSON = orjson.dumps([
    {"age": 412, "body": {"blockedURL": "https://www.google-analytics.com/g/collect?v=2&tid=G-1&cid=555.666",
                          "columnNumber": 2197, "disposition": "report", "documentURL": "https://shop.example/",
                          "effectiveDirective": "connect-src", "lineNumber": 1, "originalPolicy": POLICY,
                          "referrer": "", "sample": "", "sourceFile": "https://www.googletagmanager.com/gtag/js",
                          "statusCode": 200},
     "type": "csp-violation", "url": "https://shop.example/", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    {"age": 410, "body": {"blockedURL": "inline", "columnNumber": 5, "disposition": "report",
                          "documentURL": "https://shop.example/", "effectiveDirective": "script-src-elem",
                          "lineNumber": 20, "originalPolicy": POLICY, "referrer": "", "sample": "",
                          "statusCode": 200},
     "type": "csp-violation", "url": "https://shop.example/", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    {"age": 400, "body": {"id": "UnloadHandler", "message": "Unload event listeners are deprecated",
                          "lineNumber": 3}, "type": "deprecation", "url": "https://shop.example/",
     "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    {"age": 399, "body": {"blockedURL": "https://fonts.gstatic.com/s/inter/v13/x.woff2", "disposition": "report",
                          "documentURL": "https://shop.example/", "effectiveDirective": "font-src",
                          "originalPolicy": POLICY, "statusCode": 200},
     "type": "csp-violation", "url": "https://shop.example/", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    {"age": 398, "body": {"blockedURL": "https://static.shop.example/app.js", "disposition": "report",
                          "documentURL": "https://shop.example/", "effectiveDirective": "script-src-elem",
                          "originalPolicy": POLICY, "statusCode": 200},
     "type": "csp-violation", "url": "https://shop.example/", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
])


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- parsing ------------------------------------------------------------------------------------------------


def test_a_report_uri_body_gives_the_blocked_host_and_effective_directive_only() -> None:
    [violation] = csp_report(CSP_REPORT)
    assert (violation.document_host, violation.host, violation.directive) == (
        "shop.example", "cdn.unknown-tracker.example", "script-src-elem")


def test_a_reporting_api_batch_gives_its_csp_violations_with_hosts() -> None:
    violations = reporting_api(REPORTS_JSON)
    assert [(v.host, v.directive) for v in violations] == [
        ("www.google-analytics.com", "connect-src"), ("fonts.gstatic.com", "font-src"),
        ("static.shop.example", "script-src-elem")]  # "inline" names no host; the deprecation is no CSP report


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"csp": {}}', b'{"csp-report": []}'])
def test_a_report_uri_body_of_another_shape_is_refused(body: bytes) -> None:
    with pytest.raises(ReportError):
        csp_report(body)


@pytest.mark.parametrize("blocked", ["eval", "data", "blob", "chrome-extension://abc/x.js", "wasm-eval",
                                     "https://exa mple.com/x", "javascript:alert(1)", ""])
def test_reports_without_a_network_host_make_no_violation(blocked: str) -> None:
    body = orjson.dumps({"csp-report": {"document-uri": "https://shop.example/", "blocked-uri": blocked,
                                        "effective-directive": "script-src-elem"}})
    assert csp_report(body) == []


def test_the_banner_body_keeps_cookie_names_only() -> None:
    body = orjson.dumps({"cookies": ["_ga", "_fbp", "a b", "x=1", "_ga", 3, "_hjSession_123"], "decided": False})
    assert cookie_names(body).names == ("_ga", "_fbp", "_hjSession_123")
    with pytest.raises(ReportError):
        cookie_names(b'{"names": []}')


# -- the policy step -------------------------------------------------------------------------------------------


def site(**extra: Any) -> SiteConfig:
    consent = ConsentConfig(cookies=(CookieDeclaration(category="necessary", name="shop_session"),),
                            services=(ServiceConfig(name="Shop chat", category="preferences",
                                                    hosts=("chat.vendor.example",)),))
    return SiteConfig(name="shop", hosts=("shop.example", "www.shop.example"), upstream="http://127.0.0.1:9",
                      consent=consent, functional_hosts=("maps.vendor.example",), **extra)


def exchange(method: str = "GET", path: bytes = b"/", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None
             = None, client: str = "192.0.2.10", decision: Decision | None = None, scheme: str = "https") -> Exchange:
    scope = {"method": method, "raw_path": path, "path": path.decode(), "query_string": query}
    found = Exchange(scope, None, client, False, client, scheme, list(headers or []),  # type: ignore[arg-type]
                     {b"host": b"shop.example"})
    if decision is not None:
        found.extra[DECISION] = decision
    return found


DECIDED = Decision("explicit", frozenset({"necessary", "statistics"}),
                   ConsentState("p", frozenset({"statistics"}), 1, 0, 2**40, "save_selection"))


def respond(step: DiscoveryPolicy, headers: list[tuple[bytes, bytes]], decision: Decision = NO_DECISION,
            status: int = 200, scheme: str = "https") -> tuple[Exchange, list[tuple[bytes, bytes]]]:
    found = exchange(decision=decision, scheme=scheme)
    step.on_request(found)
    found.status = status
    found.response_headers = list(headers)
    step.on_response(found)
    return found, found.response_headers


HTML = [(b"content-type", b"text/html; charset=utf-8")]


def test_a_sampled_page_gets_a_report_only_policy_of_its_own_and_a_reporting_endpoint() -> None:
    step = DiscoveryPolicy(site(discovery_sample=1.0))
    found, headers = respond(step, HTML)
    assert found.extra[SAMPLED] is True
    assert (b"content-security-policy-report-only", POLICY.encode()) in headers
    assert (b"reporting-endpoints", b'consentproxy-discovery="/_consent/report?b=1"') in headers
    _, after = respond(step, HTML, DECIDED)
    assert (b"reporting-endpoints", b'consentproxy-discovery="/_consent/report?b=0"') in after
    _, http = respond(step, HTML, scheme="http")  # Chromium reports to HTTPS endpoints only, and then not by URI
    assert http == [*HTML, (b"content-security-policy-report-only", HTTP_POLICY.encode())]


def test_the_sites_own_policies_stay_as_they_are_and_its_reporting_endpoints_get_ours_added() -> None:
    own = [*HTML, (b"content-security-policy", b"script-src 'self' 'nonce-abc'"),
           (b"content-security-policy-report-only", b"img-src 'self'; report-to site"),
           (b"reporting-endpoints", b'site="https://reports.shop.example/csp"')]
    _, headers = respond(DiscoveryPolicy(site(discovery_sample=1.0)), own)
    assert headers[:3] == own[:3]  # untouched, in place: the enforced one is never weakened
    assert [v for n, v in headers if n == b"content-security-policy"] == [b"script-src 'self' 'nonce-abc'"]
    assert [v for n, v in headers if n == b"content-security-policy-report-only"] == [
        b"img-src 'self'; report-to site", POLICY.encode()]  # two policies, each applied on its own
    assert [v for n, v in headers if n == b"reporting-endpoints"] == [
        b'site="https://reports.shop.example/csp", consentproxy-discovery="/_consent/report?b=1"']


@pytest.mark.parametrize(("headers", "status"), [([(b"content-type", b"application/json")], 200),
                                                 ([(b"content-type", b"image/png")], 200), (HTML, 304), (HTML, 404)])
def test_only_pages_are_given_the_policy(headers: list[tuple[bytes, bytes]], status: int) -> None:
    found, out = respond(DiscoveryPolicy(site(discovery_sample=1.0)), headers, status=status)
    assert out == headers
    assert status != 200 or SAMPLED not in found.extra


def test_sampling_takes_the_configured_share_of_page_views() -> None:
    draws = iter([0.01, 0.5, 0.049, 0.05, 0.9] * 20)
    step = DiscoveryPolicy(site(discovery_sample=0.05), sample=lambda: next(draws))
    sampled = [SAMPLED in respond(step, HTML)[0].extra for _ in range(100)]
    assert sum(sampled) == 40 and sampled[:5] == [True, False, True, False, False]
    never = DiscoveryPolicy(site(discovery_sample=0.0), sample=lambda: 0.0)
    assert not any(SAMPLED in respond(never, HTML)[0].extra for _ in range(10))
    post = exchange("POST")
    DiscoveryPolicy(site(discovery_sample=1.0)).on_request(post)
    assert SAMPLED not in post.extra


def test_the_banner_script_is_told_the_share_of_views_to_report_on() -> None:
    """A constant per site, drawn by the script itself: a page's bytes never depend on a draw."""
    from consentproxy.banner.assets import BannerAssets
    from consentproxy.banner.markup import PageInjection, SiteMarkup
    from consentproxy.html.csp import NoncePlan

    def bundle(config: SiteConfig) -> str:
        return PageInjection(SiteMarkup(config, BannerAssets()), NO_DECISION, None).bundle("en", NoncePlan(), "s1")

    assert 'data-cp-stamp="s1" data-cp-report="0.05"' in bundle(site())
    assert 'data-cp-stamp="s1" data-cp-report="1"' in bundle(dataclasses.replace(site(), discovery_sample=1.0))
    assert "data-cp-report" not in bundle(dataclasses.replace(site(), discovery="off"))
    assert "data-cp-report" not in bundle(dataclasses.replace(site(), discovery_sample=0.0))


# -- the endpoint ---------------------------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[tuple[ReportEndpoint, InventoryBuffer]]:
    config = site()
    buffer = InventoryBuffer(Alerts())
    classifier = Classifier(config.name, TrackerMatcher(config.consent.services), site_parties(config),
                            CookieClassifier(config.consent))
    yield ReportEndpoint(config.name, classifier, buffer, config.consent.cookie_name, ClientRate(limit=5)), buffer


def post(target: ReportEndpoint, body: bytes, content_type: bytes, origin: bytes | None = b"https://shop.example",
         query: bytes = b"b=1", client: str = "192.0.2.10", decision: Decision | None = None,
         extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    headers = [(b"content-type", content_type), *([(b"origin", origin)] if origin is not None else []),
               *(extra or [])]
    request = exchange("POST", b"/_consent/report", query, headers, client, decision)
    request.owned_headers[b"content-length"] = str(len(body)).encode()
    route = ReportRoute(target).on_request(request)
    assert route is target

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return asyncio.run(target.respond(request, receive))


def test_the_route_takes_post_only_and_leaves_the_rest_of_the_prefix() -> None:
    route = ReportRoute(None)  # type: ignore[arg-type]
    reply = route.on_request(exchange("GET", b"/_consent/report"))
    assert isinstance(reply, Reply) and reply.status == 405
    assert route.on_request(exchange("GET", b"/_consent/banner.js")) is None


def test_reports_in_both_formats_land_as_host_sightings_classified(
        endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    target, buffer = endpoint
    assert post(target, CSP_REPORT, b"application/csp-report").status == 204
    assert post(target, REPORTS_JSON, b"application/reports+json", origin=None, query=b"b=0").status == 204
    found = {s.name: s for s in buffer.take()}
    assert set(found) == {"cdn.unknown-tracker.example", "www.google-analytics.com", "fonts.gstatic.com"}
    unknown = found["cdn.unknown-tracker.example"]
    assert (unknown.kind, unknown.set_by, unknown.category, unknown.source, unknown.before_consent,
            unknown.details) == ("host", "page", "unknown", "unknown", 1, {"directives": ["script-src-elem"]})
    ga = found["www.google-analytics.com"]
    assert (ga.category, ga.source, ga.service, ga.before_consent) == ("statistics", "catalogue",
                                                                      "Google Analytics", 0)
    assert (found["fonts.gstatic.com"].category, found["fonts.gstatic.com"].source) == ("necessary", "catalogue")


def test_a_report_sent_after_the_choice_made_on_the_page_is_not_before_consent(
        endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    """The page was served before consent (b=1), the visitor accepted on it, and the scripts that then loaded
    were reported with the new consent cookie: no "before consent" alarm for trackers the proxy held back."""
    target, buffer = endpoint
    assert post(target, CSP_REPORT, b"application/csp-report", decision=DECIDED).status == 204
    assert [s.before_consent for s in buffer.take()] == [0]
    assert post(target, CSP_REPORT, b"application/csp-report").status == 204  # no consent cookie: as served
    assert [s.before_consent for s in buffer.take()] == [1]


def test_declared_hosts_are_classified_as_declared(endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    target, buffer = endpoint
    for host in ("chat.vendor.example", "maps.vendor.example"):
        body = orjson.dumps({"csp-report": {"document-uri": "https://www.shop.example/", "blocked-uri":
                                            f"https://{host}/x", "effective-directive": "frame-src"}})
        assert post(target, body, b"application/csp-report", origin=b"https://www.shop.example").status == 204
    found = {s.name: (s.category, s.source, s.service) for s in buffer.take()}
    assert found == {"chat.vendor.example": ("preferences", "declared", "Shop chat"),
                     "maps.vendor.example": ("necessary", "declared", "maps.vendor.example")}


@pytest.mark.parametrize(("origin", "referer", "document"), [
    (b"https://evil.example", None, "https://shop.example/"),
    (None, b"https://evil.example/page", "https://shop.example/"),
    (None, None, "https://evil.example/"),
    (b"https://shop.example.evil.example", None, "https://shop.example/"),
])
def test_reports_from_another_site_are_refused(endpoint: tuple[ReportEndpoint, InventoryBuffer],
                                               origin: bytes | None, referer: bytes | None, document: str) -> None:
    target, buffer = endpoint
    body = orjson.dumps({"csp-report": {"document-uri": document, "blocked-uri": "https://t.example/x.js",
                                        "effective-directive": "script-src-elem"}})
    before = metric("consentproxy_discovery_reports_total", site="shop", outcome="cross_site")
    reply = post(target, body, b"application/csp-report", origin=origin,
                 extra=[(b"referer", referer)] if referer else None)
    assert reply.status == 403
    assert len(buffer) == 0
    assert metric("consentproxy_discovery_reports_total", site="shop", outcome="cross_site") == before + 1


def test_a_body_over_the_limit_is_refused(endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    target, buffer = endpoint
    big = orjson.dumps([{"type": "csp-violation", "body": {"blockedURL": f"https://h{i}.example/",
                                                           "documentURL": "https://shop.example/"}}
                        for i in range(2000)])
    assert len(big) > MAX_BODY
    assert post(target, big, b"application/reports+json").status == 413
    assert len(buffer) == 0


def test_a_client_over_the_rate_gets_429_and_others_do_not(endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    target, _ = endpoint
    statuses = [post(target, CSP_REPORT, b"application/csp-report", client="2001:db8::1").status for _ in range(5)]
    assert statuses == [204] * 5
    assert post(target, CSP_REPORT, b"application/csp-report", client="2001:db8::2").status == 429  # same /64
    assert post(target, CSP_REPORT, b"application/csp-report", client="192.0.2.99").status == 204
    assert all(isinstance(key, int) for key in target.rate._counts)  # no address is kept


def test_rate_windows_start_again() -> None:
    now = [0.0]
    rate = ClientRate(limit=1, window=60, clock=lambda: now[0])
    assert rate.allow("192.0.2.1") and not rate.allow("192.0.2.1")
    now[0] = 61
    assert rate.allow("192.0.2.1")


@pytest.mark.parametrize(("content_type", "body", "status"), [
    (b"application/xml", CSP_REPORT, 415), (b"text/plain", CSP_REPORT, 400), (b"application/csp-report", b"{", 400),
    (b"application/reports+json", b'{"a": 1}', 400)])
def test_other_bodies_are_refused_clearly(endpoint: tuple[ReportEndpoint, InventoryBuffer], content_type: bytes,
                                          body: bytes, status: int) -> None:
    assert post(endpoint[0], body, content_type).status == status


def test_the_banners_cookie_names_land_as_script_cookies_with_the_visitors_state(
        endpoint: tuple[ReportEndpoint, InventoryBuffer]) -> None:
    target, buffer = endpoint
    body = orjson.dumps({"cookies": ["_ga", "shop_session", "cp_consent", "mystery_tracker"], "decided": False})
    assert post(target, body, b"application/json", decision=NO_DECISION).status == 204
    found = {s.name: s for s in buffer.take()}
    assert set(found) == {"_ga", "shop_session", "mystery_tracker"}  # never the proxy's own consent cookie
    assert (found["_ga"].kind, found["_ga"].set_by, found["_ga"].category, found["_ga"].before_consent) == (
        "cookie", "script", "statistics", 1)
    assert found["_ga"].source in ("catalogue", "database")
    assert (found["shop_session"].category, found["shop_session"].source) == ("necessary", "declared")
    assert (found["mystery_tracker"].category, found["mystery_tracker"].source) == ("unknown", "unknown")
    assert post(target, body, b"application/json", decision=DECIDED).status == 204
    assert all(s.before_consent == 0 for s in buffer.take())
    assert post(target, body, b"application/json", origin=None).status == 403  # the banner always sends its Origin


# -- alerts and advice ------------------------------------------------------------------------------------------


def sighting(**changes: Any) -> Sighting:
    base: dict[str, Any] = {"site": "shop", "kind": "host", "name": "cdn.unknown-tracker.example", "set_by": "page",
                            "category": "unknown", "source": "unknown", "count": 1, "before_consent": 1}
    return Sighting(**{**base, **changes})


def test_an_unknown_host_before_consent_gives_one_line_an_hour_and_a_metric_each_time(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    buffer = InventoryBuffer(Alerts(clock=lambda: now[0]))
    labels = {"site": "shop", "kind": "host", "reason": "before_consent"}
    before = metric("consentproxy_inventory_alerts_total", **labels)
    with caplog.at_level(logging.WARNING, "consentproxy.inventory"):
        for _ in range(3):
            buffer.add(sighting())
        now[0] += 3601
        buffer.add(sighting())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'cdn.unknown-tracker.example'" in lines[0] and "before the visitor's consent" in lines[0]
    assert 'hosts = ["cdn.unknown-tracker.example"]' in lines[0]
    assert metric("consentproxy_inventory_alerts_total", **labels) == before + 4
    assert len(buffer) == 1 and buffer.take()[0].count == 4


@pytest.mark.parametrize("changes", [
    {"before_consent": 0},  # after consent, unblocked: fine
    {"category": "necessary", "source": "catalogue"},  # necessary before consent: expected
    {"kind": "cookie", "set_by": "server", "name": "_fbp", "category": "marketing", "source": "catalogue",
     "blocked": 1},  # a known cookie the proxy held back before consent: what it is for
])
def test_items_that_need_no_look_give_no_line(caplog: pytest.LogCaptureFixture, changes: dict[str, Any]) -> None:
    with caplog.at_level(logging.WARNING, "consentproxy.inventory"):
        InventoryBuffer(Alerts()).add(sighting(**changes))
    assert caplog.records == []


def test_the_sites_own_unknown_cookie_blocked_says_so_with_the_toml_to_declare_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """Item 7: blocked as before, but the log says so the first time, with the exact TOML."""
    login = sighting(kind="cookie", set_by="server", name="shop_login", before_consent=0, blocked=1,
                     details={"lifetime_seconds": 30 * 86400, "third_party": False, "httponly": True})
    with caplog.at_level(logging.WARNING, "consentproxy.inventory"):
        buffer = InventoryBuffer(Alerts())
        buffer.add(login)
        buffer.add(login)
    [record] = caplog.records
    message = record.getMessage()
    assert "the site's own cookie 'shop_login' is unknown and blocked" in message
    toml = declaration_toml(login)
    assert toml in message.replace("\n    ", "\n")
    assert toml.splitlines()[:2] == ["[[sites.shop.cookies]]", 'name = "shop_login"']
    assert 'lifetime = "30 days"' in toml
    assert "value" not in message.lower()


def test_the_advice_is_toml_the_loader_takes(tmp_path: Any) -> None:
    from consentproxy.config.loader import load_config

    cookie = declaration_toml(sighting(kind="cookie", set_by="server", name="cart.id", site="my.shop",
                                       details={"lifetime_seconds": None}))
    host = declaration_toml(sighting(site="my.shop"))
    path = tmp_path / "c.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:8080"]\n\n[sites."my.shop"]\nhosts = ["shop.example"]\n'
                    f'upstream = "http://127.0.0.1:9"\n\n{cookie}\n\n{host}\n')
    config = load_config(path)
    [loaded] = config.sites
    assert [(c.name, c.category, c.lifetime) for c in loaded.consent.cookies] == [("cart.id", "necessary", "session")]
    assert [(s.name, s.category, s.hosts) for s in loaded.consent.services] == [
        ("cdn.unknown-tracker.example", "marketing", ("cdn.unknown-tracker.example",))]
