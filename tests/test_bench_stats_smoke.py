"""Smoke test of load_tests/bench_stats.py: a few hundred events end to end on PostgreSQL.

No assertion on timings (the machine is shared and noisy): the report is
complete, the statistics match the generator's own tally, and the schema it
made is gone afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from pg_support import pg_base

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "load_tests" / "bench_stats.py"


@pytest.mark.timeout(240)
def test_bench_stats_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", "400", "--days", "20", "--repeat", "2", "--url", pg_base(),
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=220, check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["events"] == 400 and report["window_days"] == 20
    assert report["counts_match"] is True
    # every generated decision counts for three optional categories, except the expired ones (none generated)
    assert report["decisions_counted"] == 400 * 3
    assert report["rollup_rows"] > 0
    assert set(report["stats_seconds"]) == {"first", "median", "max"}
    assert "stats for 20 days" in proc.stdout
    with psycopg.connect(pg_base()) as conn:
        left = conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (report["schema"],)).fetchall()
    assert left == []
