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
        assert f"  console      {base}/  (in a browser: sign in with an admin token; the admin token is in " in output
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


# --- a new site from the docs alone (issue 20, acceptance) -----------------------------------------------------

#: Written from the README's configuration reference and config/consentproxy.example.toml only, as a site
#: owner would: the quick start's `keys generate` for the secrets, a data directory next to the file that
#: does not exist yet. PORT, ADMIN, UPSTREAM and SECRETS are filled in by the test.
NEW_SITE = """
[server]
listen = ["127.0.0.1:PORT"]
admin_listen = "127.0.0.1:ADMIN"
data_dir = "data"

[secrets]
consent_keys = "file:SECRETS/consent-keys"
admin_token = "file:SECRETS/admin-token"
export_key = "file:SECRETS/export-ed25519.key"

[sites.bakkerij]
hosts = ["www.bakkerij-jansen.nl", "bakkerij-jansen.nl"]
upstream = "UPSTREAM"

[sites.bakkerij.consent]
controller = "Bakkerij Jansen"
privacy_url = { nl = "/privacy", en = "/en/privacy" }

[sites.bakkerij.consent.texts]
title = { nl = "Cookies bij Bakkerij Jansen", en = "Cookies at Bakkerij Jansen" }
text = "We gebruiken cookies voor statistieken en om video's te tonen."

[sites.bakkerij.consent.categories.statistics]
label = { nl = "Bezoekersstatistieken", en = "Visitor statistics" }

[[sites.bakkerij.cookies]]
name = "PHPSESSID"
category = "necessary"
purpose = "Onthoudt uw winkelmandje"

[[sites.bakkerij.services]]
name = "YouTube"
category = "marketing"
iframes = ["youtube.com/embed"]
"""


def _new_site(tmp_path: Path, upstream: str, text: str = NEW_SITE) -> tuple[Path, int, int]:
    port, admin = free_port(), free_port()
    path = tmp_path / "site" / "consentproxy.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.replace("PORT", str(port)).replace("ADMIN", str(admin)).replace("UPSTREAM", upstream)
                    .replace("SECRETS", str(tmp_path / "secrets")))
    return path, port, admin


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentproxy", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_a_new_site_from_the_docs_starts_on_the_first_try(tmp_path: Path, upstream: Upstream) -> None:
    assert _cli("keys", "generate", "--dir", str(tmp_path / "secrets")).returncode == 0
    path, port, admin = _new_site(tmp_path, upstream.url)
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 0, checked.stderr
    assert f"the data directory {path.parent / 'data'} does not exist yet; `serve` creates it" in checked.stdout
    process = subprocess.Popen([sys.executable, "-m", "consentproxy", "serve", "-c", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{admin}/readyz", process)
        response = raw_request(port, b"GET / HTTP/1.1\r\nHost: www.bakkerij-jansen.nl\r\nConnection: close\r\n\r\n")
        assert status_of(response) == 200
        assert (path.parent / "data" / "consent-records.db").exists()
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output
        assert f"created the data directory {path.parent / 'data'}" in output
        assert f"the admin token is in {tmp_path / 'secrets' / 'admin-token'}" in output
    finally:
        kill_quietly(process)


def test_the_new_sites_mistakes_each_name_the_key_and_the_fix(tmp_path: Path, upstream: Upstream) -> None:
    """The issue's new user's mistakes, one at a time, each found by check-config with its key and its fix."""
    import socket

    secrets = tmp_path / "secrets"
    # 1. the keys were never generated
    path, _, _ = _new_site(tmp_path, upstream.url)
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1
    assert (f"{path}: secrets.consent_keys: cannot read secret file {secrets}/consent-keys: No such file or "
            f"directory; create it with: consentproxy keys generate --dir {secrets}") in checked.stderr
    assert _cli("keys", "generate", "--dir", str(secrets)).returncode == 0
    # 2. a data directory whose parent does not exist (the reported store.url message)
    path, _, _ = _new_site(tmp_path, upstream.url, NEW_SITE.replace('"data"', '"srv/consentproxy/data"'))
    data = path.parent / "srv" / "consentproxy" / "data"
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1 and "store.url" not in checked.stderr
    assert (f"{path}: server.data_dir: {data} does not exist, nor does its parent {data.parent}; create it: "
            f"mkdir -p {data}") in checked.stderr
    # 3. a banner text by the wrong name
    path, _, _ = _new_site(tmp_path, upstream.url, NEW_SITE.replace("\ntext = ", "\ndescription = "))
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1
    assert f"{path}: sites.bakkerij.consent.texts.description: unknown key; valid keys here: " in checked.stderr
    assert ", text, title," in checked.stderr
    # 4. a PostgreSQL store that is not there
    dead = free_port()
    path, _, _ = _new_site(tmp_path, upstream.url,
                           NEW_SITE + f'\n[store]\nurl = "postgresql://consentproxy@127.0.0.1:{dead}/consent"\n')
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1
    assert f"{path}: store.url: cannot connect to PostgreSQL: " in checked.stderr
    assert "(pg_isready -d URL)" in checked.stderr
    # 5. a GeoIP database that is not where the file says
    path, _, _ = _new_site(tmp_path, upstream.url, '[geoip]\ndatabase = "GeoLite2-Country.mmdb"\n' + NEW_SITE)
    checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1
    assert f"{path}: geoip.database: cannot open the GeoIP database {path.parent}/GeoLite2-Country.mmdb" \
        in checked.stderr
    # 6. the port is taken by something else
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        path, _, _ = _new_site(tmp_path, upstream.url, NEW_SITE.replace('"127.0.0.1:PORT"', f'"127.0.0.1:{busy}"'))
        checked = _cli("check-config", "-c", str(path))
    assert checked.returncode == 1
    assert (f"{path}: server.listen[0]: 127.0.0.1:{busy} is already in use; stop what listens there "
            f"(ss -ltnp 'sport = :{busy}') or choose another port") in checked.stderr
    # and each fixed, it passes
    path, _, _ = _new_site(tmp_path, upstream.url)
    assert _cli("check-config", "-c", str(path)).returncode == 0
