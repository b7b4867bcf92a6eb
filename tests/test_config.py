"""Configuration: broken files get clear errors naming file, key and reason."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from consentproxy.config import ConfigError, load_config
from consentproxy.config.secrets import parse_consent_keys, read_secret

GOOD = """
[server]
listen = ["127.0.0.1:8080"]
admin_listen = "127.0.0.1:9090"
trusted_proxies = ["10.0.0.0/8"]

[sites.shop]
hosts = ["shop.example.nl", "*.shop.example.nl"]
upstream = "http://127.0.0.1:9000"
read_timeout = "30s"
max_body_bytes = "10MB"
"""


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "consentproxy.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_good_config_passes(tmp_path: Path) -> None:
    result = check(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "shop" in result.stdout
    config = load_config(tmp_path / "consentproxy.toml")
    site = config.sites[0]
    assert site.read_timeout == 30.0 and site.max_body_bytes == 10_000_000
    assert config.server.admin_listen is not None and config.server.admin_listen.port == 9090


BROKEN = {
    "syntax": ("[server\nlisten = 1", "(syntax): not valid TOML"),
    "trust-everyone": (GOOD.replace('["10.0.0.0/8"]', '["0.0.0.0/0"]'),
                       "server.trusted_proxies[0]: '0.0.0.0/0' trusts every address"),
    "bad-upstream": (GOOD.replace('"http://127.0.0.1:9000"', '"ftp://files.example"'),
                     "sites.shop.upstream: must be an http:// or https:// URL"),
    "unknown-key": (GOOD.replace("read_timeout", "read_timeuot"),
                    "sites.shop.read_timeuot: unknown key (did you mean 'read_timeout'?)"),
    "bad-listen": (GOOD.replace('"127.0.0.1:8080"', '"127.0.0.1:99999"'),
                   "server.listen[0]: port must be between 1 and 65535"),
    "missing-hosts": (GOOD.replace('hosts = ["shop.example.nl", "*.shop.example.nl"]', ""),
                      "sites.shop.hosts: is required"),
    "bad-duration": (GOOD.replace('"30s"', '"soon"'), "sites.shop.read_timeout: expected a duration"),
    "host-with-scheme": (GOOD.replace('"shop.example.nl",', '"https://shop.example.nl/",'),
                         "sites.shop.hosts[0]: 'https://shop.example.nl/' is not a host name"),
    "secret-inline": (GOOD + '\n[secrets]\nadmin_token = "hunter2"\n',
                      "secrets.admin_token: secrets are never written into the configuration"),
    "no-sites": ("[server]\nworkers = 2\n", "sites: no site configured"),
    "wrong-type": (GOOD.replace('listen = ["127.0.0.1:8080"]', 'listen = ["127.0.0.1:8080"]\nworkers = "two"'),
                   "server.workers: expected a whole number of at least 1, got the string 'two'"),
    "admin-same-port": (GOOD.replace('"127.0.0.1:9090"', '"127.0.0.1:8080"'),
                        "server.admin_listen: port 8080 is also a proxy listen port"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configs_give_clear_distinct_errors(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    result = check(tmp_path, text)
    assert result.returncode == 1
    assert f"{tmp_path / 'consentproxy.toml'}: {expected}" in result.stderr, result.stderr


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('"30s"', '"soon"').replace('"10MB"', '"lots"').replace("9000", "9000/x?y=1")
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    keys = [problem.key for problem in error.value.problems]
    assert keys == ["sites.shop.upstream", "sites.shop.read_timeout", "sites.shop.max_body_bytes"]


def test_missing_file_and_missing_secret(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(tmp_path / "nope.toml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "nope.toml: (file): cannot be read" in result.stderr
    result = check(tmp_path, GOOD + f'\n[secrets]\nconsent_keys = "file:{tmp_path}/absent"\n')
    assert result.returncode == 1
    assert "secrets.consent_keys: cannot read secret file" in result.stderr


def test_keys_generate_writes_private_usable_keys(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    result = subprocess.run([sys.executable, "-m", "consentproxy", "keys", "generate", "--dir", str(directory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in directory.iterdir())
    assert files == ["admin-token", "consent-keys", "export-ed25519.key"]
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = parse_consent_keys(read_secret(f"file:{directory}/consent-keys"), "consent-keys")
    assert len(keys) == 1 and len(keys[0].key) == 32
    first = (directory / "consent-keys").read_text()
    subprocess.run([sys.executable, "-m", "consentproxy", "keys", "generate", "--dir", str(directory)],
                   check=True, capture_output=True, timeout=60)
    assert (directory / "consent-keys").read_text() == first  # never silently replaced
    subprocess.run([sys.executable, "-m", "consentproxy", "keys", "generate", "--dir", str(directory), "--force"],
                   check=True, capture_output=True, timeout=60)
    assert (directory / "consent-keys").read_text() != first
    assert f'consent_keys = "file:{directory.resolve()}/consent-keys"' in result.stdout


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP_TEST_TOKEN", "  s3cret  ")
    assert read_secret("env:CP_TEST_TOKEN") == "s3cret"
    path = tmp_path / "c.toml"
    path.write_text(GOOD + '\n[secrets]\nadmin_token = "env:CP_TEST_TOKEN_ABSENT"\n')
    env = {k: v for k, v in os.environ.items() if k != "CP_TEST_TOKEN_ABSENT"}
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert "secrets.admin_token: environment variable CP_TEST_TOKEN_ABSENT is not set" in result.stderr


def test_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = (Path(__file__).parent.parent / "config" / "consentproxy.example.toml").read_text()
    subprocess.run([sys.executable, "-m", "consentproxy", "keys", "generate", "--dir", str(tmp_path)],
                   check=True, capture_output=True, timeout=60)
    text = example.replace("/etc/consentproxy/secrets", str(tmp_path))
    monkeypatch.setenv("CONSENTPROXY_ADMIN_TOKEN", "token-for-the-test")
    path = tmp_path / "consentproxy.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "kade" in result.stdout and "shop" in result.stdout


def test_connections_per_client_limit_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "consentproxy.toml"
    assert load_config(_with_limits(path, "")).server.limits.max_connections_per_client == 256
    assert load_config(_with_limits(path, "max_connections_per_client = 0")).server.limits \
        .max_connections_per_client == 0  # 0: no limit
    assert load_config(_with_limits(path, "max_connections_per_client = 12")).server.limits \
        .max_connections_per_client == 12
    with pytest.raises(ConfigError, match="max_connections_per_client: expected a whole number of at least 0"):
        load_config(_with_limits(path, "max_connections_per_client = -1"))


def _with_limits(path: Path, line: str) -> Path:
    server, _, sites = GOOD.partition("[sites.shop]")
    path.write_text(server + "\n[server.limits]\n" + line + "\n\n[sites.shop]" + sites)
    return path
