#!/usr/bin/env python3
"""Benchmark: consentproxy against nginx proxy_pass and the bare upstream.

One upstream nginx (1 worker) serves a 60 KB HTML page and a 2 KB JSON
response. Three targets fetch both: "direct" (the upstream itself), "nginx"
(nginx proxy_pass with a keep-alive upstream pool) and "consentproxy" (one
worker). For each target x file: requests/s and CPU µs per request of the
serving process under wrk saturation, then p50/p99 latency at half that rate
(wrk paced by exponential think times, so requests arrive spread out).
Prints a table and ratios and writes everything as JSON.

    python load_tests/bench_proxy.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from harness import (
    DEFAULT_PROXY_CMD,
    FILES,
    FIXTURES,
    RESULTS,
    HalfRate,
    HarnessError,
    Measurement,
    Nginx,
    Pinning,
    Server,
    Settings,
    Target,
    environment,
    latency_at_rate,
    measure,
    measurements_table,
    require_tools,
    start_consentproxy,
    start_proxy_nginx,
    start_static_nginx,
    wait_ready,
)

TARGETS = ("direct", "nginx", "consentproxy")


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (got {text!r})")
        return list(dict.fromkeys(items))

    return parse


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
    parser.add_argument("--files", type=_choices(tuple(FILES)), default=list(FILES),
                        help=f"comma-separated, from {','.join(FILES)} (default all)")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default load_tests/results/bench-proxy-<UTC time>.json)")
    parser.add_argument("--nginx-location-extra", default="",
                        help="extra directives for the nginx proxy's location, for experiments, "
                             "e.g. 'proxy_buffers 8 64k;' (default none)")
    parser.add_argument("--proxy-cmd", default=DEFAULT_PROXY_CMD,
                        help="command for the consentproxy target; placeholders {python} {upstream} {listen} "
                             "{host} {port} {data_dir} (default: %(default)s)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not give the measured proxy a CPU of its own (wrk and the upstream share the "
                             "other); by default it does, so the latency tail measures the proxy, not the scheduler")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.latency_connections < 1:
        parser.error("--duration must be >= 1 and connection counts >= 1")
    if args.warmup is None:
        args.warmup = min(3.0, max(1.0, args.duration * 0.3))
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the try/finally blocks that stop the servers


def ratios(measurements: list[Measurement], same_rate: dict[str, HalfRate]) -> dict[str, dict[str, float]]:
    """consentproxy vs nginx, per file: CPU µs/req ratio, p99 difference at each one's half rate, and
    at the same offered load (half of consentproxy's saturation rate, for both)."""
    by_key = {(m.target, m.file): m for m in measurements}
    out: dict[str, dict[str, float]] = {}
    for file_key in FILES:
        ours, theirs = by_key.get(("consentproxy", file_key)), by_key.get(("nginx", file_key))
        if ours is None or theirs is None:
            continue
        entry: dict[str, float] = {}
        # A run so short or a machine so busy that nginx used no measurable CPU (or served nothing) has no
        # ratio: the key is left out and printed as n/a, with a note (see `notes`).
        if theirs.saturation.cpu_us_per_req > 0:
            entry["cpu_us_per_req_ratio"] = ours.saturation.cpu_us_per_req / theirs.saturation.cpu_us_per_req
        if theirs.saturation.requests_per_s > 0:
            entry["requests_per_s_ratio"] = ours.saturation.requests_per_s / theirs.saturation.requests_per_s
        if ours.half_rate.p99_ms is not None and theirs.half_rate.p99_ms is not None:
            entry["p99_half_rate_diff_ms"] = ours.half_rate.p99_ms - theirs.half_rate.p99_ms
        nginx_same = same_rate.get(file_key)
        if ours.half_rate.p99_ms is not None and nginx_same is not None and nginx_same.p99_ms is not None:
            entry["nginx_p99_at_same_rate_ms"] = nginx_same.p99_ms
            entry["p99_same_rate_diff_ms"] = ours.half_rate.p99_ms - nginx_same.p99_ms
        out[file_key] = entry
    return out


def format_ratios(derived: dict[str, dict[str, float]]) -> str:
    lines = []
    for file_key, entry in derived.items():
        p99 = entry.get("p99_half_rate_diff_ms")
        p99_text = f"{p99:+.2f} ms" if p99 is not None else "-"
        cpu, requests = entry.get("cpu_us_per_req_ratio"), entry.get("requests_per_s_ratio")
        cpu_text = f"{cpu:.2f}x" if cpu is not None else "n/a"
        requests_text = f"{requests:.2f}" if requests is not None else "n/a"
        same = entry.get("p99_same_rate_diff_ms")
        same_text = f"{same:+.2f} ms" if same is not None else "-"
        lines.append(f"  {file_key:<5} CPU us/req consentproxy / nginx = {cpu_text}   "
                     f"p99 at half rate consentproxy - nginx = {p99_text} (each at half its own rate), "
                     f"{same_text} (nginx at consentproxy's half rate)   "
                     f"(req/s ratio {requests_text})")
    return "\n".join(lines)


def notes(measurements: list[Measurement], servers: list[Server]) -> list[str]:
    """Things that make a row less trustworthy; printed and stored."""
    found = []
    for m in measurements:
        where = f"{m.target}/{m.file}"
        if m.status != 200:
            found.append(f"{where}: probe status {m.status}")
        if m.saturation.non_2xx_3xx:
            found.append(f"{where}: wrk saw {m.saturation.non_2xx_3xx} non-2xx/3xx responses")
        if any(m.saturation.socket_errors.values()):
            found.append(f"{where}: wrk socket errors {m.saturation.socket_errors}")
        if m.half_rate.non_2xx_3xx:
            found.append(f"{where}: paced wrk saw {m.half_rate.non_2xx_3xx} non-2xx/3xx responses")
        if any(m.half_rate.socket_errors.values()):
            found.append(f"{where}: paced wrk socket errors {m.half_rate.socket_errors}")
        if m.saturation.cpu_us_per_req <= 0:
            found.append(f"{where}: no CPU time measured in the saturation run (too short, or the machine too "
                         "busy): no ratio against it")
        if m.saturation.other_processes_cpu_pct > 10:
            found.append(f"{where}: other processes used {m.saturation.other_processes_cpu_pct:.0f}% of the "
                         "machine's CPU during the saturation run")
        if m.half_rate.achieved_rps < 0.9 * m.half_rate.target_rps:
            found.append(f"{where}: paced wrk reached only {m.half_rate.achieved_rps:,.0f} of "
                         f"{m.half_rate.target_rps:,.0f} req/s asked")
    for server in servers:
        if isinstance(server, Nginx):
            found.extend(f"{server.name} error.log: {line}" for line in server.error_log_lines()[:5])
    return found


def run(args: argparse.Namespace, tools: dict[str, str]) -> tuple[list[Measurement], dict[str, HalfRate], list[str]]:
    """Start the upstream, then each target in turn; measure every file; stop everything.

    consentproxy runs before nginx, so that nginx can also be measured at consentproxy's half rate.
    """
    pinning = Pinning() if args.no_pin else Pinning.split()
    settings = Settings(duration=args.duration, warmup=args.warmup, connections=args.connections,
                        latency_connections=args.latency_connections, tools=tools, pinning=pinning)
    measurements: list[Measurement] = []
    same_rate: dict[str, HalfRate] = {}
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:  # unwinds last-in first-out: servers stop, then the temp dir goes
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-")))
        www = tmp / "www"
        www.mkdir()
        for name in FILES.values():
            (www / name).write_bytes((FIXTURES / name).read_bytes())

        upstream, upstream_port = start_static_nginx(tools["nginx"], tmp / "upstream", www, cpus=pinning.load)
        stack.callback(upstream.stop)
        servers.append(upstream)
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        wait_ready(f"{upstream_url}/{FILES['json']}", upstream)

        order = sorted(args.targets, key=("direct", "consentproxy", "nginx").index)
        for target_name in order:
            with contextlib.ExitStack() as target_stack:
                if target_name == "direct":
                    target = Target("direct", upstream_url, upstream)
                elif target_name == "nginx":
                    proxy, port = start_proxy_nginx(tools["nginx"], tmp / "proxy-nginx", upstream_port,
                                                    location_extra=args.nginx_location_extra, cpus=pinning.target)
                    target_stack.callback(proxy.stop)
                    servers.append(proxy)
                    target = Target("nginx", f"http://127.0.0.1:{port}", proxy, upstream, upstream_url)
                else:
                    server, port = start_consentproxy(tmp / "consentproxy", upstream_url, args.proxy_cmd,
                                                      cpus=pinning.target)
                    target_stack.callback(server.stop)
                    target = Target("consentproxy", f"http://127.0.0.1:{port}", server, upstream, upstream_url)
                for file_key in args.files:
                    measurements.append(measure(target, file_key, FILES[file_key], settings))
                    ours = next((m for m in measurements if m.target == "consentproxy" and m.file == file_key), None)
                    if target_name == "nginx" and ours is not None:
                        same_rate[file_key] = latency_at_rate(target, measurements[-1].url, settings,
                                                              ours.saturation.requests_per_s / 2)
        measurements.sort(key=lambda m: (TARGETS.index(m.target), list(FILES).index(m.file)))
        found = notes(measurements, servers)

    return measurements, same_rate, found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = require_tools()
    except HarnessError as exc:
        print(f"bench_proxy: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path: Path = args.json or RESULTS / f"bench-proxy-{stamp}.json"
    env = environment(tools)
    print(f"bench_proxy: {len(args.targets)} target(s) x {len(args.files)} file(s), "
          f"{args.duration:.0f}s per run, wrk -c{args.connections}, paced wrk -c{args.latency_connections}; "
          f"nproc {env['nproc']}", file=sys.stderr)
    try:
        measurements, same_rate, found = run(args, tools)
    except HarnessError as exc:
        print(f"bench_proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_proxy: interrupted; every started process was stopped", file=sys.stderr)
        return 130
    derived = ratios(measurements, same_rate)

    print()
    print(measurements_table(measurements))
    if derived:
        print()
        print(format_ratios(derived))
    if found:
        print("\nnotes:")
        print("\n".join(f"  - {line}" for line in found))

    report = {
        "benchmark": "bench_proxy",
        "timestamp": stamp,
        "started_utc": started.isoformat(),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
            "latency_connections": args.latency_connections, "targets": args.targets, "files": args.files,
            "proxy_cmd": args.proxy_cmd, "nginx_location_extra": args.nginx_location_extra,
            "wrk_threads": 1, "nginx_workers": 1,
            "pinning": (Pinning() if args.no_pin else Pinning.split()).describe(),
        },
        "fixtures": {key: {"path": f"load_tests/fixtures/{name}", "bytes": (FIXTURES / name).stat().st_size}
                     for key, name in FILES.items()},
        "environment": env,
        "results": [dataclasses.asdict(m) for m in measurements],
        "nginx_at_consentproxy_half_rate": {key: dataclasses.asdict(value) for key, value in same_rate.items()},
        "ratios": derived,
        "notes": found,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
