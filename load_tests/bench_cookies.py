#!/usr/bin/env python3
"""Benchmark: what consent checking and cookie filtering cost per request.

1. In-process: the cookie step alone (`on_request` + `on_response`) for a
   request carrying 20 cookies (a valid consent cookie among them) and a
   response with 5 Set-Cookie headers — CPU µs per request.
2. In the same run, end to end: consentproxy (1 worker, its own CPU) in front
   of Debian's nginx serving the 60 KB page, saturated by wrk — once plain,
   once with the 20-cookie request header and 5 Set-Cookie headers from the
   upstream. CPU µs per request of the proxy process for both.

The target (issue: cookie enforcement): the step adds at most 10 % to the
proxy's CPU per request for the 60 KB page.

    python load_tests/bench_cookies.py [--duration 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    FILES,
    FIXTURES,
    RESULTS,
    HarnessError,
    Pinning,
    Settings,
    Target,
    environment,
    require_tools,
    run_wrk,
    saturate,
    start_consentproxy,
    start_static_nginx,
    wait_ready,
)

from consentproxy.config.model import ConsentConfig, CookieDeclaration, SiteConfig
from consentproxy.config.secrets import SigningKey
from consentproxy.consent.state import ConsentCodec, ConsentState, new_principal
from consentproxy.cookies.enforcement import CookieEnforcement
from consentproxy.cookies.inventory import CookieInventory

SET_COOKIES = [
    "sid=abcdef0123456789; Path=/; HttpOnly; SameSite=Lax",
    "_ga=GA1.1.1234567890.1700000000; Max-Age=34190000; Path=/",
    "_gid=GA1.1.987654321.1700000000; Max-Age=86400; Path=/",
    "_fbp=fb.1.1700000000000.123456789; Max-Age=7776000; Path=/",
    "cart=3f2a9c; Path=/shop; Max-Age=3600",
]
BROWSER_COOKIES = [
    "sid=abcdef0123456789", "_ga=GA1.1.1234567890.1700000000", "_gid=GA1.1.987654321.1700000000",
    "_ga_ABC123=GS1.1.1700000000.1.1.1700000100.0.0.0", "_fbp=fb.1.1700000000000.123456789",
    "_gcl_au=1.1.123.456", "_hjSessionUser_123=eyJpZCI6IjEifQ", "_hjSession_123=eyJpZCI6IjIifQ",
    "theme=dark", "lang=nl", "cart=3f2a9c", "csrftoken=q9w8e7r6t5y4", "wp-settings-1=editor%3Dtinymce",
    "wp-settings-time-1=1700000000", "_clck=abc%7C1%7Cf", "_uetsid=0123456789abcdef", "li_sugr=abc-def",
    "mystery=1", "recently_viewed=12%2C34%2C56",
]


def step_and_headers(key: SigningKey, granted: frozenset[str] = frozenset({"statistics"})
                     ) -> tuple[CookieEnforcement, bytes]:
    consent = ConsentConfig(cookies=(CookieDeclaration("necessary", name="sid"),
                                     CookieDeclaration("preferences", name="theme"),
                                     CookieDeclaration("preferences", name="lang"),
                                     CookieDeclaration("necessary", name="cart"),
                                     CookieDeclaration("preferences", name="recently_viewed"),
                                     CookieDeclaration("preferences", name="mystery")))
    site = SiteConfig(name="bench", hosts=("*",), upstream="http://127.0.0.1:1", consent=consent)
    step = CookieEnforcement(site, ConsentCodec((key,)), CookieInventory(Path(tempfile.mkdtemp())))
    now = int(time.time())
    state = ConsentState(new_principal(), granted, 1, now, now + 86400 * 365, "save_selection")
    cookie = "; ".join([*BROWSER_COOKIES, f"cp_consent={step.codec.encode(state)}"]).encode()
    return step, cookie


class _Exchange:
    """One request/response; `n` varies cookie values the way real visitors' do (GA4 rewrites
    `_ga_<id>` on every page view, session ids differ per visitor), so no cache keyed on whole
    header values can make the numbers look better than they are."""

    def __init__(self, cookie: bytes, n: int) -> None:
        varied = cookie.replace(b"_ga_ABC123=GS1.1.1700000000", b"_ga_ABC123=GS1.1.%d" % (1700000000 + n))
        self.scope = {"raw_path": b"/page"}
        self.request_headers = [(b"accept", b"text/html"), (b"cookie", varied), (b"user-agent", b"bench")]
        self.response_headers = [(b"content-type", b"text/html")] + [
            (b"set-cookie", c.encode().replace(b"=", b"=%d" % n, 1)) for c in SET_COOKIES]
        self.extra: dict[str, Any] = {}
        self.host = b"www.example.nl"
        self.scheme = "https"


ALL_GRANTED = frozenset({"preferences", "statistics", "marketing"})


def step_cost_us(granted: frozenset[str] = frozenset({"statistics"}), iterations: int = 20_000,
                 repeats: int = 5) -> float:
    """Median CPU µs per request for the step's request and response hooks.

    With statistics only, 8 of the 20 cookies are not allowed: they are cut and get expiries on
    every request (the worst case: a browser keeps sending what it was told to delete). With
    everything granted, nothing is cut (the steady state of a visitor who accepted).
    """
    step, cookie = step_and_headers(SigningKey("bench", b"b" * 32), granted)
    results = []
    for _ in range(repeats):
        exchanges = [_Exchange(cookie, n) for n in range(iterations)]
        start = time.process_time()
        for exchange in exchanges:
            step.on_request(exchange)  # type: ignore[arg-type]
            step.on_response(exchange)  # type: ignore[arg-type]
        results.append((time.process_time() - start) * 1e6 / iterations)
    filtered = exchanges[0].request_headers[1][1].count(b";") < cookie.count(b";") - 1
    assert filtered == (granted != ALL_GRANTED), "the scenario filters what it says"
    return statistics.median(results)


def end_to_end(duration: float, connections: int, tools: dict[str, str]) -> dict[str, float]:
    pinning = Pinning.split()
    settings = Settings(duration=duration, warmup=min(3.0, duration), connections=connections, tools=tools,
                        pinning=pinning)
    cookie_settings = Settings(duration=duration, warmup=min(3.0, duration), connections=connections,
                               tools=tools, pinning=pinning,
                               wrk_headers=("Cookie: " + "; ".join(BROWSER_COOKIES),))
    extra = "location /with-cookies/ {\n    alias %s/;\n" + "".join(
        f"    add_header Set-Cookie \"{c}\";\n" for c in SET_COOKIES) + "}\n"
    with tempfile.TemporaryDirectory(prefix="bench-cookies-") as tmp_text:
        tmp = Path(tmp_text)
        www = tmp / "www"
        www.mkdir()
        page = FILES["html"]
        (www / page).write_bytes((FIXTURES / page).read_bytes())
        upstream, port = start_static_nginx(tools["nginx"], tmp / "upstream", www, cpus=pinning.load,
                                            server_extra=extra % www)
        proxy = None
        try:
            upstream_url = f"http://127.0.0.1:{port}"
            wait_ready(f"{upstream_url}/{page}", upstream)
            proxy, proxy_port = start_consentproxy(tmp / "consentproxy", upstream_url, cpus=pinning.target)
            target = Target("consentproxy", f"http://127.0.0.1:{proxy_port}", proxy, upstream)
            out = {}
            for label, path, chosen in (("plain", f"/{page}", settings),
                                        ("cookies", f"/with-cookies/{page}", cookie_settings)):
                url = target.base_url + path
                wait_ready(url, proxy)
                run_wrk(tools["wrk"], url, connections, chosen.warmup, cpus=pinning.load, headers=chosen.wrk_headers)
                sat = saturate(target, url, chosen)
                out[f"{label}_cpu_us_per_req"] = sat.cpu_us_per_req
                out[f"{label}_requests_per_s"] = sat.requests_per_s
                print(f"  consentproxy {label:<8} {sat.requests_per_s:,.0f} req/s, {sat.cpu_us_per_req:.1f} µs CPU/req",
                      file=sys.stderr, flush=True)
            return out
        finally:
            if proxy is not None:
                proxy.stop()
            upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        tools = require_tools()
    except HarnessError as exc:
        print(f"bench_cookies: {exc}", file=sys.stderr)
        return 2
    step_us = step_cost_us()
    steady_us = step_cost_us(ALL_GRANTED)
    print(f"  cookie step alone, 20 cookies in, 5 Set-Cookie out: {steady_us:.1f} µs CPU per request when all "
          f"is granted, {step_us:.1f} µs with 8 cookies cut and expired", file=sys.stderr, flush=True)
    try:
        e2e = end_to_end(args.duration, args.connections, tools)
    except HarnessError as exc:
        print(f"bench_cookies: {exc}", file=sys.stderr)
        return 1
    plain = e2e["plain_cpu_us_per_req"]
    share, steady_share = step_us / plain, steady_us / plain
    delta = e2e["cookies_cpu_us_per_req"] / plain - 1
    print(f"\ncookie step: {steady_us:.1f} µs/request all granted ({steady_share:.1%}), {step_us:.1f} µs with 8 "
          f"cookies cut and expired ({share:.1%}), of the proxy's {plain:.1f} µs/request for the 60 KB page "
          "(target ≤ 10%)")
    print(f"end to end with 20 cookies and 5 Set-Cookie: {e2e['cookies_cpu_us_per_req']:.1f} µs/request "
          f"({delta:+.1%} against the plain page; includes parsing and sending the larger headers)")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"bench-cookies-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "bench_cookies", "timestamp": stamp, "step_cpu_us_per_req": step_us,
                                "step_share_of_proxy_cpu": share, "step_all_granted_cpu_us_per_req": steady_us,
                                "step_all_granted_share_of_proxy_cpu": steady_share, "end_to_end": e2e,
                                "end_to_end_delta": delta, "environment": environment(tools)}, indent=2))
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
