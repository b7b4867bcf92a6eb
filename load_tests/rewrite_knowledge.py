"""bench_rewrite.py --knowledge: does more tracker knowledge make pages slower to rewrite?

Three consentproxy processes run side by side, each with one tracker
knowledge (issue 16, item 5):

- "today": the catalogue as it was before issue 16 grew it (37 vendors, found
  in git: the last revision of consentproxy/data/services.toml with fewer than
  100 services before the first with more), without the Open Cookie Database's
  host rules, through load_tests/catalogue_proxy.py;
- "catalogue": the bundled catalogue and the Open Cookie Database's hosts (what
  ships);
- "catalogue+1M": the same plus a generated operator list of 1,000,000 host
  rules (`||hN.bench-list.test^`) and 2,000 ABP rules with paths
  (`/bench-N/collect.gif$image`, `||cdn-N.bench-paths.test/px/`), so every URL no
  host rule knows is also asked of adblock-rust.

And one nginx + sub_filter per page (the page's own four rules: a script
before `</head>`, the banner after its `<body ...>`, up to two of its tracker
script tags turned to text/plain; the fixture page keeps bench_rewrite's
rules). Every target is checked once before measuring; one extra page holds a
script from the million-host list, which only "catalogue+1M" must block.

Measured: CPU µs per request of the serving process at wrk saturation (no
half-rate latency run). Rounds interleave everything: in each round, for each
page, each target in turn (the order rotating from round to round), so drift
on a shared machine hits all alike. A round's ratio for a page and knowledge
is nginx+sub_filter's CPU/request over consentproxy's, as bench_rewrite's key
figure; reported: the median over rounds, and the median of each round's
ratio against "today"'s in the same round (1.00 = no slower).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import (
    FIXTURES,
    REPO,
    HarnessError,
    Pinning,
    Settings,
    Target,
    format_table,
    free_port,
    run_wrk,
    saturate,
    start_consentproxy,
    start_proxy_nginx,
    start_static_nginx,
    wait_ready,
)

KNOWLEDGE = ("today", "catalogue", "catalogue+1M")
FIXTURE_PAGE = "page-60k-trackers.html"
REAL_PAGES = REPO / "tests" / "data" / "real-pages"
DEFAULT_PAGES = ("fixture", "newrepublic.com--minutes", "www.latimes.com--old", "www.wired.com--content-test")
CATALOGUE = "consentproxy/data/services.toml"
LIST_HOSTS = 1_000_000
LIST_PATH_RULES = 2_000
LIST_CHECK_PAGE = "list-check.html"
LIST_CHECK_URL = "https://h424242.bench-list.test/t.js"


@dataclass
class Sample:
    round: int
    page: str
    target: str
    cpu_us_per_req: float
    requests_per_s: float
    other_processes_cpu_pct: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--knowledge", action="store_true",
                        help="compare tracker knowledge (today's 37-vendor catalogue, the bundled one, the bundled "
                             "one + a 1,000,000-rule list) against nginx+sub_filter, interleaved; see "
                             "load_tests/rewrite_knowledge.py")
    parser.add_argument("--rounds", type=int, default=5, help="--knowledge: rounds (default 5)")
    parser.add_argument("--pages", default=",".join(DEFAULT_PAGES),
                        help="--knowledge: 'fixture' and names of tests/data/real-pages/NAME.html.gz "
                             f"(default {','.join(DEFAULT_PAGES)})")


def baseline_catalogue() -> tuple[str, str, int]:
    """(commit, services.toml text, service count) of the catalogue before it grew past 100 services."""
    log = subprocess.run(["git", "log", "--reverse", "--format=%H", "--", CATALOGUE], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    found: tuple[str, str, int] | None = None
    for commit in log:
        text = subprocess.run(["git", "show", f"{commit}:{CATALOGUE}"], cwd=REPO, check=True, capture_output=True,
                              text=True).stdout
        count = len(re.findall(r"^\[\[service\]\]", text, re.MULTILINE))
        if count >= 100:
            break
        found = (commit, text, count)
    if found is None:
        raise HarnessError(f"no revision of {CATALOGUE} with fewer than 100 services in git history")
    return found


def write_million_list(path: Path) -> None:
    with path.open("w") as out:
        out.write("[Adblock Plus 2.0]\n! Title: bench list (generated)\n")
        out.writelines(f"||h{i}.bench-list.test^\n" for i in range(LIST_HOSTS))
        for i in range(LIST_PATH_RULES // 2):
            out.write(f"/bench-{i}/collect.gif$image\n||cdn-{i}.bench-paths.test/px/\n")


def page_bytes(name: str) -> bytes:
    if name == "fixture":
        return (FIXTURES / FIXTURE_PAGE).read_bytes()
    path = REAL_PAGES / f"{name}.html.gz"
    if not path.exists():
        raise HarnessError(f"--pages: no {path}")
    return gzip.decompress(path.read_bytes())


def file_name(name: str) -> str:
    return FIXTURE_PAGE if name == "fixture" else f"{name}.html"


def page_rules(name: str, text: str) -> list[tuple[str, str]]:
    """nginx sub_filter rules for a page: bench_rewrite's for the fixture; for a real page, the script before
    `</head>`, the banner after its `<body ...>` and up to two of its catalogued tracker script tags turned
    into text/plain (rules nginx could not take literally are skipped)."""
    from bench_rewrite import BANNER, HEAD_SCRIPT, body_tag, subfilter_rules

    if name == "fixture":
        return subfilter_rules(text)
    from consentproxy.html.trackers import TrackerMatcher

    matcher = TrackerMatcher(())
    body = body_tag(text)
    rules = [("</head>", HEAD_SCRIPT + "</head>"), (body, body + BANNER)]
    for found in re.finditer(r'<script\b[^>]*?\ssrc="([^"]+)"', text):
        tag = found.group(0)
        if matcher.url("scripts", found.group(1)) and not any(c in tag for c in "'$\\") \
                and all(tag != search for search, _ in rules):
            rules.append((tag, tag.replace("<script", '<script type="text/plain"', 1).replace(' src="', ' data-src="',
                                                                                                   1)))
        if len(rules) == 4:
            break
    return [(s, r) for s, r in rules if not any(c in s + r for c in "'$\\")]


def consentproxy_config(workdir: Path, port: int, upstream_url: str, million: Path | None) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "consentproxy.toml"
    trackers = f'\n[trackers]\nlists = [{{format = "abp", path = "{million}"}}]\n' if million else ""
    config.write_text(f'[server]\nlisten = ["127.0.0.1:{port}"]\ndata_dir = "{workdir / "data"}"\n\n'
                      f'[sites.bench]\nhosts = ["*"]\nupstream = "{upstream_url}"\n{trackers}')
    return config


def _get(url: str) -> str:
    from bench_rewrite import fetch_like_wrk

    fetched = fetch_like_wrk(url, timeout=30)
    if fetched.status != 200:
        raise HarnessError(f"GET {url}: status {fetched.status}")
    return fetched.body


def run(args: argparse.Namespace, tools: dict[str, str]) -> dict[str, Any]:
    """Start everything, check it, measure the rounds, stop everything; the report."""
    from bench_rewrite import HEAD_SCRIPT, subfilter_location_extra

    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    texts = {name: page_bytes(name) for name in pages}
    pinning = Pinning() if args.no_pin else Pinning.split()
    settings = Settings(duration=args.duration, warmup=args.warmup, connections=args.connections, tools=tools,
                        pinning=pinning)
    commit, old_catalogue, old_count = baseline_catalogue()
    print(f"knowledge: 'today' = {CATALOGUE} at {commit[:10]} ({old_count} services); pages: {', '.join(pages)}",
          file=sys.stderr, flush=True)
    samples: list[Sample] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-knowledge-")))
        www = tmp / "www"
        www.mkdir()
        for name, data in texts.items():
            (www / file_name(name)).write_bytes(data)
        (www / LIST_CHECK_PAGE).write_text(f'<!doctype html><html><head><script src="{LIST_CHECK_URL}"></script>'
                                           "</head><body><p>x</p></body></html>")
        (tmp / "today.toml").write_text(old_catalogue)
        million = tmp / "million.txt"
        write_million_list(million)

        upstream, upstream_port = start_static_nginx(tools["nginx"], tmp / "upstream", www, cpus=pinning.load)
        stack.callback(upstream.stop)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        wait_ready(f"{upstream_url}/{LIST_CHECK_PAGE}", upstream)

        targets: dict[str, Target] = {}
        for knowledge in KNOWLEDGE:
            port = free_port()
            workdir = tmp / knowledge.replace("+", "-")
            config = consentproxy_config(workdir, port, upstream_url, million if knowledge == "catalogue+1M" else None)
            launcher = f"{{python}} load_tests/catalogue_proxy.py {tmp / 'today.toml'} " if knowledge == "today" \
                else "{python} -m consentproxy "
            server, _ = start_consentproxy(workdir, upstream_url, launcher + f"serve -c {config} --log-level warning",
                                           port=port, cpus=pinning.target)
            server.name = knowledge
            stack.callback(server.stop)
            targets[knowledge] = Target(knowledge, f"http://127.0.0.1:{port}", server, upstream)
        subfilters: dict[str, Target] = {}
        for name in pages:
            rules = page_rules(name, texts[name].decode("utf-8", "replace"))
            proxy, port = start_proxy_nginx(tools["nginx"], tmp / f"subfilter-{len(subfilters)}", upstream_port,
                                            location_extra=subfilter_location_extra(rules), cpus=pinning.target)
            proxy.name = f"nginx-subfilter {name}"
            stack.callback(proxy.stop)
            subfilters[name] = Target("nginx-subfilter", f"http://127.0.0.1:{port}", proxy, upstream)

        for knowledge, target in targets.items():
            wait_ready(f"{target.base_url}/{LIST_CHECK_PAGE}", target.server, timeout=120)
            check = _get(f"{target.base_url}/{LIST_CHECK_PAGE}")
            blocked = f'data-cp-src="{LIST_CHECK_URL}"' in check
            if blocked != (knowledge == "catalogue+1M"):
                raise HarnessError(f"{knowledge}: the million-list host is {'' if blocked else 'not '}blocked")
            for name in pages:
                if 'id="cp-banner"' not in _get(f"{target.base_url}/{file_name(name)}"):
                    raise HarnessError(f"{knowledge}: no banner on {name}")
        for name, target in subfilters.items():
            wait_ready(f"{target.base_url}/{file_name(name)}", target.server)
            if HEAD_SCRIPT not in _get(f"{target.base_url}/{file_name(name)}"):
                raise HarnessError(f"nginx-subfilter: no injected script on {name}")
        print("knowledge: every target checked (banner on every page; the list host blocked by catalogue+1M "
              "only)", file=sys.stderr, flush=True)

        order: list[str] = ["nginx-subfilter", *KNOWLEDGE]
        for round_no in range(args.rounds):
            rotated = order[round_no % len(order):] + order[:round_no % len(order)]
            for name in pages:
                for which in rotated:
                    target = subfilters[name] if which == "nginx-subfilter" else targets[which]
                    url = f"{target.base_url}/{file_name(name)}"
                    try:
                        run_wrk(tools["wrk"], url, settings.connections, settings.warmup, cpus=pinning.load)
                        sat = saturate(target, url, settings)
                    except HarnessError as exc:  # e.g. a page so heavy that no request finished: a gap, not an end
                        print(f"  round {round_no + 1}/{args.rounds} {name} {which}: no sample ({exc})",
                              file=sys.stderr, flush=True)
                        continue
                    samples.append(Sample(round_no, name, which, sat.cpu_us_per_req, sat.requests_per_s,
                                          sat.other_processes_cpu_pct))
                    print(f"  round {round_no + 1}/{args.rounds} {name:<28} {which:<16} "
                          f"{sat.cpu_us_per_req:8.1f} µs CPU/req {sat.requests_per_s:8,.0f} req/s "
                          f"(others {sat.other_processes_cpu_pct:.0f}%)", file=sys.stderr, flush=True)
    return {"baseline_catalogue": {"commit": commit, "services": old_count},
            "million_list": {"host_rules": LIST_HOSTS, "path_rules": LIST_PATH_RULES},
            "pages": pages, "samples": [asdict(s) for s in samples], "summary": summary(samples, pages)}


def summary(samples: list[Sample], pages: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per page and knowledge: the median ratio to nginx+sub_filter, and the median of each round's ratio
    against "today"'s."""
    cpu = {(s.round, s.page, s.target): s.cpu_us_per_req for s in samples}
    rounds = sorted({s.round for s in samples})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for page in [*pages, "all pages"]:
        chosen = pages if page == "all pages" else [page]
        out[page] = {}
        for knowledge in KNOWLEDGE:
            ratios = [cpu[r, p, "nginx-subfilter"] / cpu[r, p, knowledge] for r in rounds for p in chosen
                      if (r, p, knowledge) in cpu and (r, p, "nginx-subfilter") in cpu]
            versus = [cpu[r, p, "today"] / cpu[r, p, knowledge] for r in rounds for p in chosen
                      if (r, p, knowledge) in cpu and (r, p, "today") in cpu] or [float("nan")]
            if ratios:
                out[page][knowledge] = {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                                        "ratio_max": max(ratios), "vs_today_median": statistics.median(versus),
                                        "samples": len(ratios)}
    return out


def format_summary(summary_: dict[str, dict[str, dict[str, float]]]) -> str:
    headers = ["page", "knowledge", "ratio vs nginx+sub_filter (median)", "min", "max", "vs today (median)", "n"]
    rows = [[page, knowledge, f"{v['ratio_median']:.2f}x", f"{v['ratio_min']:.2f}", f"{v['ratio_max']:.2f}",
             f"{v['vs_today_median']:.3f}", f"{v['samples']:.0f}"]
            for page, by in summary_.items() for knowledge, v in by.items()]
    return format_table(headers, rows)

