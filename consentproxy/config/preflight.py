"""What `serve` would refuse, found before it runs: the data directory, the store, the listen addresses.

`check-config` runs every check here without changing anything (a probe file
in a directory is written and removed again); `serve` runs them too, after
creating a missing data directory whose parent exists, so both commands name
the same key and the same fix. Each reason ends with what to do.
"""

from __future__ import annotations

import errno
import getpass
import http.client
import json
import os
import sqlite3
import tempfile
from pathlib import Path

from consentproxy.config.model import Config, ListenAddress
from consentproxy.config.reader import Problem

DATA_DIR_KEY = "server.data_dir"
STORE_KEY = "store.url"
STORE_FILE = "consent-records.db"


def _file(config: Config) -> str:
    return str(config.source) if config.source else "(command line)"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return str(os.getuid())


def ensure_data_dir(config: Config) -> Path | None:
    """Create the data directory when only its last part is missing, as the quick start does.

    Returns the directory when it was created. A missing parent is left for
    `data_dir_problems` to report: a typo in a path must not grow a tree.
    """
    path = config.server.data_dir
    if path.exists() or not path.parent.is_dir():
        return None
    try:
        path.mkdir(mode=0o700)
    except OSError:
        return None  # reported by data_dir_problems with the reason and the fix
    return path


def data_dir_problems(config: Config) -> list[Problem]:
    """The data directory exists (or can be created in an existing parent), is writable, and SQLite can lock there."""
    path = config.server.data_dir
    file = _file(config)
    user = _user()
    if path.exists():
        if not path.is_dir():
            return [Problem(file, DATA_DIR_KEY, f"{path} is a file, not a directory; point data_dir at a "
                                                f"directory, or move the file away and run: mkdir -p {path}")]
        if not os.access(path, os.W_OK | os.X_OK):
            return [Problem(file, DATA_DIR_KEY, f"{path} is not writable by user {user}; make it so: "
                                                f"chown -R {user} {path} (or choose another data_dir)")]
        probe_dir = path
    elif path.parent.is_dir():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return [Problem(file, DATA_DIR_KEY, f"{path} does not exist and user {user} may not create it in "
                                                f"{path.parent}; create it: mkdir -p {path} && "
                                                f"chown {user} {path}")]
        probe_dir = path.parent  # serve creates it there
    else:
        return [Problem(file, DATA_DIR_KEY, f"{path} does not exist, nor does its parent {path.parent}; "
                                            f"create it: mkdir -p {path}")]
    reason = sqlite_lock_problem(probe_dir)
    if reason:
        return [Problem(file, DATA_DIR_KEY, f"{path}: {reason}")]
    return []


def sqlite_lock_problem(directory: Path) -> str | None:
    """Write, lock and remove a probe database, as the store would (WAL, an immediate transaction).

    Network filesystems (NFS, SMB, some FUSE mounts) break SQLite's locks,
    which shows as 'database is locked' or 'disk I/O error' at the first
    decision; found here instead.
    """
    try:
        handle, name = tempfile.mkstemp(prefix=".consentproxy-check-", suffix=".db", dir=directory)
    except OSError as exc:
        return f"cannot write a file there ({exc.strerror}); check its permissions and free space"
    os.close(handle)
    probe = Path(name)
    try:
        conn = sqlite3.connect(probe, timeout=2, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE probe (x INTEGER)")
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return (f"SQLite cannot lock a database there ({exc}); use a directory on a local filesystem "
                "(not NFS, SMB or a FUSE mount), or a PostgreSQL store ([store] url)")
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{probe}{suffix}").unlink(missing_ok=True)
    return None


def store_problems(config: Config, data_dir_ok: bool) -> list[Problem]:
    """The consent record store can be opened and migrated, checked without migrating it."""
    from consentproxy.records.migrations import LATEST

    url = config.store.url
    file = _file(config)
    if not url:
        if not data_dir_ok:
            return []  # the data directory's own problem says it all
        return _sqlite_file_problems(file, DATA_DIR_KEY, config.server.data_dir / STORE_FILE, LATEST)
    if url.startswith("sqlite:"):
        from consentproxy.records.store import _sqlite_path

        try:
            path = Path(_sqlite_path(url).partition("?")[0])
        except ValueError as exc:
            return [Problem(file, STORE_KEY, f"{exc}")]
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            return [Problem(file, STORE_KEY, f"the directory of {path} does not exist; create it: "
                                             f"mkdir -p {directory.absolute()}")]
        if not path.exists():
            if not os.access(directory, os.W_OK | os.X_OK):
                return [Problem(file, STORE_KEY, f"{directory} is not writable by user {_user()}, so {path.name} "
                                                 f"cannot be created there; chown {_user()} {directory}")]
            reason = sqlite_lock_problem(directory)
            return [Problem(file, STORE_KEY, f"{directory}: {reason}")] if reason else []
        return _sqlite_file_problems(file, STORE_KEY, path, LATEST)
    return _postgres_problems(file, url, LATEST)


def _sqlite_file_problems(file: str, key: str, path: Path, latest: int) -> list[Problem]:
    """An existing SQLite file: a database, writable, at a schema version this consentproxy knows."""
    if not path.exists():
        return []
    if not os.access(path, os.R_OK | os.W_OK):
        return [Problem(file, key, f"{path} is not readable and writable by user {_user()}; "
                                   f"chown {_user()} {path}")]
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=2)
        try:
            has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchone()
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() if has_table else None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [Problem(file, key, f"{path} cannot be read as an SQLite database ({exc}); move it away "
                                   "(serve then starts a new consent log) or restore it from a backup")]
    version = int(row[0]) if row and row[0] is not None else 0
    if version > latest:
        return [Problem(file, key, f"{path} is at schema version {version}, newer than this consentproxy knows "
                                   f"({latest}); upgrade consentproxy")]
    return []


