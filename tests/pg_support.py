"""The PostgreSQL the tests use (127.0.0.1:5432, database test, trust auth; `make test` starts it)."""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

PG_CANDIDATES = [
    os.environ.get("CONSENTPROXY_TEST_POSTGRES", ""),
    "postgresql://postgres@127.0.0.1:5432/test",
    f"postgresql://{getpass.getuser()}@127.0.0.1:5432/test",
]
_pg_base: list[str] = []


def pg_base() -> str:
    """The first PostgreSQL URL that connects; the suite needs PostgreSQL (`make test` starts it)."""
    if not _pg_base:
        errors = []
        for candidate in filter(None, PG_CANDIDATES):
            try:
                psycopg.connect(candidate, connect_timeout=5).close()
            except psycopg.Error as exc:
                errors.append(f"{candidate}: {exc}")
                continue
            _pg_base.append(candidate)
            break
        else:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 (database test) is needed: " + "; ".join(errors))
    return _pg_base[0]


@contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A fresh schema, dropped afterwards; yields the URL whose search_path is that schema."""
    base = pg_base()
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
