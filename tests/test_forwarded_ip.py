"""What the site's own access logs learn of the visitor: `forward_client_ip` per site."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
from conftest import Upstream, launch_proxy, site_toml


@pytest.mark.parametrize(("policy", "expected"), [
    ("full", ["198.51.100.23, 127.0.0.1"]),
    ("truncated", ["198.51.100.0, 127.0.0.0"]),
    ("none", []),
])
def test_the_site_sees_the_visitor_address_as_configured(upstream: Upstream, tmp_path: Path, policy: str,
                                                         expected: list[str]) -> None:
    sites = site_toml("kade", upstream.url, forward_client_ip=policy)
    proxy = launch_proxy(tmp_path, 0, sites, server={"trusted_proxies": ["127.0.0.1/32"]})
    try:
        request = urllib.request.Request(proxy.url + "/seen", headers={
            "X-Forwarded-For": "198.51.100.23", "Forwarded": "for=198.51.100.23"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        seen = upstream.seen[-1]
        assert seen.header("x-forwarded-for") == expected
        if policy != "full":  # no other header may carry the full address
            assert seen.header("forwarded") == []
            assert not any("198.51.100.23" in value for _, value in seen.headers)
    finally:
        proxy.stop(signal.SIGTERM)


def test_ipv6_chains_are_cut_to_48_bits_and_junk_left_out(upstream: Upstream, tmp_path: Path) -> None:
    proxy = launch_proxy(tmp_path, 0, site_toml("kade", upstream.url, forward_client_ip="truncated"),
                         server={"trusted_proxies": ["127.0.0.1/32"]})
    try:
        request = urllib.request.Request(proxy.url + "/seen", headers={
            "X-Forwarded-For": "2001:db8:1234:5678::9, unknown, ::ffff:203.0.113.9"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        assert upstream.seen[-1].header("x-forwarded-for") == ["2001:db8:1234::, 203.0.113.0, 127.0.0.0"]
    finally:
        proxy.stop(signal.SIGTERM)