def _postgres_problems(file: str, url: str, latest: int) -> list[Problem]:
    """Connect, and see that the user may create the tables when the schema is not there yet."""
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Problem(file, STORE_KEY, f"cannot connect to PostgreSQL: {reason}; check the host, port, user and "
                                         "database in the URL, and that the server runs (pg_isready -d URL)")]
    try:
        row = conn.execute("SELECT current_user, current_schema(), current_database(), "
                           "to_regclass('schema_migrations') IS NOT NULL").fetchone()
        assert row is not None
        user, schema, database, migrated = row
        if schema is None:
            return [Problem(file, STORE_KEY, f"the URL's search_path names no schema that exists in database "
                                             f"{database}; create it: CREATE SCHEMA name AUTHORIZATION {user}")]
        version = 0
        if migrated:
            found = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            version = int(found[0]) if found and found[0] is not None else 0
        if version > latest:
            return [Problem(file, STORE_KEY, f"the database schema is at version {version}, newer than this "
                                             f"consentproxy knows ({latest}); upgrade consentproxy")]
        if version < latest:
            allowed = conn.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()
            if not (allowed and allowed[0]):
                return [Problem(file, STORE_KEY, f"user {user} may not create tables in schema {schema} of "
                                                 f"database {database}, which the first start does; grant it: "
                                                 f"GRANT CREATE ON SCHEMA {schema} TO {user}")]
    except psycopg.Error as exc:
        return [Problem(file, STORE_KEY, f"PostgreSQL: {str(exc).strip()}")]
    finally:
        conn.close()
    return []


def listen_problems(config: Config, running_ok: bool = True) -> tuple[list[Problem], list[str]]:
    """Bind every listen address once; with `running_ok`, an address in use by this very proxy (its admin
    listener answers /readyz) is a note, not a problem: that is a check before a reload."""
    from consentproxy.server.sockets import bind_socket

    file = _file(config)
    addresses: list[tuple[str, ListenAddress]] = [
        (f"server.listen[{index}]", address) for index, address in enumerate(config.server.listen)]
    if config.server.admin_listen is not None:
        addresses.append(("server.admin_listen", config.server.admin_listen))
    problems: list[Problem] = []
    in_use: list[tuple[str, ListenAddress]] = []
    for key, address in addresses:
        try:
            bind_socket(address).close()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                in_use.append((key, address))
            elif exc.errno == errno.EACCES:
                problems.append(Problem(file, key, f"{address}: ports below 1024 need root or "
                                                   "CAP_NET_BIND_SERVICE; grant it (setcap cap_net_bind_service=+ep "
                                                   "on the Python binary) or listen on a port from 1024 up"))
            elif exc.errno == errno.EADDRNOTAVAIL:
                problems.append(Problem(file, key, f"{address}: this machine has no address {address.host}; use "
                                                   "one it has (ip -brief address), or 0.0.0.0 for all"))
            else:
                problems.append(Problem(file, key, f"{address}: cannot listen there ({exc.strerror or exc})"))
    if in_use and running_ok and _running_here(config.server.admin_listen):
        return problems, [f"{', '.join(str(a) for _, a in in_use)} in use by the consentproxy answering on "
                          f"{config.server.admin_listen}: fine for a reload (kill -HUP), not for a second serve"]
    problems += [Problem(file, key, f"{address} is already in use; stop what listens there "
                                    f"(ss -ltnp 'sport = :{address.port}') or choose another port")
                 for key, address in in_use]
    return problems, []


def _running_here(admin: ListenAddress | None) -> bool:
    """Whether a consentproxy answers /readyz on this admin address."""
    if admin is None:
        return False
    host = "127.0.0.1" if admin.host == "0.0.0.0" else "::1" if admin.host == "::" else admin.host
    try:
        conn = http.client.HTTPConnection(host, admin.port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            answer = conn.getresponse()
            body = json.loads(answer.read(65536) or b"{}")
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return isinstance(body, dict) and body.get("status") in ("ready", "not ready")


def preflight(config: Config, ports: bool = True, running_ok: bool = True) -> tuple[list[Problem], list[str]]:
    """Every problem `serve` would stop at beyond the file itself and its secrets, and notes worth printing."""
    problems = data_dir_problems(config)
    problems += store_problems(config, data_dir_ok=not problems)
    notes: list[str] = []
    if ports:
        found, notes = listen_problems(config, running_ok)
        problems += found
    return problems, notes
