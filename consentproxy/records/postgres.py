"""The shared store: PostgreSQL, for several proxy instances writing one log.

Order across instances comes from the per-site row in `chain_heads`: an
append reads it with `SELECT … FOR UPDATE` inside its transaction, so a second
instance appending to the same site waits until the first commits and then
continues from the new head; different sites do not wait for each other.
Heads are locked in site order, so two multi-site batches cannot deadlock.
Migrations run under a transaction-scoped advisory lock, so instances starting
together do not race to create the schema.

A lost connection (server restart, network) surfaces as StoreUnavailable and
the next call connects again; lock waits are bounded by lock_timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from consentproxy.records.migrations import LATEST
from consentproxy.records.store import RecordStore, StoreError, StoreUnavailable, Tx

# pg_advisory_xact_lock key for migrations: any constant shared by every instance.
MIGRATION_LOCK_ID = 0x636F6E73656E74  # "consent"
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_LOCK_TIMEOUT_MS = 10_000

Connection = psycopg.Connection[tuple[Any, ...]]


def _sql(query: str) -> str:
    return query.replace("?", "%s")


class _PostgresTx:
    def __init__(self, conn: Connection) -> None:
        self._cur = conn.cursor()

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._cur.execute(_sql(sql), params or None).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(_sql(sql), params or None).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._cur.execute(_sql(sql), params or None).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(_sql(sql), rows)


def _translate(exc: psycopg.Error) -> StoreError:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Connection refused or lost, server shutting down, disk full, lock or statement timeout.
        return StoreUnavailable(f"PostgreSQL store: {str(exc).strip() or type(exc).__name__}")
    return StoreError(f"PostgreSQL store: {str(exc).strip() or type(exc).__name__}")


class PostgresStore(RecordStore):
    dialect = "postgres"
    select_head = "SELECT seq, hash FROM chain_heads WHERE site = ? FOR UPDATE"
    row_lock = " FOR UPDATE"

    def __init__(self, url: str, migrate: bool = True, lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> None:
        self.url = url
        self.lock_timeout_ms = lock_timeout_ms
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._connection()
        try:
            if migrate:
                self.migrate()
            elif self.schema_version() != LATEST:
                raise StoreError(f"PostgreSQL store is at schema version {self.schema_version()}, expected {LATEST}")
        except BaseException:
            self.close()
            raise

    def _connection(self) -> Connection:
        """The open connection, connecting (again) if there is none or it broke."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()
            self._conn = None
        given = conninfo_to_dict(self.url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        if "application_name" not in given:
            extra["application_name"] = "consentproxy"
        try:
            conn = psycopg.connect(self.url, autocommit=True, **extra)
            row = conn.execute("SHOW lock_timeout").fetchone()
            if row is not None and row[0] == "0":  # unless the URL set one: never wait forever for a head
                conn.execute(f"SET lock_timeout = {int(self.lock_timeout_ms)}")
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        self._conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    yield _PostgresTx(conn)
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._lock:
            conn = self._connection()
            try:
                yield _PostgresTx(conn)
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    def _migration_lock(self, tx: Tx) -> None:
        tx.one("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_ID,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None
