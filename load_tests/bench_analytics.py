#!/usr/bin/env python3
"""Benchmark: anonymised GA4 hits per second and the proxy's CPU per hit, against a plain 2 KB pass-through.

What: consentproxy (1 worker, its own CPU) in front of Debian's nginx, from a
config file: one site (`shop.example`, also `127.0.0.1`) with
`[sites.bench.analytics] ga4` pointing at the same nginx, which answers
`/g/collect` with 204 and logs a few fields of each hit it receives;
`statistics_exempt = true`, `ipv4 = "v4/24"` and `trusted_proxies =
["127.0.0.1/32"]`, so the visitor is the public address in X-Forwarded-For.
In one run, one after the other, wrk drives:

1. "bare 2 KB GET": `/data-2k.json` through the proxy as wrk asks by
   default (a Host header and nothing else), for reference;
2. "plain 2 KB GET" and "plain 2 KB GET, consented": the same file asked
   with the browser headers of the exempt and of the consented hits (below:
   the same visitor in X-Forwarded-For; the consented ones also send the
   consent and GA cookies): each hit phase's baseline. A hit and its plain
   request then differ only in what the proxy does with them, not in how many
   headers and cookies it parses, checks and forwards;
3. "GA4 exempt": `GET /_consent/a/g/collect?<page_view>` with no consent
   cookie, so the hit gets CNIL-style anonymisation (keyed client and session
   ids, allow-listed parameters, cleaned URLs, no client hints, `_uip` 0.0.0.0);
4. "GA4 consented": the same hit with a consent cookie granting statistics
   (signed with the proxy's own key after it started) and the site's GA
   cookies: cleaned and forwarded with the address truncated to /24 in `_uip`.

The hits look like gtag.js's: v=2, tid, cid, sid, sct, seg, _p, en=page_view,
dl with utm parameters, dt, an external dr, ul, sr, client hints (uaa, uam,
uap, ...), gcs/gcd, and a desktop Chrome's User-Agent, Accept-Language,
Referer and Sec-CH-UA headers.

For each: requests/s and CPU µs per request of the proxy process (from /proc)
under wrk saturation, and the ratio of a hit's CPU to the plain
pass-through's; the issue's target is at most 1.5x. Afterwards, per hit phase
(warm-up and measured run together): every response wrk got was a 204; in the
proxy's `consentproxy_analytics_hits_total`, nothing dropped or failed, every
hit answered counted forwarded (exempt: every hit received also anonymised);
nginx logged at least the hits counted forwarded and at most those received,
all in the phase's mode (`_uip`, `gcs`, `cid`, `sct`, `uap` as that mode
leaves them). The gap between received and forwarded is the hits in flight
when wrk closed its connections (at most one per connection and wrk run):
they reach nginx but are not counted forwarded; it is reported. The
benchmark exits 1 if any check fails, never because of a timing.

    python load_tests/bench_analytics.py [--duration 10] [--connections 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from harness import (
    FIXTURES,
    HarnessError,
    Nginx,
    Pinning,
    bench_main,
    cpu_seconds,
    free_port,
    nginx_conf,
    run_wrk,
    start_consentproxy,
    static_server_body,
    wait_ready,
)

from consentproxy.config.secrets import parse_consent_keys
from consentproxy.consent.state import ConsentCodec, ConsentState, new_principal

TARGET_RATIO = 1.5  # an anonymised hit may cost at most this many plain pass-throughs (proxy CPU)
SITE = "bench"
HOST = "shop.example"
CLIENT = "89.160.20.115"  # the visitor, as the trusted front proxy (127.0.0.1) names it
CLIENT_TRUNCATED = "89.160.20.0"  # ipv4 = "v4/24"
CLIENT_ID = "1987654321.1731400000"
PHASES = ("GA4 exempt", "GA4 consented")
#: each hit phase's baseline: the plain GET with the very headers (and cookies) of that phase's hits
PLAIN = {"GA4 exempt": "plain 2 KB GET", "GA4 consented": "plain 2 KB GET, consented"}
BARE = "bare 2 KB GET"  # wrk's own request (Host only), for reference
SETTLE_S = 10.0  # how long hits still in flight when wrk stops may take to be counted

USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
SEC_CH_UA = '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'
PAGE = "https://shop.example/products/trail-shoes"


def ga4_query(gcs: str, gcd: str) -> str:
    """A gtag.js page_view hit for /g/collect, as Chrome on Windows sends it (values made up)."""
    pairs = [
        ("v", "2"), ("tid", "G-8BENCH42XZ"), ("gtm", "45je4bk0v9187654321za200"), ("_p", "1731512345678"),
        ("gcs", gcs), ("gcd", gcd), ("npa", "1"), ("dma", "1"), ("cid", CLIENT_ID), ("ul", "nl-nl"),
        ("sr", "1920x1080"), ("uaa", "x86"), ("uab", "64"),
        ("uafvl", "Google Chrome;131.0.6778.86|Chromium;131.0.6778.86|Not_A Brand;24.0.0.0"), ("uamb", "0"),
        ("uam", ""), ("uap", "Windows"), ("uapv", "15.0.0"), ("uaw", "0"), ("are", "1"), ("frm", "0"),
        ("pscdl", "noapi"), ("_s", "1"), ("sid", "1731512000"), ("sct", "7"), ("seg", "1"),
        ("dl", PAGE + "?utm_source=newsletter&utm_medium=email&utm_campaign=autumn-sale&size=44"),
        ("dr", "https://www.google.com/"), ("dt", "Trail shoes | Shop"), ("en", "page_view"), ("_ee", "1"),
        ("tfd", "1532"),
    ]
    return urlencode(pairs, quote_via=quote)


@dataclass(frozen=True)
class Mode:
    """One kind of hit: what the browser sends, and what nginx must see of it afterwards."""

    name: str
    query: str
    cookie: str | None
    uip: str  # `_uip` as forwarded
    gcs: str  # `gcs` as forwarded: the visitor's real state
    cid_kept: bool  # consented hits keep the client id, exempt ones get a keyed hash
    sct: str
    uap: str  # client hints survive consent only ("-": nginx's empty value)


REQUEST_LUA = """
wrk.method = "GET"
wrk.path = [==[{path}]==]
{headers}
"""
COUNT_LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  no_content = 0
  other = 0
end
function response(status, headers, body)
  if status == 204 then no_content = no_content + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local n, o = 0, 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("no_content")
    o = o + thread:get("other")
  end
  local out = io.open(os.getenv("BENCH_STATUS_FILE"), "w")
  out:write(string.format("%d %d\\n", n, o))
  out:close()
end
"""


