"""Numbered schema migrations, shared by SQLite and PostgreSQL.

Each store applies, on open and inside one exclusive transaction, every
migration whose number `schema_migrations` does not hold yet. The SQL is
written in the subset both databases accept (TEXT, INTEGER, BIGINT, partial
indexes); a migration that needs a dialect of its own gets per-dialect
statements. Never edit a released migration: add the next number.

Times are integer milliseconds since the epoch (exact, indexable on both);
choices and notice content are canonical JSON text, so both backends return
the very bytes that were hashed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consentproxy.records.stats import backfill


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    sqlite: tuple[str, ...] = field(default=())  # extra statements, per dialect
    postgres: tuple[str, ...] = field(default=())
    #: run (with the open transaction) after the statements: for data a migration must compute in Python
    then: Callable[[Any], None] | None = None

    def for_dialect(self, dialect: str) -> tuple[str, ...]:
        return self.statements + (self.sqlite if dialect == "sqlite" else self.postgres)


def _admin_audit(id_column: str) -> tuple[str, ...]:
    """The admin audit table. It never holds a token (only its configured name) nor a raw consent id
    (only `subject_commitment` of it), so it may outlive every erasure unchanged."""
    return (
        f"""CREATE TABLE admin_audit (
            {id_column},
            time_ms BIGINT NOT NULL,
            token TEXT NOT NULL,
            scope TEXT NOT NULL,
            action TEXT NOT NULL,
            site TEXT,
            subject TEXT,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL)""",
        "CREATE INDEX admin_audit_time ON admin_audit (time_ms)",
        "CREATE INDEX admin_audit_subject ON admin_audit (subject) WHERE subject IS NOT NULL",
    )


CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "consent log: notices, events, chain heads, checkpoints", (
        """CREATE TABLE notices (
            id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            revision INTEGER NOT NULL,
            created_ms BIGINT NOT NULL,
            content TEXT NOT NULL)""",
        # One row per site: the lock that orders appends, and the head they continue.
        """CREATE TABLE chain_heads (
            site TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL)""",
        """CREATE TABLE events (
            site TEXT NOT NULL,
            seq BIGINT NOT NULL,
            record_id TEXT NOT NULL UNIQUE,
            schema_version INTEGER NOT NULL,
            time_ms BIGINT NOT NULL,
            notice_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            method TEXT NOT NULL,
            choices TEXT NOT NULL,
            expires_ms BIGINT NOT NULL,
            regime TEXT,
            idempotency_key TEXT,
            principal TEXT,
            ip TEXT,
            ua TEXT,
            country TEXT,
            salt TEXT,
            principal_c TEXT NOT NULL,
            ip_c TEXT,
            ua_c TEXT,
            country_c TEXT,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (site, seq))""",
        "CREATE UNIQUE INDEX events_idempotency ON events (site, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX events_principal ON events (site, principal) WHERE principal IS NOT NULL",
        "CREATE INDEX events_time ON events (site, time_ms)",
        """CREATE TABLE checkpoints (
            site TEXT NOT NULL,
            seq BIGINT NOT NULL,
            kind TEXT NOT NULL,
            head TEXT NOT NULL,
            time_ms BIGINT NOT NULL,
            key_id TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (site, seq, kind))""",
    )),
    # Only the id column differs: each dialect's own auto-increment, so the shared SQL creates nothing first.
    Migration(2, "admin audit: every admin API action, rights requests included", (),
              sqlite=_admin_audit("id INTEGER PRIMARY KEY AUTOINCREMENT"),
              postgres=_admin_audit("id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")),
    # The inventory (cookies and third-party hosts each site's visitors meet) and the consent statistics'
    # daily rollup (see stats.py), both shared by every instance on the store; no personal data in either.
    Migration(3, "inventory and daily consent statistics", (
        """CREATE TABLE inventory (
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            set_by TEXT NOT NULL,
            category TEXT NOT NULL,
            source TEXT NOT NULL,
            service TEXT NOT NULL,
            count BIGINT NOT NULL,
            before_consent BIGINT NOT NULL,
            blocked BIGINT NOT NULL,
            first_seen_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL,
            details TEXT NOT NULL,
            PRIMARY KEY (site, kind, name, set_by))""",
        # day: days since 1970-01-01 (UTC), i.e. time_ms / 86400000; outcome: given, refused, withdrawn
        """CREATE TABLE consent_daily (
            site TEXT NOT NULL,
            day INTEGER NOT NULL,
            category TEXT NOT NULL,
            outcome TEXT NOT NULL,
            method TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (site, day, category, outcome, method))""",
    ), then=backfill),
)

LATEST = MIGRATIONS[-1].version
