#!/usr/bin/env python3
"""Benchmark: HTML rewriting — consentproxy against nginx proxy_pass + sub_filter.

What: one upstream nginx (1 worker) serves the 60 KB page with trackers
(load_tests/fixtures/page-60k-trackers.html: the 60 KB page plus a Meta Pixel
`<script async src=".../fbevents.js">` tag next to its gtag.js tag) as
text/html, uncompressed. Four targets fetch it, one after the other:

- "direct": the upstream itself (context);
- "nginx": nginx proxy_pass, keep-alive upstream pool, 1 worker (context: a
  proxy that does not touch the page);
- "consentproxy": 1 worker, quick-start site in front of the upstream, no
  consent cookie sent, so no decision: the banner is injected and the
  trackers are blocked (the page is streamed through our scanner);
- "consentproxy-plain": the same consentproxy with `rewrite_html = false`
  (cookies still enforced, the page passes through untouched): the floor
  that the rewrite adds to;
- "nginx-subfilter": the same nginx proxy_pass plus `sub_filter` doing the
  nearest equivalent fixed-string work: `sub_filter_once off`, four rules — a
  script tag before `</head>`, a banner element (~1.5 KB) after `<body ...>`,
  and the gtag.js and fbevents.js script tags turned into `type="text/plain"`
  (`Accept-Encoding ""` upstream; text/html is sub_filter's default type, so
  no `sub_filter_types`, which would only draw a duplicate-type warning).

Both rewriting targets are checked once before (and once after) measuring:
nginx's output must hold the four replacements, consentproxy's the banner
(`id="cp-banner"`) and `data-cp-blocked` on both tracker script tags; the
benchmark stops with a message otherwise. Requests carry no Accept and no
Accept-Encoding header, like wrk's: consentproxy takes them for page requests
and, the client accepting no content coding, does not compress.

For each target: requests/s and CPU µs per request of the serving process
(nginx: its one worker) under wrk saturation, then p50/p99 latency at half
that rate; nginx-subfilter is also measured at consentproxy's half rate. The
measured process gets a CPU of its own; wrk and the upstream share the other.

Why: the issue's target is that consentproxy serves at least 0.45x as many
requests per CPU-second of the proxy process as nginx + sub_filter, i.e.
nginx_subfilter_cpu_us / consentproxy_cpu_us >= 0.45 (for reference, the issue
measured a bare raw-ASGI + aiohttp proxy doing one buffered replace at 0.66x).
Absolute numbers depend on the machine; compare ratios from the same run.
Prints a table and the ratios and writes everything as JSON
(load_tests/results/rewrite-<UTC time>.json).

    python load_tests/bench_rewrite.py [--duration 10] [--connections 32]

With `--knowledge [--rounds 5] [--pages fixture,NAME,...]`: instead, the
ratio for three tracker knowledges (the 37-vendor catalogue before issue 16,
the bundled catalogue, the bundled catalogue + a generated 1,000,000-rule
operator list), on the fixture and real pages, interleaved round after round
(load_tests/rewrite_knowledge.py says how).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import re
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import rewrite_knowledge
from bench_proxy import _choices, _on_sigterm, notes
from harness import (
    DEFAULT_PROXY_CMD,
    FIXTURES,
    RESULTS,
    HalfRate,
    HarnessError,
    Measurement,
    Pinning,
    Server,
    Settings,
    Target,
    environment,
    free_port,
    latency_at_rate,
    measure,
    measurements_table,
    require_tools,
    start_consentproxy,
    start_proxy_nginx,
    start_static_nginx,
    wait_ready,
)

PAGE = "page-60k-trackers.html"
FILE_KEY = "html+trk"
TARGETS = ("direct", "nginx", "consentproxy", "consentproxy-plain", "nginx-subfilter")
# consentproxy first: its half rate is reused
RUN_ORDER = ("direct", "consentproxy", "consentproxy-plain", "nginx", "nginx-subfilter")
TARGET_RATIO = 0.45  # consentproxy req per CPU-second / nginx+sub_filter req per CPU-second, at least

GTAG = '<script async src="https://www.googletagmanager.com/gtag/js'
FBEVENTS = '<script async src="https://connect.facebook.net/'
HEAD_SCRIPT = '<script src="/_consent/banner.js" defer></script>'

# A static banner of about the size of consentproxy's (which also carries a stylesheet link, a JSON
# config and its script). No `$` (nginx variables) and no `'` (the nginx string is single-quoted).
BANNER = (
    '<div id="cp-root" class="cp-root" data-cp-api="/_consent" data-cp-decided="0" data-cp-granted="necessary" '
    'lang="nl"><section id="cp-banner" class="cp-banner" role="dialog" aria-modal="false" '
    'aria-labelledby="cp-title" aria-describedby="cp-desc"><div class="cp-panel">'
    '<h2 id="cp-title" class="cp-title">Cookies op deze website</h2>'
    '<p id="cp-desc" class="cp-desc">Deze website gebruikt noodzakelijke cookies om te werken. Met uw toestemming '
    "gebruiken wij en onze partners ook cookies voor voorkeuren, statistieken en marketing. U kunt uw keuze altijd "
    'wijzigen of intrekken. <a class="cp-link" href="/privacy">Privacyverklaring</a></p>'
    '<div class="cp-actions"><button type="button" class="cp-btn" data-cp-action="accept_all">Alles accepteren'
    '</button><button type="button" class="cp-btn" data-cp-action="reject_all">Alles weigeren</button>'
    '<button type="button" class="cp-btn" data-cp-action="settings">Instellingen</button></div>'
    '<p class="cp-status" role="status" aria-live="polite"></p></div></section>'
    '<button type="button" id="cp-reopen" class="cp-reopen" data-consent-open aria-label="Cookie-instellingen" '
    'title="Cookie-instellingen"><span class="cp-reopen-icon" aria-hidden="true"></span></button>'
    '<script type="application/json" id="cp-config">{"lang":"nl","revision":1,"texts":{"title":"Cookies op deze '
    'website","accept_all":"Alles accepteren","reject_all":"Alles weigeren","settings":"Instellingen",'
    '"save":"Keuze opslaan","close":"Sluiten"},"categories":[]}</script></div>'
)


def body_tag(page: str) -> str:
    """The page's own `<body ...>` start tag, as sub_filter has to match it literally."""
    match = re.search(r"<body[^>]*>", page, re.IGNORECASE)
    if not match:
        raise HarnessError(f"{PAGE}: no <body> tag")
    return match.group(0)