def request_script(path: str, cookie: str | None) -> str:
    """wrk's request: a browser's headers (a hit and the plain GET alike), the front proxy naming the visitor."""
    headers = {"Host": HOST, "User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Language": "nl-NL,nl;q=0.9,en;q=0.8",
               "Referer": PAGE + "?utm_source=newsletter&utm_medium=email&utm_campaign=autumn-sale&size=44",
               "Sec-CH-UA": SEC_CH_UA, "Sec-CH-UA-Mobile": "?0", "Sec-CH-UA-Platform": '"Windows"',
               "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin",
               "X-Forwarded-For": CLIENT}
    if cookie:
        headers["Cookie"] = cookie
    lines = [f"wrk.headers[ [==[{name}]==] ] = [==[{value}]==]" for name, value in headers.items()]
    return REQUEST_LUA.format(path=path, headers="\n".join(lines))


def hit_script(path: str, cookie: str | None) -> str:
    """The hit's request, counting 204s and other answers into BENCH_STATUS_FILE."""
    return request_script(path, cookie) + COUNT_LUA


# --------------------------------------------------------------------------- servers

LOG_FORMAT = "log_format ga4hit '$status $arg__uip $arg_gcs $arg_cid $arg_sct $arg_uap';\n"


def start_upstream(nginx: str, workdir: Path, root: Path, cpus: frozenset[int] | None) -> tuple[Nginx, int, Path]:
    """nginx serving `root`, answering /g/collect with 204 and logging each hit's fields; server, port, log."""
    port, hits_log = free_port(), workdir / "ga4-hits.log"
    body = static_server_body(root) + (f"location = /g/collect {{\n    access_log {hits_log} ga4hit;\n"
                                       "    return 204;\n}\n")
    server = Nginx("upstream-nginx", nginx, workdir, nginx_conf(workdir, port, body, http_extra=LOG_FORMAT), cpus)
    server.start()
    return server, port, hits_log


