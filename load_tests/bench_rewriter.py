#!/usr/bin/env python3
"""Benchmark: the HTML rewriter alone, in-process, without the network.

The 60 KB page with trackers (`fixtures/page-60k-trackers.html`), no consent
decision, rewritten as the proxy does for a page that came whole: a fresh
plan per page (its own stamp), the site's memos shared across pages. Also the
scanner alone (`_scanner.Scanner` with the site's set of unchanged tags).
Wall-clock µs per page on one CPU, warm caches: the best and the median of
`--repeats` timings of `--pages` pages each. Tells where a change to the
rewriter moves its cost; the end-to-end figure is `bench_rewrite.py`'s.

    python load_tests/bench_rewriter.py [--pages 300] [--repeats 9] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import FIXTURES, RESULTS

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.config.consent import default_categories
from consentproxy.config.model import ConsentConfig, SiteConfig
from consentproxy.consent.decision import NO_DECISION
from consentproxy.html._scanner import Scanner
from consentproxy.html.csp import NoncePlan
from consentproxy.html.rewriter import NoscriptMemo, PagePlan, PageRewriter, StateMemos
from consentproxy.html.trackers import TrackerMatcher

PAGE = "page-60k-trackers.html"


def timings(work: Callable[[], object], pages: int, repeats: int) -> list[float]:
    """µs per page of `repeats` runs of `pages` calls, after a warm-up."""
    for _ in range(50):
        work()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(pages):
            work()
        out.append((time.perf_counter() - started) / pages * 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300, help="pages per timing (default 300)")
    parser.add_argument("--repeats", type=int, default=9, help="timings (default 9)")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default load_tests/results/rewriter-<UTC time>.json)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})

    page = (FIXTURES / PAGE).read_bytes()
    site = SiteConfig(name="bench", hosts=("bench.test",), upstream="http://127.0.0.1:1",
                      consent=ConsentConfig(categories=default_categories(), controller="Bench BV"))
    markup = SiteMarkup(site, BannerAssets())
    matcher = TrackerMatcher(site.consent.services)
    noscripts: NoscriptMemo = {}
    states: StateMemos = {}

    def rewrite() -> bytes:
        plan = PagePlan(matcher, NO_DECISION.allowed, PageInjection(markup, NO_DECISION, None), NoncePlan(),
                        noscript_memo=noscripts, state_memos=states)
        return PageRewriter(plan, None).whole(page)

    rewritten = timings(rewrite, args.pages, args.repeats)
    (memo,) = states.values()  # filled by the rewrites: the site's unchanged tags at this consent state

    def scan() -> None:
        scanner = Scanner(noop=memo.noop)
        scanner.feed(page)
        scanner.finish()

    scanned = timings(scan, args.pages, args.repeats)
    results = {
        "benchmark": "rewriter", "page": PAGE, "page_bytes": len(page), "pages": args.pages,
        "repeats": args.repeats, "command": " ".join([sys.executable, *sys.argv]),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "rewrite_us": {"best": min(rewritten), "median": statistics.median(rewritten)},
        "scanner_us": {"best": min(scanned), "median": statistics.median(scanned)},
    }
    for name in ("rewrite_us", "scanner_us"):
        figures = results[name]
        assert isinstance(figures, dict)
        print(f"{name[:-3]:8s} best {figures['best']:6.1f} µs/page, median {figures['median']:6.1f}")
    path = args.json or RESULTS / f"rewriter-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
