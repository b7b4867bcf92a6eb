#!/usr/bin/env python3
"""Benchmark: consent decisions per second, each committed to the consent log before its answer.

What: consentproxy (1 worker, its own CPU, the default SQLite log in its data
directory: WAL, synchronous=FULL) in front of Debian's nginx. wrk POSTs
`{"action": "accept_all"}` to `/_consent` as new visitors (no cookie) over
many connections, so decisions arrive concurrently and share transactions
(group commit). In the same run, the plain 2 KB JSON pass-through through
the same proxy, for the ratio. Afterwards every acknowledged decision must be
in the log: the number of events stored is compared with wrk's 200s.

Why: issue 6 asks that the API answer only after the commit and that
throughput stay high; GUIDE §4 measured SQLite here at about 6k commits/s
one record per commit and 40k/s at ten per commit.

    python load_tests/bench_consent.py [--duration 10] [--connections 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    FIXTURES,
    Pinning,
    bench_main,
    cpu_seconds,
    run_wrk,
    start_consentproxy,
    start_static_nginx,
    wait_ready,
)

from consentproxy.records import open_store

DECIDE_LUA = """
wrk.method = "POST"
wrk.body = '{"action": "accept_all"}'
wrk.headers["Content-Type"] = "application/json"
"""


def main(argv: list[str] | None = None) -> int:
    return bench_main("consent", __doc__ or "", run, lambda report: report["lost"] == 0, argv)


def run(args: argparse.Namespace, tools: dict[str, str]) -> dict[str, Any]:
    pinning = Pinning.split()
    with tempfile.TemporaryDirectory(prefix="bench-consent-") as tmp_name:
        tmp = Path(tmp_name)
        www = tmp / "www"
        www.mkdir()
        (www / "data-2k.json").write_bytes((FIXTURES / "data-2k.json").read_bytes())
        upstream, upstream_port = start_static_nginx(tools["nginx"], tmp / "upstream", www, cpus=pinning.load)
        proxy = None
        try:
            proxy, port = start_consentproxy(tmp / "consentproxy", f"http://127.0.0.1:{upstream_port}",
                                             cpus=pinning.target)
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/data-2k.json", proxy)
            script = tmp / "decide.lua"
            script.write_text(DECIDE_LUA)
            results = {}
            for name, url, lua in (("plain 2 KB GET", f"{base}/data-2k.json", None),
                                   ("decision POST", f"{base}/_consent", script)):
                run_wrk(tools["wrk"], url, args.connections, 2, cpus=pinning.load, script=lua)  # warm-up
                before = cpu_seconds(proxy.measured_pids())
                result = run_wrk(tools["wrk"], url, args.connections, args.duration, cpus=pinning.load,
                                 script=lua)
                used = cpu_seconds(proxy.measured_pids()) - before
                ok = result.requests - result.non_2xx_3xx
                results[name] = {"requests_per_s": result.requests_per_s, "requests": result.requests,
                                 "ok": ok, "cpu_us_per_req": used * 1e6 / result.requests,
                                 "p50_ms": result.latency_ms.get("p50"), "p99_ms": result.latency_ms.get("p99")}
                print(f"  {name:<15} {result.requests_per_s:>9,.0f} req/s  "
                      f"{used * 1e6 / result.requests:>7.1f} µs CPU/req  p50 {result.latency_ms.get('p50')} ms  "
                      f"p99 {result.latency_ms.get('p99')} ms  non-2xx {result.non_2xx_3xx}", file=sys.stderr)
        finally:
            if proxy is not None:
                proxy.stop()
            upstream.stop()
        store = open_store(f"sqlite:///{tmp / 'consentproxy' / 'data' / 'consent-records.db'}")
        try:
            stored = store.count("quickstart") if "quickstart" in store.sites() else sum(
                store.count(site) for site in store.sites())
        finally:
            store.close()
    plain, decide = results["plain 2 KB GET"], results["decision POST"]
    # Every 200 of the warm-up and the measured run was acknowledged, so must be stored.
    acknowledged_at_least = decide["ok"]
    report = {
        "benchmark": "bench_consent", "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "results": results, "events_stored": stored,
        "lost": max(0, acknowledged_at_least - stored),
        "cpu_ratio_decision_vs_plain": decide["cpu_us_per_req"] / plain["cpu_us_per_req"],
    }
    print(f"\n  decisions: {decide['requests_per_s']:,.0f}/s committed, {report['cpu_ratio_decision_vs_plain']:.2f}x "
          f"the CPU of a plain 2 KB pass-through; {stored:,} events stored for ≥ {acknowledged_at_least:,} "
          f"acknowledged in the measured run (lost: {report['lost']})")
    return report


if __name__ == "__main__":
    sys.exit(main())
