"""Prometheus metrics, one set per process.

With several workers the supervisor sets PROMETHEUS_MULTIPROC_DIR before
the workers start, prometheus_client then keeps values in shared files, and
any worker answering /metrics reports the sum over all of them.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Protocol

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
CONNECTIONS_REFUSED = Counter(
    "consentproxy_refused_connections", "Client connections refused on arrival, by reason (per_client_limit)",
    ["reason"],
)
DEFERRED_CONNECTIONS = Counter(
    "consentproxy_deferred_connections", "Client connections from a busy address set aside to be served in turn",
)
LIMITED = Counter(
    "consentproxy_limited_requests", "Requests a fair-use limit stopped or changed, by limit (client_requests, "
    "body_deadline, buffer_budget)", ["limit"],
)
BUFFERED_BODY_BYTES = Gauge(
    "consentproxy_buffered_body_bytes", "Request body bytes held in memory before going upstream",
    multiprocess_mode="livesum",
)
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
UNKNOWN_THIRD_PARTIES = Counter(
    "consentproxy_unknown_third_party_hosts", "Hosts no rule knows (not the site's own, declared, functional, "
    "nor a tracker) that a site's pages load from, each counted once when this process first sees it, by site",
    ["site"],
)
INVENTORY_ALERTS = Counter(
    "consentproxy_inventory_alerts", "Inventory sightings that need a look, by site, kind (cookie, host) and reason "
    "(unknown_blocked, before_consent); one log line per site and name per hour", ["site", "kind", "reason"],
)
DISCOVERY_REPORTS = Counter(
    "consentproxy_discovery_reports", "Requests to /_consent/report by site and outcome (accepted, cross_site, "
    "too_large, rate_limited, invalid)", ["site", "outcome"],
)
CONSENT_STATES = Counter(
    "consentproxy_requests_by_consent", "Requests by the visitor's consent state (none, partial, all, gpc)",
    ["site", "state"],
)
CONSENT_DECISIONS = Counter(
    "consentproxy_consent_decisions", "Decisions recorded through the consent API, by site and method",
    ["site", "method"],
)
CONSENT_OUTCOMES = Counter(
    "consentproxy_consent_outcomes", "Per category, what the decisions recorded through the consent API said "
    "(given, refused, withdrawn; as the statistics count them), by site, category and outcome",
    ["site", "category", "outcome"],
)
CONSENT_API_ERRORS = Counter(
    "consentproxy_consent_api_errors", "Consent API requests refused, by site and error code", ["site", "error"],
)
ANALYTICS_HITS = Counter(
    "consentproxy_analytics_hits", "Analytics hits by site, backend and outcome (received, anonymised, forwarded, "
    "dry_run, backend_error, dropped_<reason>)", ["site", "backend", "outcome"],
)

REVOKED_CONSENTS = Gauge(
    "consentproxy_revoked_consents", "Consent ids of a site ended by an erasure or a withdrawal on the visitor's "
    "behalf, as this worker's revocation set holds them", ["site"], multiprocess_mode="max",
)
REVOKED_COOKIES = Counter(
    "consentproxy_revoked_consent_cookies", "Requests whose consent cookie was refused because its consent was "
    "erased or withdrawn on the visitor's behalf", ["site"],
)

_children: dict[tuple[int, tuple[str, ...]], Counter] = {}
#: REQUESTS children by (site, status), as adders
_request_adders: dict[tuple[str, int], Callable[[float], None]] = {}


def child(metric: Counter, *labels: str) -> Counter:
    """`metric.labels(*labels)`, cached: labels() takes a lock and hashes. For callers that keep it."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def inc(metric: Counter, *labels: str, amount: int = 1) -> None:
    """`metric.labels(*labels).inc(amount)` with the child cached: labels() takes a lock and hashes."""
    found = _children.get((id(metric), labels))
    if found is None:
        found = child(metric, *labels)
    found.inc(amount)


def count_request(site: str, status: int) -> None:
    """One request of `site` answered with `status` (once per request: keyed without str(status))."""
    add = _request_adders.get((site, status))
    if add is None:
        add = _request_adders[(site, status)] = adder(REQUESTS, site, str(status))
    add(1)


# -- per-request fast paths ----------------------------------------------------
# prometheus_client's `Counter.inc` and `Histogram.observe` first check, in two more calls each,
# that the child is labelled (and, for inc, that the amount is not negative); for the children
# below that holds by construction. When the child has the layout these were written against
# (checked once, at creation) they go to the child's own values directly — same values, same
# lock, same multiprocess files; otherwise they are the public methods.


def adder(metric: Counter, *labels: str) -> Callable[[float], None]:
    """A function adding a (non-negative) amount to `metric.labels(*labels)`."""
    found = child(metric, *labels)
    add = getattr(getattr(found, "_value", None), "inc", None)
    return add if callable(add) else found.inc


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Buckets:
    """`Histogram.observe` for one labelled child: the sum, then the first bucket whose bound holds it."""

    __slots__ = ("_add_sum", "_adds", "_bounds")

    def __init__(self, add_sum: Callable[[float], None], bounds: Sequence[float],
                 adds: Sequence[Callable[[float], None]]) -> None:
        self._add_sum = add_sum
        self._bounds = tuple(bounds)
        self._adds = tuple(adds)

    def observe(self, amount: float) -> None:
        self._add_sum(amount)
        bounds = self._bounds
        index = bisect_left(bounds, amount)
        if index < len(bounds) and amount <= bounds[index]:  # NaN fits no bucket, as in prometheus_client
            self._adds[index](1)


class _Later:
    """An observer made at its first observation: a histogram child costs ~1 ms and a dozen values, and most
    of 10,000 sites see no request between two reloads."""

    __slots__ = ("_found", "_labels", "_metric")

    def __init__(self, metric: Histogram, labels: tuple[str, ...]) -> None:
        self._metric = metric
        self._labels = labels
        self._found: Observer | None = None

    def observe(self, amount: float) -> None:
        found = self._found
        if found is None:
            found = self._found = observer(self._metric, *self._labels)
        found.observe(amount)


def later_observer(metric: Histogram, *labels: str) -> Observer:
    """`observer`, made when first used."""
    return _Later(metric, labels)


def observer(metric: Histogram, *labels: str) -> Observer:
    """`metric.labels(*labels)`, to `observe` on every request."""
    found = metric.labels(*labels)
    add_sum = getattr(getattr(found, "_sum", None), "inc", None)
    bounds = getattr(found, "_upper_bounds", None)
    buckets = getattr(found, "_buckets", None)
    if not (callable(add_sum) and isinstance(bounds, list) and isinstance(buckets, list)
            and len(bounds) == len(buckets) and bounds == sorted(bounds)):
        return found
    adds = [getattr(bucket, "inc", None) for bucket in buckets]
    if not all(callable(add) for add in adds):
        return found
    return _Buckets(add_sum, bounds, adds)  # type: ignore[arg-type]


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
