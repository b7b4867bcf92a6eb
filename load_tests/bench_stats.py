#!/usr/bin/env python3
"""Benchmark: consent statistics of a year of events on PostgreSQL, as `GET /api/sites/{site}/stats` reads them.

What: a fresh schema on the test PostgreSQL (127.0.0.1:5432, database test;
CONSENTPROXY_TEST_POSTGRES or --url to change), migrated by the store itself.
`--events` consent events (1,000,000 by default) of one site spread over
`--days` days (365) are written with COPY into the store's `events` table (a
realistic mix of methods and choices; chain fields are placeholders, the
statistics do not read them), then the daily rollup is built by the very
code the schema migration runs on an existing log (`records.stats.backfill`,
which shares its counting with `RecordStore.append`). Then the call the admin
API makes — `RecordStore.stats(site, since, until)` over the whole window —
plus its JSON and CSV encodings is timed `--repeat` times on a fresh
connection. The schema is dropped at the end, whatever happens.

Why: issue 18 asks that the statistics of 1,000,000 generated events on
PostgreSQL answer in under a second (and a year of 10 million: the rollup's
size depends on days x categories x outcomes x methods, not on the events).
The counts are checked against the generator's own tally, so a fast wrong
answer fails.

    python load_tests/bench_stats.py [--events 1000000] [--days 365] [--repeat 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import secrets
import statistics as stats_math
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consentproxy.config.model import CATEGORY_IDS
from consentproxy.records import open_store
from consentproxy.records.model import canonical, event_type_for
from consentproxy.records.stats import OUTCOMES, backfill, outcomes

SITE = "bench.example"
NOTICE = "b" * 64
DAY_MS = 86_400_000
COLUMNS = ("site", "seq", "record_id", "schema_version", "time_ms", "notice_id", "event_type", "method", "choices",
           "expires_ms", "principal", "principal_c", "prev_hash", "hash")
# What visitors do, roughly as consent-management vendors report it: most accept or reject on the first layer.
METHODS = (("accept_all", 0.52), ("reject_all", 0.30), ("save_selection", 0.12), ("withdraw", 0.03),
           ("gpc_signal", 0.03))


def base_url() -> str:
    for candidate in (os.environ.get("CONSENTPROXY_TEST_POSTGRES", ""), "postgresql://postgres@127.0.0.1:5432/test",
                      f"postgresql://{getpass.getuser()}@127.0.0.1:5432/test"):
        if not candidate:
            continue
        try:
            psycopg.connect(candidate, connect_timeout=5).close()
        except psycopg.Error:
            continue
        return candidate
    raise SystemExit("no PostgreSQL at 127.0.0.1:5432 (database test); pass --url")


def decision(rng: random.Random) -> tuple[str, str, dict[str, bool]]:
    """(event type, method, choices) of one generated visitor decision."""
    method = rng.choices([m for m, _ in METHODS], [w for _, w in METHODS])[0]
    optional = [c for c in CATEGORY_IDS if c != "necessary"]
    if method == "accept_all":
        granted = set(optional)
    elif method == "save_selection":
        granted = {c for c in optional if rng.random() < 0.5}
    else:
        granted = set()
    choices = {c: c == "necessary" or c in granted for c in CATEGORY_IDS}
    return event_type_for(method, choices), method, choices  # type: ignore[arg-type]


def generate(conn: psycopg.Connection[Any], count: int, start: date, days: int,
             seed: int) -> dict[tuple[int, str, str], int]:
    """COPY `count` events into `events`; returns the expected totals (day, category, outcome) -> count."""
    rng = random.Random(seed)
    start_ms = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
    span = days * DAY_MS
    times = sorted(start_ms + rng.randrange(span) for _ in range(count))  # the log's times rise with its seqs
    expected: dict[tuple[int, str, str], int] = {}
    placeholder = "0" * 64
    with conn.cursor() as cur, cur.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for seq, time_ms in enumerate(times, start=1):
            event_type, method, choices = decision(rng)
            for category, outcome in outcomes(event_type, choices):
                key = (time_ms // DAY_MS, category, outcome)
                expected[key] = expected.get(key, 0) + 1
            copy.write_row((SITE, seq, f"bench-{seq}", 1, time_ms, NOTICE, event_type, method,
                            canonical(choices).decode(), time_ms + 180 * DAY_MS, f"p{seq}", placeholder,
                            placeholder, placeholder))
    conn.execute("INSERT INTO chain_heads (site, seq, hash) VALUES (%s, %s, %s)", (SITE, count, placeholder))
    return expected


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = args.url or base_url()
    schema = f"bench_stats_{secrets.token_hex(6)}"
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    report: dict[str, Any] = {"events": args.events, "days": args.days, "repeat": args.repeat, "schema": schema}
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        open_store(url).close()  # the schema, as the proxy creates it
        until = date(2026, 1, 1) + timedelta(days=args.days - 1)
        since = date(2026, 1, 1)
        began = time.perf_counter()
        with psycopg.connect(url) as conn:
            expected = generate(conn, args.events, since, args.days, args.seed)
        report["insert_seconds"] = round(time.perf_counter() - began, 2)
        began = time.perf_counter()
        with open_store(url) as store, store._write() as tx:  # the migration's own backfill, on this log
            backfill(tx)
        report["rollup_seconds"] = round(time.perf_counter() - began, 2)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT COUNT(*) FROM consent_daily").fetchone()
        report["rollup_rows"] = int(row[0]) if row else 0
        timings: list[float] = []
        found = None
        for _ in range(args.repeat):
            with open_store(url, migrate=False) as store:  # a fresh connection each time: nothing cached here
                began = time.perf_counter()
                found = store.stats(SITE, since, until)
                body = orjson.dumps(found.to_dict())
                csv_text = found.to_csv()
                timings.append(time.perf_counter() - began)
        assert found is not None
        counted = {(day.toordinal() - date(1970, 1, 1).toordinal(), category, outcome): getattr(counts, outcome)
                   for day, per in found.days.items() for category, counts in per.items() for outcome in OUTCOMES}
        counted = {key: value for key, value in counted.items() if value}
        report.update({
            "window_days": (until - since).days + 1,
            "stats_seconds": {"first": round(timings[0], 4), "median": round(stats_math.median(timings), 4),
                              "max": round(max(timings), 4)},
            "json_bytes": len(body), "csv_bytes": len(csv_text.encode()),
            "counts_match": counted == expected,
            "decisions_counted": sum(counted.values()),
        })
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--url", help="a PostgreSQL URL (a schema is created in it and dropped)")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    if args.events < 1 or args.days < 1 or args.repeat < 1:
        parser.error("--events, --days and --repeat must be at least 1")
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    seconds = report["stats_seconds"]
    print(f"{report['events']:,} events over {report['days']} days: COPY {report['insert_seconds']} s, rollup "
          f"{report['rollup_seconds']} s ({report['rollup_rows']:,} rows)")
    print(f"stats for {report['window_days']} days (store call + JSON + CSV): first {seconds['first'] * 1000:.1f} ms, "
          f"median {seconds['median'] * 1000:.1f} ms, max {seconds['max'] * 1000:.1f} ms ({report['repeat']} runs, "
          f"each on a fresh connection); counts match the generator: {report['counts_match']}")
    return 0 if report["counts_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
