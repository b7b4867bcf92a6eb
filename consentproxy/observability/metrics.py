"""Prometheus metrics, one set per process.

With several workers the supervisor sets PROMETHEUS_MULTIPROC_DIR before
the workers start, prometheus_client then keeps values in shared files, and
any worker answering /metrics reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter("consentproxy_requests", "Proxied requests by site and response status", ["site", "status"])
UPSTREAM_LATENCY = Histogram(
    "consentproxy_upstream_latency_seconds",
    "Time from sending a request upstream to receiving its response headers",
    ["site"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPSTREAM_ERRORS = Counter("consentproxy_upstream_errors", "Upstream failures by site and kind", ["site", "kind"])
OPEN_CONNECTIONS = Gauge("consentproxy_open_connections", "Open client connections", multiprocess_mode="livesum")
REJECTED = Counter("consentproxy_rejected_requests", "Requests refused before routing, by status", ["status"])
DROPPED_HEADERS = Counter(
    "consentproxy_dropped_response_headers", "Upstream response headers dropped as unsafe", ["site"]
)

COOKIES_BLOCKED = Counter(
    "consentproxy_cookies_blocked", "Cookies removed by consent, by site, category and direction (request, response)",
    ["site", "category", "direction"],
)
MALFORMED_SET_COOKIES = Counter(
    "consentproxy_malformed_set_cookies", "Upstream Set-Cookie headers dropped as malformed", ["site"]
)
PAGES_REWRITTEN = Counter(
    "consentproxy_pages_rewritten", "HTML responses rewritten, by site and outcome (rewritten, skipped_charset, "
    "skipped_coding, failed)", ["site", "outcome"],
)
ELEMENTS_BLOCKED = Counter(
    "consentproxy_elements_blocked", "Page elements neutralised before consent, by site, kind and category",
    ["site", "kind", "category"],
)
CONSENT_STATES = Counter(
    "consentproxy_requests_by_consent", "Requests by the visitor's consent state (none, partial, all, gpc)",
    ["site", "state"],
)
CONSENT_DECISIONS = Counter(
    "consentproxy_consent_decisions", "Decisions recorded through the consent API, by site and method",
    ["site", "method"],
)
CONSENT_API_ERRORS = Counter(
    "consentproxy_consent_api_errors", "Consent API requests refused, by site and error code", ["site", "error"],
)
ANALYTICS_HITS = Counter(
    "consentproxy_analytics_hits", "Analytics hits by site, backend and outcome (received, anonymised, forwarded, "
    "dry_run, backend_error, dropped_<reason>)", ["site", "backend", "outcome"],
)

_children: dict[tuple[int, tuple[str, ...]], Counter] = {}


def inc(metric: Counter, *labels: str, amount: int = 1) -> None:
    """`metric.labels(*labels).inc(amount)` with the child cached: labels() takes a lock and hashes."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    child.inc(amount)


def count_request(site: str, status: int) -> None:
    inc(REQUESTS, site, str(status))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
