"""The adversarial suite's fixtures and its tally.

Every test item here is one variant of one class of attack (`@pytest.mark.attack("class")`, or the
module's `pytestmark`); at the end of the session the tally of variants tried and failed per class is
printed (and written to `.cache/adversarial-tally.txt`), which `make soak` shows and the README quotes.
`CONSENTPROXY_SOAK=1` makes the long run: more random variants and many more slow clients.
"""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Proxy, launch_proxy

from .recorder import Recorder, recording_upstream

SOAK = os.environ.get("CONSENTPROXY_SOAK") == "1"
TALLY_FILE = ROOT / ".cache" / "adversarial-tally.txt"

#: class -> [tried, passed, failed, expected failures (known open bugs, xfail)]
_tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
#: what a normal client measured while an attack ran: attack -> its latencies in seconds (reported, never
#: asserted: the tests assert only that it was answered within the limits' deadlines)
LATENCIES: dict[str, list[float]] = defaultdict(list)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "attack(name): the class of attack a variant of tests/adversarial belongs to")


def _attack_class(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("attack")
    return str(marker.args[0]) if marker is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    name = _attack_class(item)
    if name is not None:
        row = _tally[name]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            row[0] += 1
            if hasattr(report, "wasxfail"):
                row[3] += 1 if report.skipped else 0
                row[2] += 0 if report.skipped else 1  # an xfail that passed (strict): a failure
            elif report.passed:
                row[1] += 1
            elif report.failed:
                row[2] += 1
            else:
                row[0] -= 1  # skipped: not tried
    return report


def tally_lines() -> list[str]:
    if not _tally:
        return []
    width = max(len(name) for name in _tally)
    lines = [f"{'class':<{width}}  variants  passed  failed  known-open (xfail)"]
    totals = [0, 0, 0, 0]
    for name in sorted(_tally):
        row = _tally[name]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        lines.append(f"{name:<{width}}  {row[0]:>8}  {row[1]:>6}  {row[2]:>6}  {row[3]:>6}")
    lines.append(f"{'total':<{width}}  {totals[0]:>8}  {totals[1]:>6}  {totals[2]:>6}  {totals[3]:>6}")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = tally_lines()
    if not lines:
        return
    terminalreporter.section("adversarial suite: variants tried per class" + (" (soak)" if SOAK else ""))
    for line in lines:
        terminalreporter.write_line(line)
    latency = latency_lines()
    if latency:
        terminalreporter.write_line("")
        for line in latency:
            terminalreporter.write_line(line)
    TALLY_FILE.parent.mkdir(exist_ok=True)
    TALLY_FILE.write_text("\n".join([*lines, "", *latency]) + "\n")


def latency_lines() -> list[str]:
    lines = []
    for attack in sorted(LATENCIES):
        values = sorted(LATENCIES[attack])
        if not values:
            continue
        p50 = values[len(values) // 2]
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        lines.append(f"normal client during {attack}: {len(values)} requests answered, p50 {p50 * 1000:.0f} ms, "
                     f"p99 {p99 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms")
    return lines


# -- fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """The site: a recording upstream, one per module."""
    with recording_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def canary() -> Iterator[Recorder]:
    """A listener no configuration names: whatever a request says, the proxy must never connect to it."""
    with recording_upstream() as listener:
        yield listener


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """`proxies(sites_toml, server={...}, limits={...})`: a proxy process that lives for the module."""
    base: Path = tmp_path_factory.mktemp("adversarial")
    started: list[Proxy] = []

    def start(sites: str, server: dict[str, Any] | None = None, limits: dict[str, Any] | None = None) -> Proxy:
        proxy = launch_proxy(base, len(started), sites, server, limits)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(signal.SIGKILL if proxy.process.poll() is None else signal.SIGTERM, timeout=10)