def subfilter_rules(page: str) -> list[tuple[str, str]]:
    """(search, replacement) for the four sub_filter rules."""
    body = body_tag(page)
    return [
        ("</head>", HEAD_SCRIPT + "</head>"),
        (body, body + BANNER),
        (GTAG, GTAG.replace("<script async src=", '<script type="text/plain" async data-src=')),
        (FBEVENTS, FBEVENTS.replace("<script async src=", '<script type="text/plain" async data-src=')),
    ]


def subfilter_location_extra(rules: list[tuple[str, str]]) -> str:
    for search, replacement in rules:
        if any(ch in search + replacement for ch in "'$\\"):
            raise HarnessError(f"sub_filter rule {search!r} holds a character nginx would interpret")
    # No `sub_filter_types text/html;`: text/html is always filtered, and nginx warns of a duplicate MIME type.
    lines = ['proxy_set_header Accept-Encoding "";', "sub_filter_once off;"]
    lines += [f"sub_filter '{search}' '{replacement}';" for search, replacement in rules]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- checking the output


@dataclasses.dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: str


def fetch_like_wrk(url: str, timeout: float = 10.0) -> Fetched:
    """GET with only the Host header (no Accept, no Accept-Encoding), as wrk sends it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.putrequest("GET", parts.path or "/", skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        raw = resp.read()
        return Fetched(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw.decode("utf-8", "replace"))
    except (OSError, http.client.HTTPException) as exc:
        raise HarnessError(f"GET {url} failed: {exc!r}") from exc
    finally:
        conn.close()


def _basic_checks(fetched: Fetched) -> dict[str, bool]:
    return {
        "status 200": fetched.status == 200,
        "Content-Type text/html": fetched.headers.get("content-type", "").startswith("text/html"),
        "no Content-Encoding": fetched.headers.get("content-encoding", "identity") in ("", "identity"),
    }


def check_subfilter(fetched: Fetched, rules: list[tuple[str, str]]) -> dict[str, bool]:
    body = fetched.body
    checks = _basic_checks(fetched)
    checks["script before </head>"] = body.count(HEAD_SCRIPT + "</head>") == 1
    checks["banner after <body>"] = body.count(rules[1][1]) == 1
    checks["gtag script type=text/plain"] = body.count(rules[2][1]) == 1 and GTAG not in body
    checks["fbevents script type=text/plain"] = body.count(rules[3][1]) == 1 and FBEVENTS not in body
    return checks


def _script_tags(body: str, src_part: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"<script\b[^>]*>", body, re.IGNORECASE) if src_part in m.group(0)]


def check_consentproxy(fetched: Fetched) -> dict[str, bool]:
    body = fetched.body
    checks = _basic_checks(fetched)
    checks['banner id="cp-banner"'] = 'id="cp-banner"' in body
    for label, src in (("gtag", "googletagmanager.com/gtag/js"), ("fbevents", "connect.facebook.net/")):
        tags = _script_tags(body, src)
        checks[f"{label} script tag data-cp-blocked"] = bool(tags) and all(
            "data-cp-blocked" in tag and 'type="text/plain"' in tag for tag in tags)
    return checks


def verify(name: str, url: str, check: Any, when: str) -> dict[str, Any]:
    """Fetch once and run `check`; HarnessError naming every failed check."""
    fetched = fetch_like_wrk(url)
    checks: dict[str, bool] = check(fetched)
    failed = [label for label, ok in checks.items() if not ok]
    if failed:
        snippet = fetched.body[:400].replace("\n", " ")
        raise HarnessError(f"{name} output {when} measuring is not what this benchmark compares; failed checks: "
                           f"{', '.join(failed)} (status {fetched.status}, headers {fetched.headers}, "
                           f"{len(fetched.body)} chars, starts {snippet!r})")
    print(f"  {name:<15} {when} measuring: output OK ({len(checks)} checks, "
          f"{len(fetched.body.encode())} bytes)", file=sys.stderr, flush=True)
    return {"checks": checks, "body_bytes": len(fetched.body.encode()),
            "content_type": fetched.headers.get("content-type", ""),
            "content_encoding": fetched.headers.get("content-encoding", "")}


# --------------------------------------------------------------------------- running


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of wrk warm-up before each measurement (default 30%% of duration, 1-3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--latency-connections", type=int, default=16,
                        help="connections for the half-rate latency run (default 16)")
    parser.add_argument("--targets", type=_choices(TARGETS), default=list(TARGETS),
                        help=f"comma-separated, from {','.join(TARGETS)} (default all)")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default load_tests/results/rewrite-<UTC time>.json)")
    parser.add_argument("--proxy-cmd", default=DEFAULT_PROXY_CMD,
                        help="command for the consentproxy target; placeholders {python} {upstream} {listen} "
                             "{host} {port} {data_dir} (default: %(default)s)")
    parser.add_argument("--verify-only", action="store_true",
                        help="start the rewriting targets, check their output, stop; no measurement")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not give the measured proxy a CPU of its own (wrk and the upstream share the "
                             "other); by default it does, so the latency tail measures the proxy, not the scheduler")
    rewrite_knowledge.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.latency_connections < 1:
        parser.error("--duration must be >= 1 and connection counts >= 1")
    if args.warmup is None:
        args.warmup = min(3.0, max(1.0, args.duration * 0.3))
    return args


@dataclasses.dataclass
class Outcome:
    measurements: list[Measurement]
    same_rate: HalfRate | None  # nginx-subfilter at consentproxy's half rate
    verification: dict[str, dict[str, Any]]
    notes: list[str]


def run(args: argparse.Namespace, tools: dict[str, str], rules: list[tuple[str, str]]) -> Outcome:
    """Start the upstream, then each target in turn; check, measure, check again; stop everything."""
    pinning = Pinning() if args.no_pin else Pinning.split()
    settings = Settings(duration=args.duration, warmup=args.warmup, connections=args.connections,
                        latency_connections=args.latency_connections, tools=tools, pinning=pinning)
    outcome = Outcome([], None, {}, [])
    servers: list[Server] = []
    targets = list(args.targets)
    if args.verify_only:
        targets = [t for t in targets if t in ("consentproxy", "nginx-subfilter")]
    with contextlib.ExitStack() as stack:  # unwinds last-in first-out: servers stop, then the temp dir goes
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rewrite-")))
        www = tmp / "www"
        www.mkdir()
        (www / PAGE).write_bytes((FIXTURES / PAGE).read_bytes())

        upstream, upstream_port = start_static_nginx(tools["nginx"], tmp / "upstream", www, cpus=pinning.load)
        stack.callback(upstream.stop)
        servers.append(upstream)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        wait_ready(f"{upstream_url}/{PAGE}", upstream)

        for target_name in sorted(targets, key=RUN_ORDER.index):
            with contextlib.ExitStack() as target_stack:
                check = None
                if target_name == "direct":
                    target = Target("direct", upstream_url, upstream)
                elif target_name in ("nginx", "nginx-subfilter"):
                    extra = subfilter_location_extra(rules) if target_name == "nginx-subfilter" else ""
                    proxy, port = start_proxy_nginx(tools["nginx"], tmp / target_name, upstream_port,
                                                    location_extra=extra, cpus=pinning.target)
                    proxy.name = target_name
                    target_stack.callback(proxy.stop)
                    servers.append(proxy)
                    target = Target(target_name, f"http://127.0.0.1:{port}", proxy, upstream, upstream_url)
                    if target_name == "nginx-subfilter":
                        def check(fetched: Fetched) -> dict[str, bool]:
                            return check_subfilter(fetched, rules)
                elif target_name == "consentproxy-plain":
                    command, port = plain_config(tmp / target_name, upstream_url)
                    server, port = start_consentproxy(tmp / target_name, upstream_url, command, port=port,
                                                      cpus=pinning.target)
                    server.name = target_name
                    target_stack.callback(server.stop)
                    target = Target(target_name, f"http://127.0.0.1:{port}", server, upstream, upstream_url)
                else:
                    server, port = start_consentproxy(tmp / "consentproxy", upstream_url, args.proxy_cmd,
                                                      cpus=pinning.target)
                    target_stack.callback(server.stop)
                    target = Target("consentproxy", f"http://127.0.0.1:{port}", server, upstream, upstream_url)
                    check = check_consentproxy
                url = f"{target.base_url}/{PAGE}"
                wait_ready(url, target.server)
                if check is not None:
                    outcome.verification[target_name] = {"before": verify(target_name, url, check, "before")}
                if args.verify_only:
                    continue
                outcome.measurements.append(measure(target, FILE_KEY, PAGE, settings))
                ours = next((m for m in outcome.measurements if m.target == "consentproxy"), None)
                if target_name == "nginx-subfilter" and ours is not None:
                    outcome.same_rate = latency_at_rate(target, url, settings, ours.saturation.requests_per_s / 2)
                if check is not None:
                    outcome.verification[target_name]["after"] = verify(target_name, url, check, "after")
        outcome.measurements.sort(key=lambda m: TARGETS.index(m.target))
        outcome.notes = notes(outcome.measurements, servers)
    return outcome


def plain_config(workdir: Path, upstream_url: str) -> tuple[str, int]:
    """A configuration like the quick start's, with HTML rewriting off; the command that serves it."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "consentproxy.toml"
    config.write_text(f"""[server]
listen = ["127.0.0.1:{port}"]
data_dir = "{workdir / 'data'}"

[sites.bench]
hosts = ["*"]
upstream = "{upstream_url}"
rewrite_html = false
""")
    return f"{{python}} -m consentproxy serve -c {config} --log-level warning", port


