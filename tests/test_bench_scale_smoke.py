"""Smoke test of load_tests/bench_scale.py at 200 sites: it runs end to end, stops by itself and reports
every figure. No timing is asserted (the machine is shared); what is asserted is behaviour: no request
failed during the reloads, each reload reused every site but the changed one, and two workers were read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "load_tests" / "bench_scale.py"


def _missing_tools() -> list[str]:
    def found(name: str) -> bool:
        return shutil.which(name) is not None or any(
            os.access(Path(directory) / name, os.X_OK) for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"))

    return [name for name in ("nginx", "wrk") if not found(name)]


pytestmark = pytest.mark.skipif(
    bool(_missing_tools()),
    reason=f"benchmark tools not installed: {', '.join(_missing_tools())} (`make system-deps` installs them)",
)


@pytest.mark.timeout(400)
def test_bench_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sites", "1,200", "--reloads", "3", "--duration", "1", "--warmup", "1",
         "--pss-workers", "2", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=380, check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(out.read_text())
    rows = {row["sites"]: row for row in report["results"]}
    assert set(rows) == {1, 200}
    for count, row in rows.items():
        assert row["start_s"] > 0 and row["memory_after_start_kb"][0]["pss"] > 0, count
        assert row["saturation"]["requests"] > 0 and row["saturation"]["errors"] == 0, count
        assert row["saturation"]["non_2xx_3xx"] == 0, count
        reloads = row["reloads"]
        assert reloads["count"] == 3 and len(reloads["seconds"]) == 3, count
        assert reloads["requests_during"] > 0, count
        assert reloads["errors"] == 0 and reloads["non_2xx_3xx"] == 0, reloads  # no request failed
        assert reloads["rss_kb_after_first"] and reloads["rss_kb_after_last"], count
    assert rows[200]["reloads"]["sites_reused_last"] == 199  # one table changed: one site rebuilt
    assert report["pss"]["workers"] == 2 and len(report["pss"]["memory_kb"]) == 2
    assert {route["sites"] for route in report["routing"]} == {1, 200}
    assert "| 200 |" in proc.stdout
