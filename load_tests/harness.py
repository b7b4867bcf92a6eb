"""Reusable pieces for the load-test benchmarks.

- start Debian's nginx with a generated config (static upstream, or a proxy
  with extra snippets such as `sub_filter` rules) and consentproxy;
- wait until a target answers 200;
- drive a target with wrk (saturation, and paced for latency at a fixed rate) while
  reading the serving process's CPU time from /proc;
- print results as an aligned table.

Linux only (/proc). Every process started here runs in its own session, is
asked by the kernel to stop if the benchmark dies, and is stopped by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LOAD_TESTS = Path(__file__).resolve().parent
REPO = LOAD_TESTS.parent
FIXTURES = LOAD_TESTS / "fixtures"
RESULTS = LOAD_TESTS / "results"

#: benchmark file name -> fixture served by the upstream nginx
FILES: dict[str, str] = {"html": "page-60k.html", "json": "data-2k.json"}

CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUIRED_TOOLS = ("nginx", "wrk")

#: `--proxy-cmd` template; placeholders: {python} {upstream} {listen} {host} {port} {data_dir}
DEFAULT_PROXY_CMD = (
    "{python} -m consentproxy serve --upstream {upstream} --listen {listen} "
    "--data-dir {data_dir} --log-level warning"
)


class HarnessError(RuntimeError):
    """The benchmark cannot go on: a missing tool, a server that does not start, odd tool output."""


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """Path of an executable, also looking in the sbin directories (nginx lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_tools(names: Sequence[str] = REQUIRED_TOOLS) -> dict[str, str]:
    """name -> path; HarnessError naming every missing tool."""
    paths = {name: find_tool(name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise HarnessError(
            f"not installed: {', '.join(missing)}. `make system-deps` installs them "
            "(Debian packages nginx-light, wrk)."
        )
    return {name: path for name, path in paths.items() if path is not None}


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _dpkg_version(package: str) -> str:
    if not shutil.which("dpkg-query"):
        return "unknown"
    return _first_line(["dpkg-query", "-W", "-f=${Version}", package])


def environment(tools: dict[str, str]) -> dict[str, object]:
    """Machine facts and tool versions, for the JSON report."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {"python": sys.version.split()[0], "python_executable": sys.executable}
    if "nginx" in tools:
        versions["nginx"] = _first_line([tools["nginx"], "-v"])
    if "wrk" in tools:
        versions["wrk"] = _first_line([tools["wrk"], "-v"])
    try:
        from importlib.metadata import PackageNotFoundError, version

        for package in ("consentproxy", "uvicorn", "uvloop", "httptools", "aiohttp"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = "not installed"
    except ImportError:  # pragma: no cover
        pass
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "versions": versions,
        "git": _git_state(),
    }


def _git_state() -> dict[str, object]:
    """Read-only: the commit and whether the tree had local changes."""
    if not shutil.which("git"):
        return {}
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    try:
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        status = ""
    return {"commit": head, "modified_files": status.splitlines()}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child if the benchmark dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the measured server gets, and which the load generator and the upstream share.

    On a small shared machine, a server that competes with wrk and its upstream for the same
    cores is descheduled at random moments, and its latency tail measures the scheduler, not
    the server. Giving the measured process a core of its own makes runs comparable.
    """

    target: frozenset[int] | None = None
    load: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls()
        return cls(target=frozenset(cpus[1:2]), load=frozenset(cpus[:1] + cpus[2:]))

    def describe(self) -> dict[str, list[int] | None]:
        return {"target_cpus": sorted(self.target) if self.target else None,
                "load_and_upstream_cpus": sorted(self.load) if self.load else None}


def _preexec(cpus: frozenset[int] | None) -> Callable[[], None]:
    def run() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return run


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat fields from field 3 (state) on; the comm field may hold spaces."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def system_cpu_ticks() -> list[int]:
    """The machine-wide `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat", encoding="ascii") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


def system_cpu_share(before: list[int], after: list[int]) -> dict[str, float]:
    """Percentages of machine CPU time between two `system_cpu_ticks()` readings."""
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: round(100 * value / total, 1) for name, value in zip(names, delta, strict=False)}


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the given processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError as exc:
            raise HarnessError(f"process {pid} is gone; cannot read its CPU time") from exc
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / CLK_TCK


class Server:
    """A long-running process started by the benchmark, in its own session.

    `measured_pids()` names the processes whose CPU time counts as this server's.
    """

    stop_signal = signal.SIGTERM

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None,
                 cpus: frozenset[int] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.cpus = cpus
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise HarnessError(f"{self.name} is not started")
        return self.popen.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                start_new_session=True, preexec_fn=_preexec(self.cpus),
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def measured_pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Ask politely, then SIGKILL the process group this server leads. Idempotent."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: no exit after {timeout:.0f}s, killing", file=sys.stderr)
        # leftovers of the group (nginx workers, proxy workers), by our own child's group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            print(f"{self.name}: pid {self.popen.pid} did not exit after SIGKILL", file=sys.stderr)


class Nginx(Server):
    """Debian's nginx, one worker, config generated in `workdir` (see `nginx_conf`)."""

    def __init__(self, name: str, nginx: str, workdir: Path, conf: str, cpus: frozenset[int] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.conf_path = workdir / "nginx.conf"
        self.conf_path.write_text(conf)
        argv = [nginx, "-p", f"{workdir}/", "-e", str(workdir / "error.log"), "-c", str(self.conf_path)]
        super().__init__(name, argv, workdir / "stderr.log", cwd=workdir, cpus=cpus)

    def check_config(self) -> None:
        proc = subprocess.run([*self.argv, "-t", "-q"], capture_output=True, text=True, timeout=10,
                              check=False)
        if proc.returncode != 0:
            raise HarnessError(f"{self.name}: nginx rejects {self.conf_path}:\n{proc.stderr.strip()}")

    def start(self) -> None:
        self.check_config()
        super().start()

    def worker_pid(self, timeout: float = 10.0) -> int:
        """The one worker: the master's child that is not the cache manager/loader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in children(self.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"worker process" in cmdline:
                    return pid
            if not self.alive():
                break
            time.sleep(0.05)
        raise HarnessError(f"{self.name}: no nginx worker process found\n{self.log_tail()}")

    def measured_pids(self) -> list[int]:
        return [self.worker_pid()]

    def error_log_lines(self) -> list[str]:
        """Lines of nginx's error log (warn and above), e.g. 'buffered to a temporary file'."""
        path = self.workdir / "error.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []


def nginx_conf(workdir: Path, port: int, server_body: str, http_extra: str = "") -> str:
    """A self-contained nginx.conf: 1 worker, foreground, every path inside `workdir`, no access log,
    no gzip, keep-alive. `http_extra` goes in the http block (e.g. an upstream block), `server_body`
    in the one server on 127.0.0.1:`port`."""
    user = ""
    if os.geteuid() == 0:  # as root nginx would switch workers to `nobody`, who cannot read our temp dir
        import grp
        import pwd

        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    d = workdir
    return f"""# generated by load_tests/harness.py
daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    types {{
        text/html html;
        application/json json;
        text/css css;
        application/javascript js;
    }}
    default_type application/octet-stream;
    gzip off;
    sendfile on;
    tcp_nodelay on;
    server_tokens off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
{_indent(http_extra, 4)}
    server {{
        listen 127.0.0.1:{port};
{_indent(server_body, 8)}
    }}
}}
"""


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else line for line in text.strip("\n").splitlines())


STATUS_PATH = "/__nginx_status"


def static_server_body(root: Path) -> str:
    """Serve the files under `root` as they are, plus stub_status at STATUS_PATH."""
    return f"root {root};\nlocation / {{\n}}\nlocation = {STATUS_PATH} {{\n    stub_status;\n}}\n"


def nginx_accepted_connections(base_url: str) -> int:
    """Connections nginx has accepted so far (stub_status), counting the one this call opens."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
    try:
        conn.request("GET", STATUS_PATH)
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = re.search(r"server accepts handled requests\s+(\d+)", text)
    if not match:
        raise HarnessError(f"cannot parse nginx stub_status from {base_url}{STATUS_PATH}: {text!r}")
    return int(match.group(1))


def proxy_upstream_block(upstream_port: int, name: str = "backend") -> str:
    """An upstream block with a keep-alive pool of 64 idle connections."""
    return (f"upstream {name} {{\n    server 127.0.0.1:{upstream_port};\n    keepalive 64;\n"
            f"    keepalive_requests 1000000;\n}}\n")


def proxy_server_body(location_extra: str = "", name: str = "backend") -> str:
    """proxy_pass to the upstream block over HTTP/1.1 keep-alive, proxy_buffering on (the default).
    `location_extra` is added to the location, e.g. `proxy_set_header Accept-Encoding "";` and
    `sub_filter` rules."""
    return (f"location / {{\n    proxy_pass http://{name};\n    proxy_http_version 1.1;\n"
            f"    proxy_set_header Connection \"\";\n{_indent(location_extra, 4)}\n}}\n")


def start_static_nginx(nginx: str, workdir: Path, root: Path, port: int | None = None,
                       cpus: frozenset[int] | None = None, server_extra: str = "") -> tuple[Nginx, int]:
    """Start nginx serving `root` (plus `server_extra` directives, e.g. more locations); returns the
    server and its port (not yet known to answer)."""
    port = port or free_port()
    body = static_server_body(root) + server_extra
    server = Nginx("upstream-nginx", nginx, workdir, nginx_conf(workdir, port, body), cpus)
    server.start()
    return server, port


def start_proxy_nginx(nginx: str, workdir: Path, upstream_port: int, location_extra: str = "",
                      http_extra: str = "", port: int | None = None,
                      cpus: frozenset[int] | None = None) -> tuple[Nginx, int]:
    """Start nginx proxying to 127.0.0.1:`upstream_port`, with optional extra config snippets."""
    port = port or free_port()
    conf = nginx_conf(workdir, port, proxy_server_body(location_extra),
                      proxy_upstream_block(upstream_port) + http_extra)
    server = Nginx("proxy-nginx", nginx, workdir, conf, cpus)
    server.start()
    return server, port


def start_consentproxy(workdir: Path, upstream_url: str, template: str = DEFAULT_PROXY_CMD,
                       port: int | None = None, cpus: frozenset[int] | None = None) -> tuple[Server, int]:
    """Start consentproxy (or the `template` command) in front of `upstream_url`.

    Its CPU is that of the started process and all its descendants.
    """
    port = port or free_port()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {"python": sys.executable, "upstream": upstream_url, "listen": f"127.0.0.1:{port}",
              "host": "127.0.0.1", "port": str(port), "data_dir": str(data_dir)}
    try:
        argv = [part.format(**values) for part in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as exc:
        raise HarnessError(f"bad --proxy-cmd {template!r}: {exc!r}; placeholders: {sorted(values)}") from exc
    server = Server("consentproxy", argv, workdir / "consentproxy.log", cwd=REPO, cpus=cpus)
    server.start()
    return server, port


# --------------------------------------------------------------------------- HTTP


@dataclass
class Probe:
    status: int
    body_bytes: int
    content_type: str
    content_encoding: str


def probe(url: str, timeout: float = 5.0) -> Probe:
    """One GET; raises OSError/HTTPException if nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        body = resp.read()
        return Probe(resp.status, len(body), resp.getheader("Content-Type", ""),
                     resp.getheader("Content-Encoding", ""))
    finally:
        conn.close()


def wait_ready(url: str, server: Server, timeout: float = 30.0) -> Probe:
    """Poll `url` until it answers 200; HarnessError if the server exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise HarnessError(f"{server.name} exited before answering {url}:\n{server.log_tail()}")
        try:
            result = probe(url)
            if result.status == 200:
                return result
            last = f"status {result.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise HarnessError(f"{server.name}: {url} did not answer 200 within {timeout:.0f}s ({last})\n"
                       f"{server.log_tail()}")


# --------------------------------------------------------------------------- load generators

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise HarnessError(f"cannot parse wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    socket_errors: dict[str, int]
    non_2xx_3xx: int


def parse_wrk(output: str) -> WrkResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not total or not rate:
        raise HarnessError(f"cannot parse wrk output:\n{output}")
    latency = {f"p{m.group(1)}": round(_wrk_ms(m.group(2)), 4)
               for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(g) for g in errors.groups()), strict=True)) if errors else {}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_wrk_ms(total.group(2) + total.group(3)) / 1000,
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        socket_errors=socket_errors,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(wrk: str, url: str, connections: int, duration: float, threads: int = 1,
            cpus: frozenset[int] | None = None, script: Path | None = None,
            env: dict[str, str] | None = None, headers: Sequence[str] = ()) -> WrkResult:
    """`wrk -t<threads> -c<connections> -d<duration>s --latency [-H header] [-s script] URL`, bounded in time."""
    seconds = max(1, round(duration))
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for header in headers:
        argv += ["-H", header]
    argv += ["-s", str(script), url] if script else [url]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False,
                              env={**os.environ, **(env or {})}, preexec_fn=_preexec(cpus))
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"wrk did not finish: {shlex.join(argv)}") from exc
    if proc.returncode != 0:
        raise HarnessError(f"wrk failed ({proc.returncode}): {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    return parse_wrk(proc.stdout)


# Each connection waits an exponentially distributed think time before each request, so
# arrivals are spread out (close to Poisson) instead of coming in lockstep bursts; wrk's
# --latency then reports latency at that rate with microsecond resolution.
_PACED_LUA = """
local mean_ms = tonumber(os.getenv("BENCH_MEAN_THINK_MS"))
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
function delay()
  return -math.log(1 - math.random()) * mean_ms
end
"""


def run_wrk_paced(wrk: str, url: str, connections: int, duration: float, mean_think_ms: float,
                  cpus: frozenset[int] | None = None) -> WrkResult:
    """wrk where each connection thinks `mean_think_ms` on average (exponentially) before each request."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_PACED_LUA)
    try:
        return run_wrk(wrk, url, connections, duration, cpus=cpus, script=Path(script.name),
                       env={"BENCH_MEAN_THINK_MS": f"{max(0.01, mean_think_ms):.4f}"})
    finally:
        os.unlink(script.name)


def think_time_for_rate(wrk: str, url: str, connections: int, rate: float, probe_s: float = 2.0,
                        cpus: frozenset[int] | None = None) -> float:
    """The mean think time that gives about `rate` req/s in total.

    Each connection sends one request per think time plus response time. A short probe run at
    think = connections / rate measures the response time at nearly that load; it is then
    taken off the think time.
    """
    think_ms = connections / rate * 1000
    probe = run_wrk_paced(wrk, url, connections, probe_s, think_ms, cpus)
    cycle_ms = connections / probe.requests_per_s * 1000 if probe.requests_per_s else think_ms
    response_ms = max(0.0, cycle_ms - think_ms)
    return max(0.01, think_ms - response_ms)


# --------------------------------------------------------------------------- measuring


@dataclass
class Target:
    """Something to benchmark: a base URL and the processes whose CPU counts."""

    name: str
    base_url: str
    server: Server
    upstream: Server | None = None  # also read, for reference, when the target is a proxy
    upstream_url: str | None = None  # an nginx with stub_status: count the connections the proxy opens


@dataclass
class Settings:
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    latency_connections: int = 16
    tools: dict[str, str] = field(default_factory=dict)
    pinning: Pinning = field(default_factory=Pinning)
    wrk_headers: tuple[str, ...] = ()  # request headers for the saturation runs (e.g. a Cookie header)


@dataclass
class Saturation:
    """wrk at full speed, and CPU per request of the target's process(es)."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    cpu_s: float
    cpu_us_per_req: float
    upstream_cpu_us_per_req: float | None
    upstream_connections_opened: int | None
    load_generator_cpu_s: float
    machine_cpu_pct: dict[str, float]
    other_processes_cpu_pct: float  # of the whole machine: CPU used by anything but target, upstream, wrk


@dataclass
class HalfRate:
    """Paced wrk at half the saturation rate: latency percentiles and the rate actually achieved."""

    target_rps: float
    connections: int
    achieved_rps: float
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    p50_ms: float | None
    p99_ms: float | None
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    cpu_us_per_req: float | None


@dataclass
class Measurement:
    target: str
    file: str
    url: str
    status: int
    body_bytes: int
    content_type: str
    saturation: Saturation
    half_rate: HalfRate


def _children_cpu_seconds() -> float:
    """CPU of our finished children (wrk), from getrusage."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pids(server: Server | None) -> list[int]:
    return server.measured_pids() if server is not None else []


def saturate(target: Target, url: str, settings: Settings) -> Saturation:
    """wrk at full speed; CPU of the target (and its upstream) read from /proc just before and after."""
    pids, upstream_pids = _pids(target.server), _pids(target.upstream)
    accepts0 = nginx_accepted_connections(target.upstream_url) if target.upstream_url else 0
    machine0, wrk0 = system_cpu_ticks(), _children_cpu_seconds()
    cpu0, up0 = cpu_seconds(pids), cpu_seconds(upstream_pids)
    sat = run_wrk(settings.tools["wrk"], url, settings.connections, settings.duration, cpus=settings.pinning.load,
                  headers=settings.wrk_headers)
    cpu1, up1 = cpu_seconds(pids), cpu_seconds(upstream_pids)
    machine1, wrk1 = system_cpu_ticks(), _children_cpu_seconds()
    if sat.requests <= 0:
        raise HarnessError(f"{target.name} {url}: wrk completed no requests")
    # Upstream connections opened: minus one for the second status request's own connection. A few
    # per run are normal: requests in flight when wrk stops are aborted and their connections replaced.
    opened = nginx_accepted_connections(target.upstream_url) - accepts0 - 1 if target.upstream_url else None
    # CPU used by anything but the target, its upstream and wrk (shared machine), as a share of the machine.
    delta = [after - before for before, after in zip(machine0[:8], machine1[:8], strict=True)]
    capacity_s, idle_s = sum(delta) / CLK_TCK, (delta[3] + delta[4]) / CLK_TCK  # idle + iowait
    ours_s = (cpu1 - cpu0) + (up1 - up0) + (wrk1 - wrk0)
    others_pct = round(max(0.0, capacity_s - idle_s - ours_s) * 100 / capacity_s, 1) if capacity_s else 0.0
    return Saturation(
        requests=sat.requests, duration_s=sat.duration_s, requests_per_s=sat.requests_per_s,
        latency_ms=sat.latency_ms, socket_errors=sat.socket_errors, non_2xx_3xx=sat.non_2xx_3xx,
        cpu_s=cpu1 - cpu0, cpu_us_per_req=(cpu1 - cpu0) * 1e6 / sat.requests,
        upstream_cpu_us_per_req=(up1 - up0) * 1e6 / sat.requests if target.upstream else None,
        upstream_connections_opened=opened, load_generator_cpu_s=wrk1 - wrk0,
        machine_cpu_pct=system_cpu_share(machine0, machine1), other_processes_cpu_pct=others_pct,
    )


def latency_at_rate(target: Target, url: str, settings: Settings, rate: float) -> HalfRate:
    """Paced wrk at about `rate` req/s in total over `settings.latency_connections` connections."""
    pids = _pids(target.server)
    wrk, connections = settings.tools["wrk"], settings.latency_connections
    think_ms = think_time_for_rate(wrk, url, connections, rate, cpus=settings.pinning.load)
    cpu0 = cpu_seconds(pids)
    half = run_wrk_paced(wrk, url, connections, settings.duration, think_ms, settings.pinning.load)
    cpu1 = cpu_seconds(pids)
    return HalfRate(
        target_rps=rate, connections=settings.latency_connections,
        achieved_rps=half.requests_per_s, requests=half.requests, duration_s=half.duration_s,
        latency_ms=half.latency_ms, p50_ms=half.latency_ms.get("p50"), p99_ms=half.latency_ms.get("p99"),
        non_2xx_3xx=half.non_2xx_3xx, socket_errors=half.socket_errors,
        cpu_us_per_req=(cpu1 - cpu0) * 1e6 / half.requests if half.requests else None,
    )


def measure(target: Target, file_key: str, path: str, settings: Settings, log: bool = True) -> Measurement:
    """Wait for 200, warm up, saturate with wrk, then paced wrk at half the saturation rate."""
    url = target.base_url.rstrip("/") + "/" + path.lstrip("/")
    first = wait_ready(url, target.server)

    def say(text: str) -> None:
        if log:
            print(f"  {target.name:<13} {file_key:<5} {text}", file=sys.stderr, flush=True)

    say(f"warm-up {settings.warmup:.0f}s")
    run_wrk(settings.tools["wrk"], url, settings.connections, settings.warmup, cpus=settings.pinning.load,
            headers=settings.wrk_headers)

    sat = saturate(target, url, settings)
    opened = sat.upstream_connections_opened
    say(f"saturation {sat.requests_per_s:,.0f} req/s, {sat.cpu_us_per_req:.1f} µs CPU/req"
        + (f", {opened} upstream connections opened" if opened is not None else "")
        + f", other processes {sat.other_processes_cpu_pct:.0f}% of the machine")

    half = latency_at_rate(target, url, settings, sat.requests_per_s / 2)
    say(f"half rate {half.achieved_rps:,.0f}/{half.target_rps:,.0f} req/s, p50 {_num(half.p50_ms, '.2f')} ms, "
        f"p99 {_num(half.p99_ms, '.2f')} ms")
    return Measurement(target.name, file_key, url, first.status, first.body_bytes, first.content_type, sat, half)


# --------------------------------------------------------------------------- output


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """Aligned plain-text table; the first `left` columns are left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def measurements_table(measurements: Sequence[Measurement]) -> str:
    """target, file, req/s, CPU µs/req, and p50/p99 at half rate (with the rate achieved)."""
    headers = ["target", "file", "req/s", "CPU µs/req", "p50 ms", "p99 ms", "half rate req/s (got/asked)"]
    rows = [
        [m.target, m.file, _num(m.saturation.requests_per_s, ",.0f"),
         _num(m.saturation.cpu_us_per_req, ".1f"),
         _num(m.half_rate.p50_ms, ".2f"), _num(m.half_rate.p99_ms, ".2f"),
         f"{m.half_rate.achieved_rps:,.0f} / {m.half_rate.target_rps:,.0f}"]
        for m in measurements
    ]
    return format_table(headers, rows)


def bench_main(name: str, doc: str, run: Callable[[argparse.Namespace, dict[str, str]], dict[str, object]],
               passed: Callable[[dict[str, object]], bool], argv: list[str] | None = None) -> int:
    """The command line of a load test: --duration, --connections, --json; run, save the report, exit status.

    `run` measures and returns the report; `passed` says whether its own checks held (exit 1 otherwise).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        tools = require_tools()
        report = run(args, tools)
    except HarnessError as exc:
        print(f"bench_{name}: {exc}", file=sys.stderr)
        return 1
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "environment": environment(tools)}, indent=2) + "\n")
    print(f"\nJSON: {path}")
    return 0 if passed(report) else 1
