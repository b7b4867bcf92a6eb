"""Configuration: broken files get clear errors naming file, key and reason."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

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
    # check-config tries the listen addresses: free ones, so a demo on 8080 elsewhere cannot fail this
    result = check(tmp_path, GOOD.replace(":8080", f":{free_port()}").replace(":9090", f":{free_port()}"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "shop" in result.stdout
    config = load_config(tmp_path / "consentproxy.toml")
    site = config.sites[0]
    assert site.read_timeout == 30.0 and site.max_body_bytes == 10_000_000
    assert config.server.admin_listen is not None and config.server.admin_listen.port != 8080


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
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "--no-ports", "-c", str(path)],
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


# --- what serve would refuse, found by check-config (issue 20 item 1) ------------------------------------------


def _site_config(tmp_path: Path, server: str = "", extra: str = "") -> Path:
    """A valid file on free ports; `server` adds [server] lines, `extra` whole tables."""
    path = tmp_path / "site.toml"
    path.write_text(f'[server]\nlisten = ["127.0.0.1:{free_port()}"]\nadmin_listen = "127.0.0.1:{free_port()}"\n'
                    f'{server}\n{extra}\n[sites.shop]\nhosts = ["shop.example.nl"]\nupstream = "http://127.0.0.1:9"\n')
    return path


def _check_in_process(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from consentproxy.cli import main

    status = main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def _one_problem(err: str) -> str:
    """The single problem line of check-config's output (the reported bug was several vague ones)."""
    lines = [line for line in err.splitlines() if not line.endswith("found:")]
    assert len(lines) == 1, err
    assert "//" not in lines[0].replace("://", ""), lines[0]  # paths printed without doubled slashes
    return lines[0]


def test_a_missing_data_dir_whose_parent_is_missing_names_server_data_dir_and_mkdir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "srv" / "data"
    path = _site_config(tmp_path, f'data_dir = "{data}"')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err) == (f"{path}: server.data_dir: {data} does not exist, nor does its parent {data.parent}; "
                                 f"create it: mkdir -p {data}")
    # serve stops with the same message, before it writes anything
    served = subprocess.run([sys.executable, "-m", "consentproxy", "serve", "-c", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert served.returncode == 2
    assert f"{path}: server.data_dir: {data} does not exist" in served.stderr and "store.url" not in served.stderr
    assert not data.parent.exists()


def test_a_missing_data_dir_in_an_existing_parent_is_created_by_serve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from consentproxy.config.preflight import ensure_data_dir

    data = tmp_path / "data"
    path = _site_config(tmp_path, 'data_dir = "data"')
    status, out, _ = _check_in_process(path, capsys)
    assert status == 0 and f"the data directory {data} does not exist yet; `serve` creates it" in out
    assert ensure_data_dir(load_config(path)) == data and data.is_dir()
    assert ensure_data_dir(load_config(path)) is None  # there now


def test_a_data_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").write_text("")
    path = _site_config(tmp_path, 'data_dir = "data"')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err) == (f"{path}: server.data_dir: {tmp_path / 'data'} is a file, not a directory; point "
                                 f"data_dir at a directory, or move the file away and run: mkdir -p "
                                 f"{tmp_path / 'data'}")


def test_a_data_dir_where_sqlite_cannot_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NFS and the like: SQLite's lock fails; simulated, as no test machine mounts one."""
    import sqlite3

    from consentproxy.config import preflight

    def locked(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database is locked")

    path = _site_config(tmp_path, 'data_dir = "."')
    monkeypatch.setattr(preflight.sqlite3, "connect", locked)
    [problem] = preflight.data_dir_problems(load_config(path))
    assert problem.key == "server.data_dir"
    assert problem.reason == (f"{tmp_path}: SQLite cannot lock a database there (database is locked); use a directory "
                              "on a local filesystem (not NFS, SMB or a FUSE mount), or a PostgreSQL store "
                              "([store] url)")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".consentproxy-check")] == []


def test_a_data_dir_that_is_not_writable(tmp_path: Path) -> None:
    from consentproxy.config.preflight import data_dir_problems

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    [problem] = data_dir_problems(load_config(_site_config(tmp_path, 'data_dir = "data"')))
    assert problem.key == "server.data_dir" and "is not writable by user" in problem.reason
    assert "chown -R" in problem.reason


def test_an_existing_store_file_that_is_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "consent-records.db").write_bytes(b"not a database at all, but long enough" * 100)
    path = _site_config(tmp_path, 'data_dir = "data"')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    line = _one_problem(err)
    assert line.startswith(f"{path}: server.data_dir: {tmp_path / 'data' / 'consent-records.db'} cannot be read as an "
                           "SQLite database (")
    assert line.endswith("); move it away (serve then starts a new consent log) or restore it from a backup")


