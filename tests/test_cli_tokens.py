"""`consentproxy keys token`: a token shown once, a configuration that keeps only its digest, and it works."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import Upstream, launch_proxy, site_toml


def admin(url: str, token: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_generated_read_token_reads_and_cannot_erase(upstream: Upstream, tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "consentproxy", "keys", "token", "--name", "dpo"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    token = re.search(r"^  (\S{40,})$", made, re.M)
    table = made[made.index("[[server.admin_tokens]]"):]
    assert token and token.group(1) not in table  # the configuration never holds the token itself
    proxy = launch_proxy(tmp_path, 0, site_toml("kade", upstream.url), server={})
    try:
        config = proxy.config_path.read_text()
        proxy.config_path.write_text(config.replace("\n\n[sites.kade]", "\n" + table + "\n\n[sites.kade]", 1))
        proxy.process.send_signal(signal.SIGHUP)
        base = proxy.admin_url + "/api/sites"
        for _ in range(100):
            if admin(base, token.group(1)) == 200:
                break
            time.sleep(0.1)
        assert admin(base, token.group(1)) == 200
        assert admin(base, "not-" + token.group(1)) == 401
        assert admin(f"{base}/kade/consents/AAAAAAAAAAAAAAAAAAAAAA", token.group(1), "DELETE") == 403  # read scope
    finally:
        proxy.stop(signal.SIGTERM)


def test_a_reserved_or_odd_name_is_refused() -> None:
    for name in ("admin", "two words", ""):
        result = subprocess.run([sys.executable, "-m", "consentproxy", "keys", "token", "--name", name],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "--name must be" in result.stderr
