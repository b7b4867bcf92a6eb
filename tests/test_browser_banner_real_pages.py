"""Issue 22's acceptance on real pages, in chromium: the banner usable on 20 pages spread over the corpus.

load_tests/browser_banner.py's checks (see its docstring; `--pages all` there runs the whole corpus): each page
of tests/data/real-pages through a real proxy process, requests to other origins aborted; the three buttons
visible in the viewport and topmost at their centre, a click on *Reject all* recorded (200 from the page's
own origin) and the banner gone, the page visible afterwards. Every page must pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import CHROMIUM, ROOT

sys.path.insert(0, str(ROOT / "load_tests"))
import browser_banner
import browser_leaks

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (`make system-deps` installs it)"),
    pytest.mark.timeout(900),  # ~1 min on a quiet machine; much longer under a load of 10+
]

PAGES = browser_leaks.choose_pages("20")
JOBS = 2


@pytest.fixture(scope="module")
def outcomes() -> dict[str, browser_banner.Outcome]:
    return {result.name: result for result in browser_banner.check_corpus(PAGES, JOBS, 1.0, 45, progress=False)}


def test_the_subset_is_spread_over_the_corpus() -> None:
    assert len(PAGES) == 20 == len(set(PAGES))
    assert PAGES[0] == browser_leaks.ALL_PAGES[0] and PAGES[-1] in browser_leaks.ALL_PAGES[-10:]


@pytest.mark.parametrize("name", PAGES)
def test_the_banner_is_usable_on_a_real_page(outcomes: dict[str, browser_banner.Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.failures == [], (outcome.failures, outcome.buttons)
    assert outcome.decision_status == 200 and outcome.shown_after
