"""Response header hygiene: the memoised path answers exactly as the fully checked one."""

from __future__ import annotations

import itertools
import random

from prometheus_client import REGISTRY

from consentproxy.proxy import headers
from consentproxy.proxy.headers import filter_response_headers

NAMES = [b"Server", b"Date", b"Content-Type", b"content-length", b"Content-Length", b"Connection", b"ETag",
         b"Set-Cookie", b"Keep-Alive", b"X-Foo", b"x foo", b"", b"Transfer-Encoding", b"close", b"Vary", b"X-Bar",
         b"X-\xe9"]
VALUES = [b"nginx", b"keep-alive", b"Keep-Alive", b"close", b"close, X-Foo", b"keep-alive, x-bar", b"x\x01y",
          b"a\tb", b"X-Bar", b"\x7f", b"", b"text/html", b"a\rb", b"caf\xe9", b"a\nb"]


def test_bad_value_table_is_the_bad_value_pattern() -> None:
    for byte in range(256):
        one = bytes([byte])
        assert (one.translate(headers._BAD_TO_TAB) != one) == bool(headers._BAD_VALUE.search(one)), byte


def test_memoised_path_answers_as_the_checked_one() -> None:
    rng = random.Random(7)
    fast = 0
    for _ in range(20000):
        raw = tuple((rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 7)))
        keep_length = rng.random() < 0.7
        expected = headers._filter_checked(raw, "floor", keep_length)
        known = headers._filter_known(raw, keep_length)
        if known is not None:
            fast += 1
            assert known == expected, raw
        assert filter_response_headers(raw, "floor", keep_length) == expected, raw
    assert fast > 1000  # the memoised path did answer, for the usual responses


def test_every_name_order_of_a_typical_response() -> None:
    rows = [(b"Server", b"nginx"), (b"Connection", b"keep-alive"), (b"Content-Length", b"5"),
            (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]
    for order in itertools.permutations(rows):
        for keep_length in (True, False):
            first = filter_response_headers(order, "floor", keep_length)
            assert first == headers._filter_checked(order, "floor", keep_length)
            assert filter_response_headers(order, "floor", keep_length) == first


def test_a_bad_value_under_known_names_is_still_dropped_and_counted() -> None:
    def dropped() -> float:
        return REGISTRY.get_sample_value("consentproxy_dropped_response_headers_total", {"site": "floor-bad"}) or 0.0

    def malformed() -> float:
        return REGISTRY.get_sample_value("consentproxy_malformed_set_cookies_total", {"site": "floor-bad"}) or 0.0

    good = ((b"Content-Type", b"text/html"), (b"Set-Cookie", b"a=1"), (b"Connection", b"keep-alive"))
    assert filter_response_headers(good, "floor-bad") == [(b"content-type", b"text/html"), (b"set-cookie", b"a=1")]
    assert filter_response_headers(good, "floor-bad") == [(b"content-type", b"text/html"), (b"set-cookie", b"a=1")]
    before, before_malformed = dropped(), malformed()
    bad = ((b"Content-Type", b"text/html"), (b"Set-Cookie", b"a=\x01"), (b"Connection", b"keep-alive"))
    assert filter_response_headers(bad, "floor-bad") == [(b"content-type", b"text/html")]
    assert dropped() == before + 1
    assert malformed() == before_malformed + 1


def test_connection_naming_a_header_still_removes_it_after_the_names_are_known() -> None:
    plain = ((b"X-Hop", b"1"), (b"Connection", b"keep-alive"), (b"X-End", b"kept"))
    assert filter_response_headers(plain, "floor") == [(b"x-hop", b"1"), (b"x-end", b"kept")]
    naming = ((b"X-Hop", b"1"), (b"Connection", b"keep-alive, X-Hop"), (b"X-End", b"kept"))
    assert filter_response_headers(naming, "floor") == [(b"x-end", b"kept")]
    closing = ((b"Close", b"1"), (b"Connection", b"close"), (b"X-End", b"kept"))
    assert filter_response_headers(closing, "floor") == [(b"x-end", b"kept")]