def test_an_sqlite_store_url_in_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "nowhere" / "records.db"
    path = _site_config(tmp_path, 'data_dir = "."', f'[store]\nurl = "sqlite://{db}"\n')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err) == (f"{path}: store.url: the directory of {db} does not exist; create it: "
                                 f"mkdir -p {db.parent}")


def test_an_unreachable_postgresql_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _site_config(tmp_path, 'data_dir = "."',
                        f'[store]\nurl = "postgresql://nobody@127.0.0.1:{free_port()}/test"\n')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    line = _one_problem(err)
    assert line.startswith(f"{path}: store.url: cannot connect to PostgreSQL: "), line
    assert line.endswith("; check the host, port, user and database in the URL, and that the server runs "
                         "(pg_isready -d URL)")


def test_a_postgresql_user_without_the_right_to_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A role that may connect but not create tables in its schema: serve's first start would fail."""
    import secrets as random

    import psycopg
    from pg_support import pg_base, pg_schema

    role = f"cp_norights_{random.token_hex(4)}"
    with pg_schema("cp_rights") as url:
        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(pg_base(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        try:
            where = pg_base().split("@", 1)[1]  # host:port/database
            limited = f"postgresql://{role}@{where}?options=-csearch_path%3D{schema}"
            path = _site_config(tmp_path, 'data_dir = "."', f'[store]\nurl = "{limited}"\n')
            status, _, err = _check_in_process(path, capsys)
            assert status == 1
            assert _one_problem(err) == (f"{path}: store.url: user {role} may not create tables in schema {schema} "
                                         f"of database test, which the first start does; grant it: GRANT CREATE ON "
                                         f"SCHEMA {schema} TO {role}")
            with psycopg.connect(pg_base(), autocommit=True) as conn:
                conn.execute(f"GRANT CREATE ON SCHEMA {schema} TO {role}")
            status, _, err = _check_in_process(path, capsys)
            assert status == 0, err
        finally:
            with psycopg.connect(pg_base(), autocommit=True) as conn:
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(("secret", "content", "expected"), [
    ("consent_keys", None, "cannot read secret file {file}: No such file or directory; create it with: consentproxy "
                           "keys generate --dir {dir}"),
    ("consent_keys", "k1:c2hvcnQ\n", "file:{file} line 1: key must be at least 32 bytes, got 5; create it with: "
                                   "consentproxy keys generate --dir {dir} --force (this replaces every key there)"),
    ("export_key", "c2hvcnQ\n", "export key must be 32 bytes, got 5; create it with: consentproxy keys generate "
                                 "--dir {dir} --force (this replaces every key there)"),
    ("admin_token", "", "secret file {file} is empty; create it with: consentproxy keys generate --dir {dir} --force "
                        "(this replaces every key there)"),
])
def test_secrets_missing_or_malformed_say_how_to_make_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           secret: str, content: str | None, expected: str) -> None:
    names = {"consent_keys": "consent-keys", "admin_token": "admin-token", "export_key": "export-ed25519.key"}
    directory = tmp_path / "secrets"
    directory.mkdir()
    file = directory / names[secret]
    if content is not None:
        file.write_text(content)
    path = _site_config(tmp_path, 'data_dir = "."', f'[secrets]\n{secret} = "file:{file}"\n')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err) == f"{path}: secrets.{secret}: " + expected.format(file=file, dir=directory)


def test_a_secret_file_with_another_name_gets_the_name_keys_generate_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _site_config(tmp_path, 'data_dir = "."', f'[secrets]\nconsent_keys = "file:{tmp_path}/keys.txt"\n')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err).endswith(f"; create it with: consentproxy keys generate --dir {tmp_path} (which writes "
                                      f"consent-keys; reference \"file:{tmp_path}/consent-keys\")")


def test_an_unreadable_geoip_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _site_config(tmp_path, 'data_dir = "."', '[geoip]\ndatabase = "GeoLite2-Country.mmdb"\n')
    status, _, err = _check_in_process(path, capsys)
    assert status == 1
    line = _one_problem(err)
    assert line.startswith(f"{path}: geoip.database: cannot open the GeoIP database {tmp_path}/GeoLite2-Country.mmdb")
    assert line.endswith("; point it at a readable MaxMind GeoLite2/GeoIP2 Country or City .mmdb file (relative "
                         "paths start at the configuration file)")


def test_a_listen_address_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = tmp_path / "site.toml"
        path.write_text(f'[server]\nlisten = ["127.0.0.1:{free_port()}", "127.0.0.1:{port}"]\ndata_dir = "."\n'
                        '[sites.shop]\nhosts = ["shop.example.nl"]\nupstream = "http://127.0.0.1:9"\n')
        status, _, err = _check_in_process(path, capsys)
    assert status == 1
    assert _one_problem(err) == (f"{path}: server.listen[1]: 127.0.0.1:{port} is already in use; stop what listens "
                                 f"there (ss -ltnp 'sport = :{port}') or choose another port")
    assert _check_in_process(path, capsys)[0] == 0  # free again
