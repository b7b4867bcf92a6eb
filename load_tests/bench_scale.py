"""Scale benchmark (issue 21): N generated sites, as a hosting platform runs them.

For each N (default 1, 1,000 and 10,000 sites; two host names, an upstream and a
controller name each, see scale_sites.py) it measures:

- start: from launching `consentproxy serve` until the first 200 answer for a site;
- memory: RSS and PSS (/proc/PID/smaps_rollup) of the worker process(es);
- per-request CPU: the worker's CPU time (utime + stime) over a wrk run that spreads
  its requests over every site's host names, divided by the requests answered;
- reloads under steady load: wrk sends a paced load (its requests spread over every
  host name) while the benchmark rewrites the file `--reloads` times, each time
  changing one site's controller, and sends SIGHUP, waiting for every worker to log
  the reload; reported: each reload's time (SIGHUP until "configuration reloaded"),
  wrk's slowest request and its errors and non-2xx answers, RSS after the first and
  after the last reload;
- routing: `SiteRouter.route` in this process at 1 and at N sites (a new Host each
  time, the router's cache missed, and a repeated one).

With `--pss-workers W` (default 2) the largest N is started once more with W workers to
read each worker's PSS (what a worker costs when pages are shared).

The upstream is Debian's nginx serving load_tests/fixtures; wrk is the load generator.
Every process runs in its own session, dies with the benchmark (PR_SET_PDEATHSIG) and
is stopped at the end; every wait is bounded, so the run stops by itself.

    python load_tests/bench_scale.py --json load_tests/results/scale.json
    python load_tests/bench_scale.py --sites 1,200 --reloads 3 --duration 2   # a smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    FIXTURES,
    REPO,
    HarnessError,
    Server,
    cpu_seconds,
    descendants,
    environment,
    free_port,
    require_tools,
    start_static_nginx,
    wait_ready,
)
from scale_sites import config_text, host_of

PATH = "/data-2k.json"
#: wrk: each request to another of the site's host names (from the file HOSTS names); with a think time
#: (paced, for the steady load) or without (saturation, for CPU per request); prints what --latency hides
_LUA = """
local hosts = {}
for line in io.lines(os.getenv("BENCH_HOSTS")) do hosts[#hosts + 1] = line end
local mean_ms = tonumber(os.getenv("BENCH_MEAN_THINK_MS") or "0")
local counter = 0
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
function request()
  counter = counter + 1
  return wrk.format("GET", os.getenv("BENCH_PATH"), { Host = hosts[(counter % #hosts) + 1] })
end
if mean_ms > 0 then
  function delay() return -math.log(1 - math.random()) * mean_ms end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d max_us=%d p99_us=%d p50_us=%d connect=%d read=%d "
    .. "write=%d status=%d timeout=%d\\n", summary.requests, summary.duration, latency.max,
    latency:percentile(99), latency:percentile(50), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --------------------------------------------------------------------------- processes and memory

def memory_kb(pid: int) -> dict[str, int]:
    """RSS and PSS of one process, in KiB (PSS: shared pages divided among the processes sharing them)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            found[name.lower()] = int(rest.split()[0])
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(server: Server, workers: int) -> list[int]:
    """The serving processes: the server itself with one worker, else the workers it forked."""
    if workers == 1:
        return [server.pid]
    return [pid for pid in descendants(server.pid) if "resource_tracker" not in _cmdline(pid)]


def get(port: int, host: str, path: str = PATH, timeout: float = 5.0) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_answer(server: Server, port: int, host: str, timeout: float) -> float:
    """Seconds until `host` gets a 200 (HarnessError if the server dies or time runs out)."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise HarnessError(f"consentproxy exited:\n{server.log_tail(40)}")
        try:
            status = get(port, host, timeout=2)
            if status == 200:
                return time.monotonic() - started
            last = f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise HarnessError(f"no 200 for {host} within {timeout:.0f}s ({last})\n{server.log_tail(40)}")


class Proxy:
    """consentproxy serving a generated file of N sites, with its log at info level (the reload lines)."""

    def __init__(self, workdir: Path, count: int, upstream: str, workers: int) -> None:
        self.workdir = workdir
        self.count = count
        self.upstream = upstream
        self.workers = workers
        self.port = free_port()
        self.config = workdir / "consentproxy.toml"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.write()
        argv = [sys.executable, "-m", "consentproxy", "serve", "-c", str(self.config), "--log-level", "info"]
        self.server = Server(f"consentproxy-{count}", argv, workdir / "consentproxy.log", cwd=REPO)

    def write(self, changed: dict[int, str] | None = None) -> None:
        text = config_text(self.count, self.upstream, listen=f"127.0.0.1:{self.port}",
                           data_dir=str(self.workdir / "data"), workers=self.workers, changed=changed)
        temporary = self.config.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(self.config)  # whole or not at all, as a platform writes it

    def start(self, timeout: float) -> float:
        """Start; seconds until the first 200 answer."""
        started = time.monotonic()
        self.server.start()
        wait_answer(self.server, self.port, host_of(self.count - 1), timeout)
        return time.monotonic() - started

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def reload(self, changed: dict[int, str], timeout: float) -> float:
        """Rewrite the file, SIGHUP, and wait until the reload is in force; seconds taken.

        One worker logs the new configuration once it has swapped it in; a supervisor once the workers
        forked from it serve (the old ones are then draining)."""
        marker = "configuration reloaded from" if self.workers == 1 else "replaced by"
        before = self.log().count(marker)
        self.write(changed)
        started = time.monotonic()
        os.kill(self.server.pid, signal.SIGHUP)
        deadline = started + timeout
        while self.log().count(marker) < before + 1:
            if "reload refused" in self.log() or not self.server.alive():
                raise HarnessError(f"reload failed:\n{self.server.log_tail(40)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"reload not done within {timeout:.0f}s:\n{self.server.log_tail(40)}")
            time.sleep(0.02)
        return time.monotonic() - started

    def memory(self) -> list[dict[str, int]]:
        return [memory_kb(pid) for pid in worker_pids(self.server, self.workers)]

    def settled(self, timeout: float) -> None:
        """Until only the serving workers are left (the ones a reload retired have drained and exited)."""
        deadline = time.monotonic() + timeout
        while len(worker_pids(self.server, self.workers)) != self.workers:
            if time.monotonic() > deadline:
                raise HarnessError(f"retired workers still running after {timeout:.0f}s")
            time.sleep(0.1)

    def cpu(self) -> float:
        """CPU seconds of the serving processes, and of the supervisor with several workers (it builds the
        configuration they are forked from)."""
        pids = worker_pids(self.server, self.workers)
        return cpu_seconds(pids if self.workers == 1 else [self.server.pid, *pids])


# --------------------------------------------------------------------------- wrk

class Wrk:
    def __init__(self, wrk: str, workdir: Path, count: int) -> None:
        """Requests go to the host names of the first `count` sites, in turn."""
        self.wrk = wrk
        self.script = workdir / "hosts.lua"
        self.script.write_text(_LUA)
        self.hosts = workdir / "hosts.txt"
        names = [name for index in range(count) for name in (host_of(index), "www." + host_of(index))]
        self.hosts.write_text("\n".join(names) + "\n")

    def start(self, port: int, connections: int, duration: float, think_ms: float = 0.0) -> subprocess.Popen[str]:
        env = {**os.environ, "BENCH_HOSTS": str(self.hosts), "BENCH_PATH": PATH,
               "BENCH_MEAN_THINK_MS": f"{think_ms:.3f}"}
        argv = [self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(self.script),
                f"http://127.0.0.1:{port}{PATH}"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)

    @staticmethod
    def finish(process: subprocess.Popen[str], timeout: float) -> dict[str, int]:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate(timeout=5)
            raise HarnessError("wrk did not finish") from exc
        match = re.search(r"^BENCH (.*)$", out, re.MULTILINE)
        if process.returncode != 0 or match is None:
            raise HarnessError(f"wrk failed ({process.returncode}):\n{out}")
        found = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        found["non_2xx_3xx"] = int(non2xx.group(1)) if non2xx else 0
        return found


# --------------------------------------------------------------------------- the measurements

def routing(count: int, rounds: int = 20000) -> dict[str, float]:
    """ns per `route` at `count` sites: a cached Host, and fresh ones (the cache missed every time)."""
    from consentproxy.config.model import SiteConfig
    from consentproxy.proxy.sites import Site, SiteRouter

    sites = [Site.build(SiteConfig(name=f"s{index}", hosts=(host_of(index), "www." + host_of(index)),
                                   upstream="http://127.0.0.1:9")) for index in range(count)]
    router = SiteRouter(sites)
    hosts = [(("www." if index % 2 else "") + host_of(index % count)).encode() for index in range(rounds)]
    target = host_of(count - 1).encode()
    assert router.route(target) is sites[-1]

    def fresh() -> None:
        router._cache.clear()  # every lookup a miss: normalising and looking up, as for a new Host
        for host in hosts:
            router._cache.clear()
            router.route(host)

    def cached() -> None:
        for _ in range(rounds):
            router.route(target)

    miss = min(timeit.repeat(fresh, number=1, repeat=5)) / rounds
    hit = min(timeit.repeat(cached, number=1, repeat=5)) / rounds
    return {"sites": count, "cached_ns": round(hit * 1e9), "uncached_ns": round(miss * 1e9)}


def measure(count: int, args: argparse.Namespace, wrk: str, upstream: str, base: Path) -> dict[str, object]:
    workdir = base / f"sites-{count}"
    workdir.mkdir()
    proxy = Proxy(workdir, count, upstream, args.workers)
    load = Wrk(wrk, workdir, min(count, args.active_sites))
    row: dict[str, object] = {"sites": count, "workers": args.workers}
    try:
        row["start_s"] = round(proxy.start(args.start_timeout), 2)
        row["start_cpu_s"] = round(proxy.cpu(), 2)  # the wall time above counts the machine's other work too
        time.sleep(1)  # the inventory and revocations are read just after start
        row["memory_after_start_kb"] = proxy.memory()

        # The first request of a site makes what it makes lazily (its latency histogram child, its caches):
        # one pass over the active sites first, reported apart, then the measured run.
        cpu_before = proxy.cpu()
        run = load.finish(load.start(proxy.port, args.connections, args.warmup), args.warmup + 60)
        cpu = proxy.cpu() - cpu_before
        row["first_requests"] = {"requests": run["requests"],
                                 "cpu_us_per_req": round(cpu * 1e6 / max(1, run["requests"]), 1)}
        cpu_before = proxy.cpu()
        run = load.finish(load.start(proxy.port, args.connections, args.duration), args.duration + 60)
        cpu = proxy.cpu() - cpu_before
        requests = max(1, run["requests"])
        row["saturation"] = {"active_sites": min(count, args.active_sites), "requests": run["requests"],
                             "requests_per_s": round(run["requests"] * 1e6 / max(1, run["duration_us"]), 1),
                             "cpu_us_per_req": round(cpu * 1e6 / requests, 1),
                             "errors": run["connect"] + run["read"] + run["write"] + run["timeout"],
                             "non_2xx_3xx": run["non_2xx_3xx"]}

        think_ms = args.connections / args.rate * 1000
        quiet = load.finish(load.start(proxy.port, args.connections, args.duration, think_ms), args.duration + 60)
        row["steady_without_reloads"] = {"requests": quiet["requests"],
                                         "slowest_request_ms": round(quiet["max_us"] / 1000, 1),
                                         "p99_ms": round(quiet["p99_us"] / 1000, 1)}

        reload_s: list[float] = []
        memory: list[list[dict[str, int]]] = []
        changed: dict[int, str] = {}  # each reload changes one more site: one table differs from the last file
        steady = load.start(proxy.port, args.connections, 3600, think_ms)  # stopped once the reloads are done
        try:
            time.sleep(2)
            for number in range(1, args.reloads + 1):
                changed[(number * 7919) % count] = f"Changed {number} B.V."
                reload_s.append(round(proxy.reload(changed, args.reload_timeout), 3))
                memory.append(proxy.memory())
            time.sleep(1)
        finally:
            steady.send_signal(signal.SIGINT)  # wrk reports what it measured when interrupted
            run = load.finish(steady, 60)
        row["reloads"] = {
            "count": len(reload_s), "seconds": reload_s, "max_s": max(reload_s, default=0.0),
            "requests_during": run["requests"], "slowest_request_ms": round(run["max_us"] / 1000, 1),
            "p99_ms": round(run["p99_us"] / 1000, 1),
            "errors": run["connect"] + run["read"] + run["write"] + run["timeout"],
            "non_2xx_3xx": run["non_2xx_3xx"],
            "rss_kb_after_first": [item["rss"] for item in memory[0]] if memory else None,
            "rss_kb_after_last": [item["rss"] for item in memory[-1]] if memory else None,
        }
        reused = re.findall(r"(\d+) unchanged and reused", proxy.log())
        row["reloads"]["sites_reused_last"] = int(reused[-1]) if reused else None  # type: ignore[index]
    finally:
        proxy.server.stop()
    return row


def cpu_alternating(counts: Sequence[int], args: argparse.Namespace, wrk: str, upstream: str,
                    base: Path) -> dict[str, object]:
    """CPU per request of the smallest and the largest configuration, both running, measured in turns
    (A B A B …): on a shared machine, load that comes and goes then weighs on both alike. The median of
    `--cpu-rounds` runs each, and its ratio. Both get the same traffic (`--cpu-active-sites`, default the
    smallest configuration's sites): what is measured is what the idle configured sites cost a request."""
    chosen = sorted({min(counts), max(counts)})
    proxies, loads = [], []
    try:
        for count in chosen:
            workdir = base / f"cpu-{count}"
            workdir.mkdir()
            proxy = Proxy(workdir, count, upstream, 1)
            proxies.append(proxy)
            loads.append(Wrk(wrk, workdir, min(count, args.cpu_active_sites or min(counts))))
            proxy.start(args.start_timeout)
        for proxy, load in zip(proxies, loads, strict=True):
            load.finish(load.start(proxy.port, args.connections, args.warmup), args.warmup + 60)
        runs: dict[int, list[float]] = {count: [] for count in chosen}
        for _ in range(args.cpu_rounds):
            for count, proxy, load in zip(chosen, proxies, loads, strict=True):
                before = proxy.cpu()
                run = load.finish(load.start(proxy.port, args.connections, args.duration), args.duration + 60)
                runs[count].append(round((proxy.cpu() - before) * 1e6 / max(1, run["requests"]), 1))
    finally:
        for proxy in proxies:
            proxy.server.stop()
    medians = {count: sorted(values)[len(values) // 2] for count, values in runs.items()}
    return {"runs_us": {str(count): values for count, values in runs.items()},
            "median_us": {str(count): value for count, value in medians.items()},
            "ratio": round(medians[chosen[-1]] / medians[chosen[0]], 3) if medians[chosen[0]] else None}


def measure_pss(count: int, workers: int, upstream: str, base: Path, timeout: float,
                reloads: int = 3) -> dict[str, object]:
    """Memory of the supervisor and each worker after start, and again after `reloads` reloads (each changing
    one site): what N workers cost when they share the configuration's pages."""
    workdir = base / f"pss-{count}-{workers}"
    workdir.mkdir()
    proxy = Proxy(workdir, count, upstream, workers)

    def serve_a_little() -> None:  # every worker serves before it is read, as in production
        for index in range(0, count, max(1, count // 50)):
            get(proxy.port, host_of(index))
        time.sleep(1)

    try:
        start = proxy.start(timeout)
        proxy.settled(timeout)
        serve_a_little()
        result: dict[str, object] = {"sites": count, "workers": workers, "start_s": round(start, 2),
                                     "memory_kb": proxy.memory(), "supervisor_kb": memory_kb(proxy.server.pid)}
        changed: dict[int, str] = {}
        for number in range(1, reloads + 1):
            changed[(number * 7919) % count] = f"Changed {number} B.V."
            proxy.reload(changed, timeout)
        if reloads:
            proxy.settled(timeout)
            serve_a_little()
            result["after_reloads"] = {"reloads": reloads, "memory_kb": proxy.memory(),
                                       "supervisor_kb": memory_kb(proxy.server.pid)}
        return result
    finally:
        proxy.server.stop()


def pss_line(found: dict[str, object]) -> str:
    """RSS / PSS of the supervisor and each worker, and the PSS they add up to (what the machine pays)."""
    supervisor: dict[str, int] = found["supervisor_kb"]  # type: ignore[assignment]
    workers: list[dict[str, int]] = found["memory_kb"]  # type: ignore[assignment]
    total = supervisor["pss"] + sum(item["pss"] for item in workers)
    return (f"supervisor RSS {supervisor['rss'] / 1024:.0f} MB / PSS {supervisor['pss'] / 1024:.0f} MB; workers "
            + ", ".join(f"RSS {item['rss'] / 1024:.0f} MB / PSS {item['pss'] / 1024:.0f} MB" for item in workers)
            + f"; PSS in all {total / 1024:.0f} MB")


def table(rows: Sequence[dict[str, object]], routes: Sequence[dict[str, float]]) -> str:
    lines = ["| sites | start until first answer (CPU) | RSS / PSS of the worker | CPU per request | reload "
             "(longest) | slowest request: during reloads / without | failed requests | RSS after first → last "
             "reload |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        mem = row["memory_after_start_kb"][0]  # type: ignore[index]
        sat = row["saturation"]
        rel = row["reloads"]
        first, last = rel["rss_kb_after_first"], rel["rss_kb_after_last"]  # type: ignore[index]
        lines.append(
            f"| {row['sites']:,} | {row['start_s']} s ({row['start_cpu_s']} s) | {mem['rss'] / 1024:.0f} / "
            f"{mem['pss'] / 1024:.0f} MB | {sat['cpu_us_per_req']} µs | {rel['max_s']} s | "  # type: ignore[index]
            f"{rel['slowest_request_ms']} / {row['steady_without_reloads']['slowest_request_ms']} ms | "  # type: ignore[index]
            f"{rel['errors'] + rel['non_2xx_3xx']} of {rel['requests_during']} | "  # type: ignore[index]
            f"{first[0] / 1024:.0f} → {last[0] / 1024:.0f} MB |")  # type: ignore[index]
    lines += ["", "| sites | route(), cached Host | route(), new Host |", "|---|---|---|"]
    lines += [f"| {r['sites']:,} | {r['cached_ns']} ns | {r['uncached_ns']} ns |" for r in routes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="1,1000,10000", help="comma-separated site counts")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pss-workers", type=int, default=2, help="0: no run with several workers")
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--duration", type=float, default=8, help="seconds of the saturation run (CPU/request)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--active-sites", type=int, default=1000,
                        help="the sites the load goes to (their two host names in turn); the others are idle")
    parser.add_argument("--warmup", type=float, default=4, help="seconds of the first pass over the active sites")
    parser.add_argument("--rate", type=float, default=200, help="requests/s of the steady load during reloads")
    parser.add_argument("--reload-timeout", type=float, default=60, help="seconds a reload may take at most")
    parser.add_argument("--start-timeout", type=float, default=120)
    parser.add_argument("--cpu-active-sites", type=int, default=0,
                        help="the sites the turns' load goes to (default: as many as the smallest configuration)")
    parser.add_argument("--cpu-rounds", type=int, default=5,
                        help="turns of the smallest and largest configuration for CPU per request (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    counts = [int(item) for item in args.sites.split(",") if item.strip()]
    tools = require_tools()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as temporary:
        base = Path(temporary)
        nginx, port = start_static_nginx(tools["nginx"], base / "nginx", FIXTURES)
        try:
            wait_ready(f"http://127.0.0.1:{port}{PATH}", nginx)
            upstream = f"http://127.0.0.1:{port}"
            rows = []
            for count in counts:
                print(f"-- {count} site(s)", file=sys.stderr, flush=True)
                rows.append(measure(count, args, tools["wrk"], upstream, base))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            cpu = None
            if args.cpu_rounds > 0 and len(set(counts)) > 1:
                print(f"-- CPU per request, {min(counts)} and {max(counts)} site(s) in turns", file=sys.stderr,
                      flush=True)
                cpu = cpu_alternating(counts, args, tools["wrk"], upstream, base)
                print(json.dumps(cpu), file=sys.stderr, flush=True)
            pss = None
            if args.pss_workers > 1:
                print(f"-- {max(counts)} site(s), {args.pss_workers} workers", file=sys.stderr, flush=True)
                pss = measure_pss(max(counts), args.pss_workers, upstream, base, args.start_timeout)
        finally:
            nginx.stop()
    routes = [routing(count) for count in sorted({1, *counts})]
    report = {"results": rows, "cpu_alternating": cpu, "pss": pss, "routing": routes, "environment": environment(tools),
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(table(rows, routes))
    if cpu is not None:
        medians = cpu["median_us"]
        print("\nCPU per request, measured in turns (median of "
              + ", ".join(f"{count} sites: {value} µs" for count, value in medians.items())  # type: ignore[attr-defined]
              + f"): ratio {cpu['ratio']}; runs {cpu['runs_us']}")
    if pss is not None:
        print(f"\n{pss['workers']} workers, {pss['sites']:,} sites: {pss_line(pss)}")
        if "after_reloads" in pss:
            print(f"after {pss['after_reloads']['reloads']} reloads: "  # type: ignore[index]
                  f"{pss_line(pss['after_reloads'])}")  # type: ignore[arg-type]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
