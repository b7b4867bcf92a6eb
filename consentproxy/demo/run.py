"""`consentproxy demo`: the demo site and its tracker stand-ins, with the proxy in front.

The site runs as a child process, a separate program from the proxy's point
of view just as a real upstream is; this process becomes the proxy, started
from a configuration file written here and loaded like any other. Whatever
ends the proxy, the child is stopped and waited for.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from consentproxy.config.loader import ConfigError, load_config, parse_listen
from consentproxy.config.model import ListenAddress
from consentproxy.config.secrets import generate_keys
from consentproxy.demo.addressing import display_host
from consentproxy.demo.configfile import CONFIG_NAME, demo_config_text, demo_geoip_database
from consentproxy.demo.trackers import SINK_LOG, TRACKER_LOG

_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class _StopRequested(BaseException):
    """SIGINT/SIGTERM outside uvicorn's own handling.

    That is before the proxy runs, or after it stopped: uvicorn re-raises the
    signal it handled once it is done, and this turns it into a clean exit.
    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it.
    """


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


def _listen_address(host: str, port: int) -> ListenAddress:
    return parse_listen(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def _port_problem(listen: ListenAddress, admin: ListenAddress) -> str | None:
    """Bind both ports once now, so a taken port is reported before anything starts."""
    from consentproxy.server.sockets import bind_socket

    for address, role in ((listen, "the proxy"), (admin, "the admin listener (--port + 1)")):
        try:
            bind_socket(address).close()
        except OSError as exc:
            return (f"error: port {address.port} for {role} is not available ({exc.strerror}); "
                    f"choose another port with --port, e.g. --port {listen.port + 10}")
    return None


def _free_ports(host: str, count: int, avoid: set[int]) -> list[int]:
    """Ports the OS reports free on `host`, all held open together so they differ from each other."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            if sock.getsockname()[1] in avoid:
                sock.close()
                continue
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def _start_site(data_dir: Path, host: str, site_port: int, tracker_port: int) -> subprocess.Popen[bytes]:
    # A session of its own keeps the terminal's Ctrl-C away from the site, so the proxy
    # drains its requests with the upstream still up; the stdin pipe ends the site if
    # this process dies without cleaning up.
    command = [sys.executable, "-m", "consentproxy.demo.site", "--data-dir", str(data_dir), "--host", host,
               "--site-port", str(site_port), "--tracker-port", str(tracker_port), "--stop-on-stdin-eof"]
    return subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)


def _wait_until_answering(child: subprocess.Popen[bytes], host: str, port: int) -> bool:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline and child.poll() is None:
        connection = http.client.HTTPConnection(host, port, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return True
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    return False


def _stop_site(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _print_banner(listen: ListenAddress, admin: ListenAddress, data_dir: Path, config_path: Path,
                  admin_token: str) -> None:
    url = f"http://{display_host(listen.host)}:{listen.port}/"
    admin_url = f"http://{display_host(admin.host)}:{admin.port}"
    lines = [
        "",
        "consentproxy demo: the Kade IT-diensten website behind consentproxy",
        f"  open the site      {url}",
        f"  console            {admin_url}/  (sign in with the admin token below; the banner preview is at "
        f"{admin_url}/preview/demo)",
        f"  admin              {admin_url}/  (for programs: an index of every endpoint, as JSON)",
        f"  admin API          {admin_url}/api/sites  (curl -H \"Authorization: Bearer $(cat {admin_token})\" …)",
        f"  admin token        {admin_token}",
        f"  metrics, health    {admin_url}/metrics  {admin_url}/healthz  {admin_url}/readyz",
        f"  data directory     {data_dir}",
        f"  configuration      {config_path}",
        f"  tracker hits       {data_dir / TRACKER_LOG}  (what the stand-in third parties received)",
        f"  analytics sink     {data_dir / SINK_LOG}  (what reached the analytics backend)",
        f"  a US visitor       curl -H 'X-Forwarded-For: 216.160.83.58' {url}  (opt-out banner)",
    ]
    if listen.host in ("0.0.0.0", "::"):
        lines.append(f"  from other devices use this machine's address instead of {display_host(listen.host)}")
    lines += ["  stop               Ctrl-C", ""]
    print("\n".join(lines), flush=True)


def run_demo(port: int, data_dir: Path, host: str) -> int:
    """Start the demo site, write and load its configuration, then serve the proxy until stopped."""
    from consentproxy.server.runner import serve

    try:
        listen, admin = _listen_address(host, port), _listen_address(host, port + 1)
    except ValueError as exc:
        print(f"error: --host/--port: {exc}", file=sys.stderr)
        return 2
    problem = _port_problem(listen, admin)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    site_port, tracker_port = _free_ports(host, 2, avoid={listen.port, admin.port})
    site_host = display_host(host)

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    child: subprocess.Popen[bytes] | None = None
    try:
        child = _start_site(data_dir, host, site_port, tracker_port)
        if not _wait_until_answering(child, site_host, site_port):
            print(f"error: the demo site did not start on port {site_port} (see its messages above)", file=sys.stderr)
            return 1
        config_path = data_dir / CONFIG_NAME
        keys = generate_keys(data_dir / "secrets")
        config_path.write_text(demo_config_text(
            listen=listen, admin_listen=admin, data_dir=data_dir, keys=keys,
            upstream=f"http://{site_host}:{site_port}", trackers=f"http://{site_host}:{tracker_port}/",
            geoip=demo_geoip_database(),
        ), encoding="utf-8")
        config = load_config(config_path)
        _print_banner(listen, admin, data_dir, config_path, str(keys["admin_token"]))
        status = serve(config)
        if status != 0:
            print(f"error: the proxy could not start on port {port}; choose another port with --port", file=sys.stderr)
        return status
    except _StopRequested:
        return 0
    except ConfigError as exc:
        print(f"error: the generated configuration is invalid (a bug in the demo):\n{exc}", file=sys.stderr)
        return 2
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if child is not None:
            _stop_site(child)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
