"""`consentproxy serve --upstream …`: one site, any Host, no configuration file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import ROOT, Upstream, free_port, kill_quietly, raw_request, status_of, wait_ready


def test_quickstart_fronts_any_host_and_keeps_data_in_its_directory(tmp_path: Path, upstream: Upstream) -> None:
    port, admin = free_port(), free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "consentproxy", "serve", "--upstream", upstream.url,
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        wait_ready(f"http://127.0.0.1:{admin}/readyz", process)
        for host in (b"anything.example", b"www.kade-it.nl"):
            response = raw_request(port, b"GET /q?x=1 HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            assert status_of(response) == 200
            assert json.loads(response.split(b"\r\n\r\n", 1)[1])["raw_path"] == "/q?x=1"
        assert sorted(p.name for p in (data_dir / "secrets").iterdir()) == [
            "admin-token", "consent-keys", "export-ed25519.key"]
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=5) as answer:
            assert json.loads(answer.read())["sites"] == ["default"]
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0
        assert f"data directory {data_dir.resolve()}" in output
        # where the admin listener is and where its token is kept (issue 20 item 4)
        base = f"http://127.0.0.1:{admin}"
        token_file = data_dir.resolve() / "secrets" / "admin-token"
        assert (f"  admin API    {base}/api/sites  (Authorization: Bearer TOKEN; the admin token is in "
                f"{token_file})") in output, output
        assert f"  metrics      {base}/metrics" in output and f"  health       {base}/healthz  {base}/readyz" in output
        assert token_file.read_text().strip() not in output
    finally:
        kill_quietly(process)


def test_quickstart_reports_default_data_dir_and_bad_flags(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    bad = subprocess.run(
        [sys.executable, "-m", "consentproxy", "serve", "--upstream", "ftp://x", "--listen", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "must be an http:// or https:// URL" in bad.stderr
    neither = subprocess.run([sys.executable, "-m", "consentproxy", "serve"], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    assert neither.returncode == 2 and "--upstream URL" in neither.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "consentproxy", "serve", "--upstream", "http://127.0.0.1:9", "--listen",
         f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_ready_port(port, process)
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
        assert f"data directory {tmp_path / 'xdg' / 'consentproxy'}" in output
        assert (tmp_path / "xdg" / "consentproxy" / "secrets" / "consent-keys").exists()
    finally:
        kill_quietly(process)


def wait_ready_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Ready when the proxy answers at all (here its upstream is down: 502)."""
    import socket
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("proxy did not start")