def ratios(measurements: list[Measurement], same_rate: HalfRate | None) -> dict[str, Any]:
    """The key figure (requests per CPU-second, consentproxy / nginx+sub_filter) and context ratios."""
    by = {m.target: m for m in measurements}
    cpu = {name: m.saturation.cpu_us_per_req for name, m in by.items()}
    out: dict[str, Any] = {"requests_per_cpu_second": {name: 1e6 / us for name, us in cpu.items() if us > 0}}
    ours, sub, plain = by.get("consentproxy"), by.get("nginx-subfilter"), by.get("nginx")
    if ours is not None and sub is not None:
        key = cpu["nginx-subfilter"] / cpu["consentproxy"]
        out["consentproxy_vs_subfilter_req_per_cpu_s"] = key
        out["target_min"] = TARGET_RATIO
        out["meets_target"] = key >= TARGET_RATIO
        out["consentproxy_vs_subfilter_req_per_s"] = ours.saturation.requests_per_s / sub.saturation.requests_per_s
        if ours.half_rate.p99_ms is not None and sub.half_rate.p99_ms is not None:
            out["p99_half_rate_diff_ms"] = ours.half_rate.p99_ms - sub.half_rate.p99_ms
        if same_rate is not None and ours.half_rate.p99_ms is not None and same_rate.p99_ms is not None:
            out["subfilter_p99_at_consentproxy_half_rate_ms"] = same_rate.p99_ms
            out["p99_same_rate_diff_ms"] = ours.half_rate.p99_ms - same_rate.p99_ms
    if ours is not None and plain is not None:
        out["consentproxy_cpu_vs_nginx_proxy_pass"] = cpu["consentproxy"] / cpu["nginx"]
    if sub is not None and "consentproxy-plain" in cpu:
        # The ratio consentproxy could reach if rewriting cost nothing at all.
        out["plain_consentproxy_vs_subfilter_req_per_cpu_s"] = cpu["nginx-subfilter"] / cpu["consentproxy-plain"]
    if sub is not None and plain is not None:
        out["subfilter_cpu_vs_nginx_proxy_pass"] = cpu["nginx-subfilter"] / cpu["nginx"]
    return out


