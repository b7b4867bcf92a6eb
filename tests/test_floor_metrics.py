"""The per-request metric shortcuts record exactly what prometheus_client's own methods record."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from consentproxy.observability import metrics

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
AMOUNTS = [0.0, 0.0004, 0.001, 0.0010001, 0.003, 0.0999, 0.1, 2.4, 29.9, 30.0, 30.5, 1e9, math.inf, math.nan, -1.0]


def _pair(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    counter = Counter("floor_requests", "help", ["site", "status"], registry=registry)
    histogram = Histogram("floor_latency_seconds", "help", ["site"], buckets=BUCKETS, registry=registry)
    return counter, histogram


def test_adder_and_observer_match_the_public_methods() -> None:
    public, fast = CollectorRegistry(), CollectorRegistry()
    counter, histogram = _pair(public)
    fast_counter, fast_histogram = _pair(fast)
    add = metrics.adder(fast_counter, "site", "200")
    observe = metrics.observer(fast_histogram, "site").observe
    assert isinstance(metrics.observer(fast_histogram, "site"), metrics._Buckets)  # the shortcut is in use
    for amount in AMOUNTS:
        if amount >= 0:
            counter.labels("site", "200").inc(amount)
            add(amount)
        histogram.labels("site").observe(amount)
        observe(amount)
    assert generate_latest(fast) == generate_latest(public)


def test_count_request_counts_by_site_and_status() -> None:
    def value(status: str) -> float:
        sample = metrics.REQUESTS.labels("floor-site", status)._value.get()
        return float(sample)

    before_200, before_502 = value("200"), value("502")
    metrics.count_request("floor-site", 200)
    metrics.count_request("floor-site", 200)
    metrics.count_request("floor-site", 502)
    assert value("200") == before_200 + 2
    assert value("502") == before_502 + 1