def write_config(workdir: Path, upstream_url: str) -> tuple[str, int, int]:
    """The proxy's config file; the command that serves it, its port and its admin port."""
    port, admin_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "consentproxy.toml"
    config.write_text(f"""[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin_port}"
data_dir = "{workdir / 'data'}"
trusted_proxies = ["127.0.0.1/32"]

[sites.{SITE}]
hosts = ["{HOST}", "127.0.0.1"]
upstream = "{upstream_url}"

[sites.{SITE}.consent]
statistics_exempt = true

[sites.{SITE}.analytics]
ga4 = "{upstream_url}"
ipv4 = "v4/24"
""")
    return f"{{python}} -m consentproxy serve -c {config} --log-level warning", port, admin_port


def consent_cookie(data_dir: Path) -> str:
    """A cookie granting statistics, signed with the proxy's own key, as the consent API would issue it."""
    keys = parse_consent_keys((data_dir / "secrets" / "consent-keys").read_text(), "consent-keys")
    now = int(time.time())
    value = ConsentCodec(keys).encode(ConsentState(new_principal(), frozenset({"statistics"}), 1, now,
                                                   now + 86400, "save_selection"))
    return f"_ga=GA1.1.{CLIENT_ID}; _ga_8BENCH42XZ=GS1.1.1731512000.7.1.1731512345.0.0.0; cp_consent={value}"


# --------------------------------------------------------------------------- counting


_HITS = re.compile(r'^consentproxy_analytics_hits_total\{([^}]*)\}\s+([0-9.eE+]+)$', re.MULTILINE)


def analytics_counts(admin_url: str) -> dict[str, int]:
    """outcome -> consentproxy_analytics_hits_total of our site's ga4 backend, from the admin /metrics."""
    conn = http.client.HTTPConnection(admin_url.removeprefix("http://"), timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    counts: dict[str, int] = {}
    for match in _HITS.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("site") == SITE and labels.get("backend") == "ga4":
            counts[labels["outcome"]] = int(float(match.group(2)))
    return counts


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))
            if after.get(k, 0) != before.get(k, 0)}


