"""Configuration: broken files get clear errors naming file, key and reason."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_file_only_checks_the_file_not_the_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For a build machine that validates the file but never serves it."""
    from consentproxy.cli import main

    path = _site_config(tmp_path, 'data_dir = "/nowhere/at/all"', '[secrets]\nconsent_keys = "file:/nowhere/keys"\n')
    assert main(["check-config", "--file-only", "-c", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK")
    assert main(["check-config", "-c", str(path)]) == 1


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


# --- every configuration error names its key and says what to do (issue 20 item 6) --------------------------

_SITE = '[sites.s]\nhosts = ["s.example"]\nupstream = "http://127.0.0.1:9"\n'
A64, B64 = "a" * 64, "b" * 64  # two valid token digests


def TOKEN(name: str = "dpo", digest: str = A64, extra: str = "") -> str:
    """One [[server.admin_tokens]] entry."""
    return f'[[server.admin_tokens]]\nname = "{name}"\nscope = "read"\nsha256 = "{digest}"\n{extra}'


def S(extra: str = "") -> str:
    """The minimal site, with `extra` lines in its table."""
    return _SITE + extra


def T(table: str, body: str) -> str:
    """The minimal site and one of its sub-tables."""
    return S(f"[sites.s.{table}]\n{body}\n")


def _valid(path: str) -> str:
    """The valid-keys part of an unknown-key message, from the documented schema (so adding a key there is
    all a new key needs here)."""
    from consentproxy.config.schema import ROOT_KEYS, table
    from consentproxy.consent.texts import BANNER_TEXTS

    if path == "":
        keys = list(ROOT_KEYS)
    elif path == "sites.NAME.consent.texts":
        keys = list(BANNER_TEXTS)
    else:
        documented = table(path)
        keys = [key.name for key in documented.keys] + list(documented.children)
    return f"; valid keys here: {', '.join(sorted(keys))}"


#: (case, file, key, the whole reason): every message the loader can give, each with what to do about it
ERRORS = [
    ('root unknown key', 'sever = 1\n' + S(),
     'sever', "unknown key (did you mean 'server'?)" + _valid('')),
    ('no site', '[server]\nworkers = 1\n',
     'sites', 'no site configured; add a [sites.NAME] table with hosts and upstream'),
    ('site not a table', 'sites = { s = 1 }\n',
     'sites.s', 'expected a table [sites.s], got int 1'),
    ('site name', '[sites."a b"]\nhosts = ["s.example"]\nupstream = "http://127.0.0.1:9"\n',
     'sites.a b', "site names may use letters, digits, '.', '_', '-'"),
    ('server unknown', '[server]\nworker = 2\n' + S(),
     'server.worker', "unknown key (did you mean 'workers'?)" + _valid('server')),
    ('listen type', '[server]\nlisten = [1]\n' + S(),
     'server.listen[0]', 'expected "HOST:PORT", got int 1'),
    ('listen no port', '[server]\nlisten = ["localhost"]\n' + S(),
     'server.listen[0]', 'expected "HOST:PORT" such as "127.0.0.1:8080", got \'localhost\''),
    ('listen port range', '[server]\nlisten = ["127.0.0.1:0"]\n' + S(),
     'server.listen[0]', 'port must be between 1 and 65535, got 0'),
    ('listen host name', '[server]\nlisten = ["example.com:80"]\n' + S(),
     'server.listen[0]',
     'listen host must be an IP address or \'localhost\', got \'example.com\'; use "0.0.0.0:80" for every IPv4 '
     'address'),
    ('listen empty', '[server]\nlisten = []\n' + S(),
     'server.listen', 'needs at least one address, e.g. ["127.0.0.1:8080"]'),
    ('listen not a list', '[server]\nlisten = 5\n' + S(),
     'server.listen', 'expected a list, got int 5'),
    ('admin same port', '[server]\nlisten = ["127.0.0.1:8080"]\nadmin_listen = "127.0.0.1:8080"\n' + S(),
     'server.admin_listen',
     'port 8080 is also a proxy listen port; the admin listener needs its own: choose another port, e.g. '
     '"127.0.0.1:9090"'),
    ('trusted type', '[server]\ntrusted_proxies = [5]\n' + S(),
     'server.trusted_proxies[0]', 'expected an address or network such as "10.0.0.0/8", got int 5'),
    ('trusted bad', '[server]\ntrusted_proxies = ["x"]\n' + S(),
     'server.trusted_proxies[0]',
     'not an IP address or network: \'x\'; use an address such as "10.0.0.1" or a network such as "10.0.0.0/8"'),
    ('trusted everyone', '[server]\ntrusted_proxies = ["0.0.0.0/0"]\n' + S(),
     'server.trusted_proxies[0]',
     "'0.0.0.0/0' trusts every address on the internet, so any client could forge X-Forwarded-For; list only the "
     'addresses of your own load balancers'),
    ('workers zero', '[server]\nworkers = 0\n' + S(),
     'server.workers', 'expected a whole number of at least 1, got int 0'),
    ('access_log type', '[server]\naccess_log = "yes"\n' + S(),
     'server.access_log', "expected true or false, got the string 'yes'"),
    ('data_dir bool', '[server]\ndata_dir = true\n' + S(),
     'server.data_dir', 'expected a string, got a boolean'),
    ('duration bool', '[server]\ngraceful_timeout = true\n' + S(),
     'server.graceful_timeout', 'expected a duration such as 5 or "500ms", got a boolean'),
    ('duration text', '[server]\ngraceful_timeout = "soon"\n' + S(),
     'server.graceful_timeout', 'expected a duration such as 5 or "500ms", got the string \'soon\''),
    ('duration zero', '[server]\ngraceful_timeout = 0\n' + S(),
     'server.graceful_timeout', 'must be greater than zero, got 0; use a duration such as 5 or "500ms"'),
    ('size bool', '[server.limits]\nmax_header_bytes = true\n' + S(),
     'server.limits.max_header_bytes', 'expected a size such as 10485760 or "10MB", got a boolean'),
    ('size negative', '[server.limits]\nmax_header_bytes = -1\n' + S(),
     'server.limits.max_header_bytes', 'must not be negative, got -1; use 0 or a size such as "10MB"'),
    ('size text', '[server.limits]\nmax_header_bytes = "lots"\n' + S(),
     'server.limits.max_header_bytes', 'expected a size such as 10485760 or "10MB", got the string \'lots\''),
    ('non-negative', '[server.limits]\nmax_connections_per_client = -1\n' + S(),
     'server.limits.max_connections_per_client', 'expected a whole number of at least 0, got int -1'),
    ('limits unknown', '[server.limits]\nmax_headers = 5\n' + S(),
     'server.limits.max_headers', "unknown key (did you mean 'max_header_bytes'?)" + _valid('server.limits')),
    ('tokens type', '[server]\nadmin_tokens = [1]\n' + S(),
     'server.admin_tokens[0]', 'expected a table [[server.admin_tokens]], got int 1'),
    ('token name missing', '[[server.admin_tokens]]\nscope = "read"\nsha256 = "' + A64 + '"\n' + S(),
     'server.admin_tokens[0].name', 'is required: who holds the token (the audit log names it)'),
    ('token name bad', '[[server.admin_tokens]]\nname = "a b"\nscope = "read"\nsha256 = "' + A64 + '"\n' + S(),
     'server.admin_tokens[0].name', "use 1-64 letters, digits, '.', '_', '-' or '@'"),
    ('token name admin', '[[server.admin_tokens]]\nname = "admin"\nscope = "read"\nsha256 = "' + A64 + '"\n' + S(),
     'server.admin_tokens[0].name',
     "'admin' is the name of [secrets] admin_token; each token needs its own, so the audit can tell them apart"),
    ('token name twice', TOKEN() + TOKEN(digest=B64) + S(),
     'server.admin_tokens[1].name',
     "'dpo' is already the name of another token; each token needs its own, so the audit can tell them apart"),
    ('token scope missing', '[[server.admin_tokens]]\nname = "dpo"\nsha256 = "' + A64 + '"\n' + S(),
     'server.admin_tokens[0].scope', 'is required: "read" or "full"'),
    ('token scope bad', '[[server.admin_tokens]]\nname = "dpo"\nscope = "write"\nsha256 = "' + A64 + '"\n' + S(),
     'server.admin_tokens[0].scope', 'must be "read" or "full", got \'write\''),
    ('token sha missing', '[[server.admin_tokens]]\nname = "dpo"\nscope = "read"\n' + S(),
     'server.admin_tokens[0].sha256', "is required: the token's SHA-256 in hex (printf %s TOKEN | sha256sum)"),
    ('token sha bad', '[[server.admin_tokens]]\nname = "dpo"\nscope = "read"\nsha256 = "hunter2"\n' + S(),
     'server.admin_tokens[0].sha256',
     "must be the token's SHA-256 as 64 hexadecimal digits (printf %s TOKEN | sha256sum), got 7 characters; "
     'never put the token itself here'),
    ('token sha empty', TOKEN(digest="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") + S(),
     'server.admin_tokens[0].sha256',
     'is the SHA-256 of an empty token; make a token with: consentproxy keys token --name NAME'),
    ('token sha twice', TOKEN() + TOKEN(name="ops") + S(),
     'server.admin_tokens[1].sha256',
     'is the digest of another configured token; each holder needs a token of their own: consentproxy keys token '
     '--name NAME'),
    ('token unknown', TOKEN(extra='token = "x"\n') + S(),
     'server.admin_tokens[0].token', 'unknown key' + _valid('server.admin_tokens[]')),
    ('secret inline', '[secrets]\nadmin_token = "hunter2"\n' + S(),
     'secrets.admin_token',
     'secrets are never written into the configuration; use "file:/path/to/file" or "env:VARIABLE_NAME"'),
    ('secrets unknown', '[secrets]\nconsent_key = "file:/x"\n' + S(),
     'secrets.consent_key', "unknown key (did you mean 'consent_keys'?)" + _valid('secrets')),
    ('store url', '[store]\nurl = "mysql://db/consent"\n' + S(),
     'store.url',
     "must start with sqlite: or postgresql:, got 'mysql://db/consent'; e.g. "
     '"postgresql://consentproxy@db.internal:5432/consent", or leave it out for an SQLite file in the data '
     'directory'),
    ('store unknown', '[store]\nuri = "sqlite:x.db"\n' + S(),
     'store.uri', "unknown key (did you mean 'url'?)" + _valid('store')),
    ('geoip unknown', '[geoip]\npath = "x.mmdb"\n' + S(),
     'geoip.path', 'unknown key' + _valid('geoip')),
    ('trackers unknown', '[trackers]\nlist = []\n' + S(),
     'trackers.list', "unknown key (did you mean 'lists'?)" + _valid('trackers')),
    ('tracker list type', '[trackers]\nlists = [1]\n' + S(),
     'trackers.lists[0]', 'expected a table {format = "...", path = "..."}, got int 1'),
    ('tracker format missing', '[trackers]\nlists = [{path = "x.json"}]\n' + S(),
     'trackers.lists[0].format', 'is required: one of trackerdb, tds, disconnect, abp'),
    ('tracker format bad', '[trackers]\nlists = [{format = "csv", path = "x.json"}]\n' + S(),
     'trackers.lists[0].format', "must be one of trackerdb, tds, disconnect, abp, got 'csv'"),
    ('tracker path missing', '[trackers]\nlists = [{format = "tds"}]\n' + S(),
     'trackers.lists[0].path', 'is required: the list file (relative to this configuration file)'),
    ('tracker category', '[trackers]\nlists = [{format = "tds", path = "x.json", categories = {Ads = "ads"}}]\n' + S(),
     'trackers.lists[0].categories.Ads',
     "must be one of necessary, preferences, statistics, marketing, got the string 'ads'"),
    ('hosts missing', '[sites.s]\nupstream = "http://127.0.0.1:9"\n',
     'sites.s.hosts', 'is required: the Host names this site answers to, e.g. ["example.nl"]'),
    ('hosts empty', '[sites.s]\nhosts = []\nupstream = "http://127.0.0.1:9"\n',
     'sites.s.hosts', 'needs at least one host name, e.g. ["example.nl"]'),
    ('hosts scheme', '[sites.s]\nhosts = ["https://s.example/"]\nupstream = "http://127.0.0.1:9"\n',
     'sites.s.hosts[0]',
     '\'https://s.example/\' is not a host name (use "example.nl", "*.example.nl" or "*"; no scheme, port or path)'),
    ('hosts type', '[sites.s]\nhosts = [1]\nupstream = "http://127.0.0.1:9"\n',
     'sites.s.hosts[0]', 'expected a host name such as "www.example.nl", got int 1'),
    ('upstream missing', '[sites.s]\nhosts = ["s.example"]\n',
     'sites.s.upstream', 'is required: the URL of the website behind the proxy'),
    ('upstream type', '[sites.s]\nhosts = ["s.example"]\nupstream = 1\n',
     'sites.s.upstream', 'expected a URL such as "http://127.0.0.1:8000", got int 1'),
    ('upstream scheme', '[sites.s]\nhosts = ["s.example"]\nupstream = "ftp://files.example"\n',
     'sites.s.upstream', "must be an http:// or https:// URL with a host, got 'ftp://files.example'"),
    ('upstream query', '[sites.s]\nhosts = ["s.example"]\nupstream = "http://127.0.0.1:9/?a=1"\n',
     'sites.s.upstream',
     "must not contain a query or fragment, got 'http://127.0.0.1:9/?a=1'; remove what follows ? or #"),
    ('upstream port', '[sites.s]\nhosts = ["s.example"]\nupstream = "http://127.0.0.1:99999"\n',
     'sites.s.upstream', "has an invalid port: 'http://127.0.0.1:99999'; use a port from 1 to 65535"),
    ('upstream_host', S('upstream_host = "a b"\n'),
     'sites.s.upstream_host', 'must be "client", "upstream" or a host name, got \'a b\''),
    ('site unknown', S('read_timeuot = "30s"\n'),
     'sites.s.read_timeuot', "unknown key (did you mean 'read_timeout'?)" + _valid('sites.NAME')),
    ('header name', S('client_address_headers = ["a b"]\n'),
     'sites.s.client_address_headers[0]', 'expected a header name such as "X-Visitor-IP", got the string \'a b\''),
    ('header own', S('client_address_headers = ["X-Forwarded-For"]\n'),
     'sites.s.client_address_headers[0]', 'X-Forwarded-For is written by the proxy itself (see forward_client_ip)'),
    ('pass unknown header', S('pass_client_headers = ["x-shop-ip"]\n'),
     'sites.s.pass_client_headers',
     'x-shop-ip is no client-address header (add it to client_address_headers if it is one)'),
    ('pass truncated', S('forward_client_ip = "truncated"\npass_client_headers = ["x-real-ip"]\n'),
     'sites.s.pass_client_headers',
     'would hand the site full visitor addresses, while forward_client_ip promises it none or truncated ones; '
     'remove pass_client_headers or set forward_client_ip = "full"'),
    ('third_party', S('third_party = "block"\n'),
     'sites.s.third_party',
     'must be "report" (list unknown third parties) or "hold" (also hold them until Accept all), got the string '
     "'block'"),
    ('discovery', S('discovery = true\n'),
     'sites.s.discovery',
     'must be "on" (browsers report the hosts and cookies pages use) or "off", got bool True'),
    ('discovery_sample', S('discovery_sample = 5\n'),
     'sites.s.discovery_sample', 'must be a number from 0 to 1 (the share of page views, 0.05 is one in twenty), '
     'got int 5'),
    ('forward_client_ip', S('forward_client_ip = "half"\n'),
     'sites.s.forward_client_ip', "must be one of full, truncated, none, got the string 'half'"),
    ('host clash', S() + '[sites.t]\nhosts = ["s.example"]\nupstream = "http://127.0.0.1:9"\n',
     'sites.t.hosts',
     "'s.example' is already served by site 's'; a host belongs to one site: remove it from one of them"),
    ('regimes place type', '[geoip]\ndatabase = "x.mmdb"\n' + T("regimes", 'opt_out = [1]'),
     'sites.s.regimes.opt_out[0]', 'expected a country such as "US" or a subdivision such as "US-CA", got int 1'),
    ('regimes EEA', '[geoip]\ndatabase = "x.mmdb"\n' + T("regimes", 'opt_out = ["DE"]'),
     'sites.s.regimes.opt_out[0]',
     'DE is in the EEA, the UK or Switzerland, where consent is always opt-in; remove it (only places outside '
     'them take another regime)'),
    ('regimes both', '[geoip]\ndatabase = "x.mmdb"\n' + T("regimes", 'opt_out = ["US"]\nnotice_only = ["US"]'),
     'sites.s.regimes.notice_only',
     'US also listed in opt_out; a place has one regime: remove it from one of the lists'),
    ('regimes no geoip', T("regimes", 'opt_out = ["US"]'),
     'sites.s.regimes', 'regimes by place need a GeoIP database: set [geoip] database'),
    ('regimes unknown', '[geoip]\ndatabase = "x.mmdb"\n' + T("regimes", 'opt_in = ["US"]'),
     'sites.s.regimes.opt_in', "unknown key (did you mean 'opt_out'?)" + _valid('sites.NAME.regimes')),
    ('analytics url', T("analytics", 'ga4 = "ftp://x"'),
     'sites.s.analytics.ga4', "expected an http(s) URL, got the string 'ftp://x'"),
    ('analytics token', T("analytics", 'matomo_token = "abc"'),
     'sites.s.analytics.matomo_token',
     'secrets are never written into the configuration: use "file:/path/to/file" or "env:VARIABLE_NAME"'),
    ('analytics param', T("analytics", 'query_allow = ["a b"]'),
     'sites.s.analytics.query_allow[0]', 'expected a URL parameter name such as "utm_source", got the string \'a b\''),
    ('analytics one_of', T("analytics", 'ipv4 = "v4/8"'),
     'sites.s.analytics.ipv4', "must be one of drop, v4/24, v4/16, got the string 'v4/8'"),
    ('analytics unknown', T("analytics", 'google = "https://x"'),
     'sites.s.analytics.google', 'unknown key' + _valid('sites.NAME.analytics')),
    ('reask_on_new_vendor type', T("consent", 'reask_on_new_vendor = "yes"'),
     'sites.s.consent.reask_on_new_vendor', "expected true or false, got the string 'yes'"),
    ('category label type', T("consent.categories.marketing", 'label = 5'),
     'sites.s.consent.categories.marketing.label', 'expected a string or a table of languages, got int 5'),
    ('category language', T("consent.categories.marketing", 'label = { xx = "a" }'),
     'sites.s.consent.categories.marketing.label.xx', 'unknown language; use one of nl, en, de, fr'),
    ('category text empty', T("consent.categories.marketing", 'label = { en = " " }'),
     'sites.s.consent.categories.marketing.label.en', 'expected a text of 1 to 2000 characters'),
    ('category unknown key', T("consent.categories.marketing", 'title = "x"'),
     'sites.s.consent.categories.marketing.title', 'unknown key' + _valid('sites.NAME.consent.categories.ID')),
    ('own category id', T('consent.categories."Social Media"', 'label = "Social"'),
     'sites.s.consent.categories.Social Media',
     "a category id is 1 to 32 characters a-z, 0-9, _ and -; name your own category like social or video (the "
     "built-in ones: necessary, preferences, statistics, marketing)"),
    ('own category reserved', T("consent.categories.unknown", 'label = "Unknown"'),
     'sites.s.consent.categories.unknown',
     "'unknown' is reserved; name your own category like social or video (the built-in ones: necessary, "
     "preferences, statistics, marketing)"),
    ('own category too many', S("".join(f'[sites.s.consent.categories.c{i}]\nlabel = "C{i}"\n' for i in range(9))),
     'sites.s.consent.categories.c8', "at most 8 categories of a site's own; this is one more"),
    ('own category signal', T("consent.categories.social", 'label = "Social"\nconsent_mode = ["ads"]'),
     'sites.s.consent.categories.social.consent_mode[0]',
     "must be one of ad_storage, ad_user_data, ad_personalization, analytics_storage, functionality_storage, "
     "personalization_storage, security_storage, got the string 'ads'"),
    ('own category order', T("consent.categories.social", 'label = "Social"\norder = 0'),
     'sites.s.consent.categories.social.order',
     "expected a whole number from 1 to 1000 (built-in: preferences 10, statistics 20, marketing 30), got int 0"),
    ('necessary order', T("consent.categories.necessary", 'order = 5'),
     'sites.s.consent.categories.necessary.order', "the necessary category is always listed first; leave order out"),
    ('own category unknown key', T("consent.categories.social", 'label = "Social"\ndefault = true'),
     'sites.s.consent.categories.social.default', 'unknown key' + _valid('sites.NAME.consent.categories.ID')),
    ('own category not a table', T("consent.categories", 'social = "Social"'),
     'sites.s.consent.categories.social', "expected a table, got the string 'Social'"),
    ('service category not the site\'s', T("consent.categories.social", 'label = "Social"')
     + '[[sites.s.services]]\nname = "V"\ncategory = "video"\n',
     'sites.s.services[0].category',
     "must be one of necessary, preferences, statistics, marketing, social, got the string 'video'; a category of "
     "the site's own is declared as [sites.s.consent.categories.video]"),
    ('texts unknown', T("consent.texts", 'description = "x"'),
     'sites.s.consent.texts.description', 'unknown key' + _valid('sites.NAME.consent.texts')),
    ('consent unknown', T("consent", 'validity_days = 30'),
     'sites.s.consent.validity_days', "unknown key (did you mean 'validity'?)" + _valid('sites.NAME.consent')),
    ('cookies not tables', S('cookies = 5\n'),
     'sites.s.cookies', 'expected [[sites.s.cookies]] tables, got int 5'),
    ('cookie none', S('[[sites.s.cookies]]\ncategory = "necessary"\n'),
     'sites.s.cookies[0].name', 'give exactly one of name, prefix or pattern'),
    ('cookie name bad', S('[[sites.s.cookies]]\nname = "a b"\ncategory = "necessary"\n'),
     'sites.s.cookies[0].name',
     "'a b' is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~; no spaces, commas, quotes or =)"),
    ('cookie pattern bad', S('[[sites.s.cookies]]\npattern = "cart_("\ncategory = "necessary"\n'),
     'sites.s.cookies[0].pattern',
     'not a valid regular expression: missing ), unterminated subpattern at position 5; check its brackets and '
     "escapes (in TOML, '...' strings keep backslashes as they are)"),
    ('cookie category missing', S('[[sites.s.cookies]]\nname = "a"\n'),
     'sites.s.cookies[0].category', 'is required: one of necessary, preferences, statistics, marketing'),
    ('cookie category bad', S('[[sites.s.cookies]]\nname = "a"\ncategory = "social"\n'),
     'sites.s.cookies[0].category',
     "must be one of necessary, preferences, statistics, marketing, got the string 'social'; a category of the "
     "site's own is declared as [sites.s.consent.categories.social]"),
    ('cookie unknown', S('[[sites.s.cookies]]\nname = "a"\ncategory = "necessary"\nexpires = "1d"\n'),
     'sites.s.cookies[0].expires', 'unknown key' + _valid('sites.NAME.cookies[]')),
    ('service name', S('[[sites.s.services]]\ncategory = "marketing"\n'),
     'sites.s.services[0].name', "is required: the service's name, shown to visitors in the banner's settings"),
    ('service category', S('[[sites.s.services]]\nname = "X"\n'),
     'sites.s.services[0].category', 'is required: one of necessary, preferences, statistics, marketing'),
    ('service cookie', S('[[sites.s.services]]\nname = "X"\ncategory = "marketing"\ncookies = ["a*b"]\n'),
     'sites.s.services[0].cookies[0]', "expected a cookie name, or a prefix ending in '*', got the string 'a*b'"),
    ('service script', S('[[sites.s.services]]\nname = "X"\ncategory = "marketing"\nscripts = ["ab"]\n'),
     'sites.s.services[0].scripts[0]', "expected a URL or URL part of at least 4 characters, got the string 'ab'"),
    ('service inline', S('[[sites.s.services]]\nname = "X"\ncategory = "marketing"\ninline = ["x"]\n'),
     'sites.s.services[0].inline[0]',
     'expected a code fragment of at least 3 characters, such as "fbq(", got the string \'x\''),
    ('service privacy', S('[[sites.s.services]]\nname = "X"\ncategory = "marketing"\nprivacy_url = "/p"\n'),
     'sites.s.services[0].privacy_url', "expected an http(s) URL, got the string '/p'"),
    ('service unknown', S('[[sites.s.services]]\nname = "X"\ncategory = "marketing"\nscript = ["abcd"]\n'),
     'sites.s.services[0].script', "unknown key (did you mean 'scripts'?)" + _valid('sites.NAME.services[]')),
    ('revision', T("consent", 'revision = 0'),
     'sites.s.consent.revision', 'expected a whole number of at least 1, got int 0'),
    ('validity', T("consent", 'validity = "900d"'),
     'sites.s.consent.validity',
     'expected 1 to 400 days (a number of days, or text such as "180d"), got the string \'900d\''),
    ('retention', T("consent", 'record_retention = 5'),
     'sites.s.consent.record_retention',
     'expected 30 to 3650 days (a number of days, or text such as "760d"), got int 5'),
    ('controller', T("consent", 'controller = ""'),
     'sites.s.consent.controller', "expected a text of 1 to 200 characters, got the string ''"),
    ('privacy_url', T("consent", 'privacy_url = 5'),
     'sites.s.consent.privacy_url', 'expected a path such as "/privacy" or an http(s) URL, got int 5'),
    ('privacy_url language', T("consent", 'privacy_url = { xx = "/p" }'),
     'sites.s.consent.privacy_url.xx', 'unknown language; use one of nl, en, de, fr'),
    ('privacy_url per language', T("consent", 'privacy_url = { en = "p" }'),
     'sites.s.consent.privacy_url.en', 'expected a path such as "/privacy" or an http(s) URL, got the string \'p\''),
    ('cookie_name', T("consent", 'cookie_name = "a b"'),
     'sites.s.consent.cookie_name', "expected a cookie name, got the string 'a b'"),
    ('database purposes', T("consent", 'database_purposes = "english"'),
     'sites.s.consent.database_purposes', "must be one of category, original, got the string 'english'"),
    ('language', T("consent", 'default_language = "es"'),
     'sites.s.consent.default_language', "must be one of nl, en, de, fr, got the string 'es'"),
    ('theme colour', T("consent.theme", 'background = "red"'),
     'sites.s.consent.theme.background', "expected a colour as #rgb or #rrggbb, got 'red'"),
    ('theme type', T("consent.theme", 'background = 5'),
     'sites.s.consent.theme.background', 'expected a text, got int 5'),
    ('theme contrast', T("consent.theme", 'background = "#ffffff"\ntext = "#eeeeee"'),
     'sites.s.consent.theme.text', '#eeeeee on background #ffffff has a contrast of 1.16:1; WCAG AA needs 4.5:1'),
    ('reopen position', T("consent.theme", 'reopen_position = "left"'),
     'sites.s.consent.theme.reopen_position',
     "must be one of bottom-left, bottom-right, top-left, top-right, end, none, got the string 'left'"),
    ('theme unknown', T("consent.theme", 'colour = "#fff"'),
     'sites.s.consent.theme.colour', 'unknown key' + _valid('sites.NAME.consent.theme')),
]


@pytest.mark.parametrize(("case", "text", "key", "reason"), ERRORS, ids=[case[0] for case in ERRORS])
def test_every_configuration_error_names_the_key_and_the_fix(case: str, text: str, key: str, reason: str) -> None:
    import tomllib

    from consentproxy.config.loader import config_from_dict

    with pytest.raises(ConfigError) as error:
        config_from_dict(tomllib.loads(text), "c.toml", Path("/srv/site"))
    assert f"c.toml: {key}: {reason}" in [str(problem) for problem in error.value.problems]


def test_an_unknown_banner_text_lists_the_text_keys(tmp_path: Path) -> None:
    """The reported case: `description` is no banner text; `text` is, and the message says so."""
    path = tmp_path / "c.toml"
    path.write_text(T("consent.texts", 'description = "Wij gebruiken cookies"'))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    [problem] = error.value.problems
    assert problem.key == "sites.s.consent.texts.description"
    valid = problem.reason.split("; valid keys here: ", 1)[1].split(", ")
    assert {"text", "title", "accept_all"} <= set(valid)


@pytest.mark.parametrize(("content", "key", "reason"), [
    (None, "(file)", "cannot be read: No such file or directory; check the path given with -c"),
    (b"\xff\xfe", "(file)", "is not UTF-8 text; save it as UTF-8"),
    (b"[server\n", "(syntax)", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
])
def test_a_file_that_cannot_be_read(tmp_path: Path, content: bytes | None, key: str, reason: str) -> None:
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert [str(problem) for problem in error.value.problems] == [f"{path}: {key}: {reason}"]


def _problem_statements() -> dict[str, set[int]]:
    """File → the lines of every simple statement in the loader that makes a problem or raises ValueError."""
    import ast

    import consentproxy.config.consent
    import consentproxy.config.loader
    import consentproxy.config.reader

    found: dict[str, set[int]] = {}
    for module in (consentproxy.config.loader, consentproxy.config.consent, consentproxy.config.reader):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text("utf-8"))
        lines: set[int] = set()
        for statement in ast.walk(tree):
            if not isinstance(statement, ast.stmt) or hasattr(statement, "body"):
                continue  # compound statements: their inner statements count
            for node in ast.walk(statement):
                makes = isinstance(node, ast.Call) and (
                    (isinstance(node.func, ast.Attribute) and node.func.attr == "problem")
                    or (isinstance(node.func, ast.Name) and node.func.id in ("Problem", "ValueError")))
                if makes:
                    lines.add(statement.lineno)
                    break
        found[module.__file__] = lines
    return found


def test_every_error_the_loader_can_give_is_among_those_tested(tmp_path: Path) -> None:
    """Runs every case above under a line tracer: each statement that makes a problem must have run, so a new
    message cannot go untested (add a case to ERRORS for it)."""
    import tomllib

    from consentproxy.config.loader import config_from_dict

    wanted = _problem_statements()
    ran: dict[str, set[int]] = {file: set() for file in wanted}

    def trace(frame: Any, event: str, arg: object) -> Any:
        lines = ran.get(frame.f_code.co_filename)
        if lines is None:
            return None
        def local(frame: Any, event: str, arg: object) -> Any:
            if event == "line":
                lines.add(frame.f_lineno)
            return local
        return local

    sys.settrace(trace)
    try:
        for _, text, _, _ in ERRORS:
            with pytest.raises(ConfigError):
                config_from_dict(tomllib.loads(text), "c.toml", tmp_path)
        for content in (None, b"\xff\xfe", b"[server\n"):
            path = tmp_path / f"file-{len(content or b'')}.toml"
            if content is not None:
                path.write_bytes(content)
            with pytest.raises(ConfigError):
                load_config(path)
    finally:
        sys.settrace(None)
    untested = {Path(file).name: sorted(lines - ran[file]) for file, lines in wanted.items() if lines - ran[file]}
    assert not untested, f"error messages no case in ERRORS produces (file: lines): {untested}"