def format_ratios(derived: dict[str, Any]) -> str:
    lines = []
    if "consentproxy_vs_subfilter_req_per_cpu_s" in derived:
        key = derived["consentproxy_vs_subfilter_req_per_cpu_s"]
        per = derived["requests_per_cpu_second"]
        lines.append(f"  req per CPU-second of the proxy process, consentproxy / nginx+sub_filter = {key:.2f}x "
                     f"({per['consentproxy']:,.0f} / {per['nginx-subfilter']:,.0f})   target >= {TARGET_RATIO:.2f}x: "
                     + ("met" if derived["meets_target"] else "NOT met"))
        p99 = derived.get("p99_half_rate_diff_ms")
        same = derived.get("p99_same_rate_diff_ms")
        lines.append("  p99 consentproxy - nginx+sub_filter = "
                     + (f"{p99:+.2f} ms" if p99 is not None else "-") + " (each at half its own rate), "
                     + (f"{same:+.2f} ms" if same is not None else "-") + " (nginx+sub_filter at consentproxy's "
                     f"half rate)   (req/s ratio {derived['consentproxy_vs_subfilter_req_per_s']:.2f})")
    if "consentproxy_cpu_vs_nginx_proxy_pass" in derived:
        lines.append(f"  CPU us/req consentproxy (rewriting) / nginx proxy_pass = "
                     f"{derived['consentproxy_cpu_vs_nginx_proxy_pass']:.2f}x")
    if "plain_consentproxy_vs_subfilter_req_per_cpu_s" in derived:
        lines.append(f"  req per CPU-second, consentproxy without rewriting / nginx+sub_filter = "
                     f"{derived['plain_consentproxy_vs_subfilter_req_per_cpu_s']:.2f}x (the ceiling for the rewrite)")
    if "subfilter_cpu_vs_nginx_proxy_pass" in derived:
        lines.append(f"  CPU us/req nginx+sub_filter / nginx proxy_pass = "
                     f"{derived['subfilter_cpu_vs_nginx_proxy_pass']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = require_tools()
        page_text = (FIXTURES / PAGE).read_text(encoding="utf-8")
        rules = subfilter_rules(page_text)
    except (HarnessError, OSError) as exc:
        print(f"bench_rewrite: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path: Path = args.json or RESULTS / f"rewrite-{'knowledge-' if args.knowledge else ''}{stamp}.json"
    env = environment(tools)
    if args.knowledge:
        return knowledge_main(args, tools, env, started, json_path)
    print(f"bench_rewrite: {len(args.targets)} target(s) x {PAGE}, {args.duration:.0f}s per run, "
          f"wrk -c{args.connections}, paced wrk -c{args.latency_connections}; nproc {env['nproc']}", file=sys.stderr)
    try:
        outcome = run(args, tools, rules)
    except HarnessError as exc:
        print(f"bench_rewrite: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_rewrite: interrupted; every started process was stopped", file=sys.stderr)
        return 130
    if args.verify_only:
        print("bench_rewrite: output checks passed for " + ", ".join(outcome.verification), file=sys.stderr)
        return 0
    derived = ratios(outcome.measurements, outcome.same_rate)

    print()
    print(measurements_table(outcome.measurements))
    if derived:
        print()
        print(format_ratios(derived))
    if outcome.notes:
        print("\nnotes:")
        print("\n".join(f"  - {line}" for line in outcome.notes))

    report = {
        "benchmark": "bench_rewrite",
        "timestamp": stamp,
        "started_utc": started.isoformat(),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
            "latency_connections": args.latency_connections, "targets": args.targets,
            "proxy_cmd": args.proxy_cmd, "wrk_threads": 1, "nginx_workers": 1,
            "request_headers": "Host only (wrk default): no Accept, no Accept-Encoding, no Cookie",
            "subfilter_rules": [{"search": s, "replace_bytes": len(r.encode())} for s, r in rules],
            "subfilter_location_extra": subfilter_location_extra(rules),
            "pinning": (Pinning() if args.no_pin else Pinning.split()).describe(),
        },
        "fixtures": {FILE_KEY: {"path": f"load_tests/fixtures/{PAGE}", "bytes": (FIXTURES / PAGE).stat().st_size}},
        "environment": env,
        "verification": outcome.verification,
        "results": [dataclasses.asdict(m) for m in outcome.measurements],
        "subfilter_at_consentproxy_half_rate": dataclasses.asdict(outcome.same_rate) if outcome.same_rate else None,
        "ratios": derived,
        "notes": outcome.notes,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nJSON: {json_path}")
    return 0


def knowledge_main(args: argparse.Namespace, tools: dict[str, str], env: dict[str, Any], started: dt.datetime,
                   json_path: Path) -> int:
    """--knowledge: the three tracker knowledges against nginx+sub_filter, interleaved (rewrite_knowledge.py)."""
    try:
        report = rewrite_knowledge.run(args, tools)
    except HarnessError as exc:
        print(f"bench_rewrite: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_rewrite: interrupted; every started process was stopped", file=sys.stderr)
        return 130
    print()
    print(rewrite_knowledge.format_summary(report["summary"]))
    report = {"benchmark": "bench_rewrite --knowledge", "started_utc": started.isoformat(),
              "finished_utc": dt.datetime.now(dt.UTC).isoformat(), "command": shlex.join([sys.executable, *sys.argv]),
              "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
                           "rounds": args.rounds,
                           "pinning": (Pinning() if args.no_pin else Pinning.split()).describe()},
              "environment": env, **report}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