def log_lines(path: Path, offset: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


def settle(admin_url: str, hits_log: Path, offset: int, before: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """Counts and nginx's log lines once hits still in flight when wrk stopped have reached nginx."""
    deadline = time.monotonic() + SETTLE_S
    last: tuple[dict[str, int], int] | None = None
    while True:
        counts, lines = delta(analytics_counts(admin_url), before), log_lines(hits_log, offset)
        now = (counts, len(lines))
        if (now == last and len(lines) == counts.get("received", 0)) or time.monotonic() > deadline:
            return counts, lines
        last = now
        time.sleep(0.25)


def check_phase(mode: Mode, counts: dict[str, int], lines: list[str], answered: int, other: int,
                requests: int, cut_off_max: int) -> list[str]:
    """What went wrong in one hit phase (warm-up and measured run); empty when complete.

    wrk closes its connections when its time is up, with up to one request in flight on each: the proxy
    has counted those hits received and may have sent them to nginx, but stops there (no 204 to send,
    nor counted forwarded). So, per phase: answered <= forwarded <= nginx's count <= received, and at
    most `cut_off_max` (connections x wrk runs) received but not counted forwarded.
    """
    problems = []
    if other:
        problems.append(f"{other} responses were not 204")
    if answered != requests:
        problems.append(f"wrk completed {requests} requests but counted {answered} 204s")
    received, forwarded = counts.get("received", 0), counts.get("forwarded", 0)
    if forwarded < answered:
        problems.append(f"{answered} hits answered 204 but only {forwarded} counted forwarded")
    if not forwarded <= len(lines) <= received:
        problems.append(f"nginx logged {len(lines)} /g/collect requests; the proxy counted {forwarded} forwarded "
                        f"of {received} received")
    if received - forwarded > cut_off_max:
        problems.append(f"{received - forwarded} hits received but not forwarded, more than the {cut_off_max} "
                        "wrk can have had in flight when it stopped")
    failed = {k: v for k, v in counts.items() if k not in ("received", "forwarded", "anonymised")}
    if failed:
        problems.append(f"hits dropped or failed: {failed}")
    anonymised = counts.get("anonymised", 0)
    if mode.name == "GA4 exempt" and anonymised != received:
        problems.append(f"{received} exempt hits received but {anonymised} anonymised")
    if mode.name != "GA4 exempt" and anonymised:
        problems.append(f"{anonymised} consented hits were anonymised as exempt")
    wrong: dict[str, int] = {}
    for line in lines:
        fields = line.split(" ")
        if len(fields) != 6:
            wrong["unparsable log line"] = wrong.get("unparsable log line", 0) + 1
            continue
        status, uip, gcs, cid, sct, uap = fields
        for name, ok in (("status", status == "204"), ("_uip", uip == mode.uip), ("gcs", gcs == mode.gcs),
                         ("cid", (cid == CLIENT_ID) == mode.cid_kept and cid != "-"), ("sct", sct == mode.sct),
                         ("uap", uap == mode.uap)):
            if not ok:
                wrong[name] = wrong.get(name, 0) + 1
    if wrong:
        problems.append(f"hits nginx received not as the mode leaves them (field: count): {wrong}; "
                        f"e.g. {lines[0]!r}")
    return problems


# --------------------------------------------------------------------------- running


def main(argv: list[str] | None = None) -> int:
    return bench_main("analytics", __doc__ or "", run, _complete, argv)


def _complete(report: dict[str, Any]) -> bool:
    if report["problems"]:
        print("INCOMPLETE:\n  " + "\n  ".join(report["problems"]), file=sys.stderr)
    return bool(report["complete"])


def measure(tools: dict[str, str], url: str, args: argparse.Namespace, pinning: Pinning, proxy: Any,
            script: Path | None, status_file: Path | None) -> tuple[dict[str, Any], tuple[int, int]]:
    """Warm-up, then the measured wrk run; the measured figures and (204s, others) of both runs."""
    env = {"BENCH_STATUS_FILE": str(status_file)} if status_file else None
    statuses = [0, 0]

    def read_statuses() -> None:
        if status_file is not None:
            n, o = (int(x) for x in status_file.read_text().split())
            statuses[0] += n
            statuses[1] += o

    warm = run_wrk(tools["wrk"], url, args.connections, 2, cpus=pinning.load, script=script, env=env)
    read_statuses()
    before = cpu_seconds(proxy.measured_pids())
    result = run_wrk(tools["wrk"], url, args.connections, args.duration, cpus=pinning.load, script=script, env=env)
    used = cpu_seconds(proxy.measured_pids()) - before
    read_statuses()
    if result.requests <= 0:
        raise HarnessError(f"wrk completed no requests on {url}")
    figures = {"requests_per_s": result.requests_per_s, "requests": result.requests,
               "warmup_requests": warm.requests, "non_2xx_3xx": result.non_2xx_3xx,
               "socket_errors": result.socket_errors, "cpu_s": used, "cpu_us_per_req": used * 1e6 / result.requests,
               "p50_ms": result.latency_ms.get("p50"), "p99_ms": result.latency_ms.get("p99")}
    return figures, (statuses[0], statuses[1])


def run(args: argparse.Namespace, tools: dict[str, str]) -> dict[str, Any]:
    pinning = Pinning.split()
    results: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp_name:
        tmp = Path(tmp_name)
        www = tmp / "www"
        www.mkdir()
        (www / "data-2k.json").write_bytes((FIXTURES / "data-2k.json").read_bytes())
        upstream, upstream_port, hits_log = start_upstream(tools["nginx"], tmp / "upstream", www, pinning.load)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        proxy = None
        try:
            command, port, admin_port = write_config(tmp / "consentproxy", upstream_url)
            proxy, port = start_consentproxy(tmp / "consentproxy", upstream_url, command, port=port,
                                             cpus=pinning.target)
            base, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
            wait_ready(f"{base}/data-2k.json", proxy)
            cookie = consent_cookie(tmp / "consentproxy" / "data")
            modes = (
                Mode("GA4 exempt", ga4_query("G100", "11p1p1p1p5"), None, "0.0.0.0", "G100", False, "1", "-"),
                Mode("GA4 consented", ga4_query("G101", "11p1t1p1p5"), cookie, CLIENT_TRUNCATED, "G101", True, "7",
                     "Windows"),
            )

            figures, _ = measure(tools, f"{base}/data-2k.json", args, pinning, proxy, None, None)
            results[BARE] = figures
            say(BARE, figures)
            for mode in modes:
                plain_script = tmp / "plain.lua"
                plain_script.write_text(request_script("/data-2k.json", mode.cookie))
                figures, _ = measure(tools, f"{base}/data-2k.json", args, pinning, proxy, plain_script, None)
                results[PLAIN[mode.name]] = figures
                say(PLAIN[mode.name], figures)
            for mode in modes:
                path = f"/_consent/a/g/collect?{mode.query}"
                script, status_file = tmp / "hit.lua", tmp / "statuses"
                script.write_text(hit_script(path, mode.cookie))
                before, offset = analytics_counts(admin), hits_log.stat().st_size if hits_log.exists() else 0
                figures, (answered, other) = measure(tools, base + path, args, pinning, proxy, script, status_file)
                counts, lines = settle(admin, hits_log, offset, before)
                requests = figures["requests"] + figures["warmup_requests"]
                phase_problems = check_phase(mode, counts, lines, answered, other, requests, 2 * args.connections)
                results[mode.name] = figures
                checks[mode.name] = {"wrk_requests": requests, "answered_204": answered, "other_statuses": other,
                                     "proxy_counts": counts, "nginx_ga4_requests": len(lines),
                                     "cut_off_at_wrk_stop": counts.get("received", 0) - counts.get("forwarded", 0),
                                     "problems": phase_problems}
                problems += [f"{mode.name}: {p}" for p in phase_problems]
                say(mode.name, figures)
        finally:
            if proxy is not None:
                proxy.stop()
            upstream.stop()

    ratios = {name: results[name]["cpu_us_per_req"] / results[PLAIN[name]]["cpu_us_per_req"] for name in PHASES}
    bare = results[BARE]["cpu_us_per_req"]
    bare_ratios = {name: results[name]["cpu_us_per_req"] / bare for name in PHASES}
    report = {
        "benchmark": "bench_analytics", "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "pinning": pinning.describe(), "client": CLIENT, "results": results,
        "cpu_ratio_vs_plain": ratios, "cpu_ratio_vs_bare": bare_ratios, "target_max_ratio": TARGET_RATIO,
        "meets_target": {name: ratio <= TARGET_RATIO for name, ratio in ratios.items()},
        "checks": checks, "problems": problems, "complete": not problems,
    }
    print()
    for name in PHASES:
        figures, plain = results[name], results[PLAIN[name]]
        print(f"  {name:<14} {figures['requests_per_s']:>9,.0f} hits/s  {figures['cpu_us_per_req']:>7.1f} µs CPU/hit"
              f"  = {ratios[name]:.2f}x its {PLAIN[name]} ({plain['cpu_us_per_req']:.1f} µs, "
              f"{plain['requests_per_s']:,.0f} req/s); target ≤ {TARGET_RATIO}x: "
              f"{'met' if ratios[name] <= TARGET_RATIO else 'NOT met'} ({bare_ratios[name]:.2f}x the bare GET's "
              f"{bare:.1f} µs)")
    for name in PHASES:
        check = checks[name]
        counts = check["proxy_counts"]
        print(f"  {name:<14} {check['answered_204']:,} of {check['wrk_requests']:,} answered 204; proxy: "
              f"{counts.get('received', 0):,} received, {counts.get('forwarded', 0):,} forwarded"
              + (f", {counts['anonymised']:,} anonymised" if "anonymised" in counts else "")
              + f" ({check['cut_off_at_wrk_stop']} cut off when wrk stopped); nginx got "
              f"{check['nginx_ga4_requests']:,} /g/collect: " + ("complete" if not check["problems"] else "INCOMPLETE"))
    return report


def say(name: str, figures: dict[str, Any]) -> None:
    print(f"  {name:<14} {figures['requests_per_s']:>9,.0f} req/s  {figures['cpu_us_per_req']:>7.1f} µs CPU/req  "
          f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  non-2xx {figures['non_2xx_3xx']}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
