"""The banner preview documents (issue 18 item 5) and the console's chart, without a server: per language, both
layers, self-contained; `consentproxy preview --banner` writes them (and PNGs where chromium is); the chart has
a point per day and escapes what it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import ROOT

from consentproxy.admin.console.chart import DayCounts, count_chart, counts_table, legend, rate_chart
from consentproxy.banner.preview import banner_previews
from consentproxy.config import load_config
from consentproxy.config.model import LANGUAGES

CHROMIUM = Path("/usr/bin/chromium")
CONFIG = """
[server]
listen = ["127.0.0.1:18080"]
data_dir = "{data}"

[sites.kade]
hosts = ["kade.example"]
upstream = "http://127.0.0.1:9"

[sites.kade.consent.theme]
accent = "#7c2d12"

[sites.kade.consent.categories.statistics]
label = {{ nl = "Statistiek <b>nl</b>", en = "Statistics <script>alert(1)</script>" }}

[sites.kade.consent.texts]
title = {{ nl = "Koekjes", en = "Cookies here", de = "Kekse", fr = "Biscuits" }}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "consentproxy.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data"))
    return path


def test_every_language_and_both_layers_self_contained(config_file: Path) -> None:
    site = load_config(config_file).sites[0]
    previews = banner_previews(site)
    assert [(p.lang, p.layer) for p in previews][:2] == [("nl", "first"), ("nl", "settings")]  # default first
    assert {(p.lang, p.layer) for p in previews} == {(lang, layer) for lang in LANGUAGES
                                                     for layer in ("first", "settings")}
    titles = {"nl": "Koekjes", "en": "Cookies here", "de": "Kekse", "fr": "Biscuits"}
    for item in previews:
        assert item.html.startswith("<!doctype html>")
        assert f'<html lang="{item.lang}">' in item.html
        assert f">{titles[item.lang]}</h2>" in item.html
        assert "--cp-accent:#7c2d12" in item.html  # the theme, inlined
        assert "<link" not in item.html and " src=" not in item.html  # nothing fetched
        assert ".cp-banner" in item.html and "window.consentproxy" in item.html  # CSS and script inlined
        assert "<script>alert(1)" not in item.html  # the label travels JSON-escaped
        assert ("consentproxy.open()" in item.html) == (item.layer == "settings")


def test_preview_banner_writes_html_and_png_when_chromium_is_there(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    done = subprocess.run([sys.executable, "-m", "consentproxy", "preview", "-c", str(config_file), "--site",
                           "kade.example", "--banner", "-o", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    html = sorted(p.name for p in out.glob("*.html"))
    assert html == sorted(f"banner-{lang}-{layer}.html" for lang in LANGUAGES for layer in ("first", "settings"))
    pngs = sorted(out.glob("*.png"))
    if not CHROMIUM.exists():
        assert pngs == [] and "no PNG screenshots" in done.stderr
        return
    assert len(pngs) == 2 * len(html), done.stderr
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "banner-en-first.mobile.png").exists() and (out / "banner-en-settings.desktop.png").exists()


def test_preview_needs_a_page_or_banner_and_a_folder(config_file: Path) -> None:
    for args in (["--site", "kade"], ["--site", "kade", "--banner"]):
        done = subprocess.run([sys.executable, "-m", "consentproxy", "preview", "-c", str(config_file), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2 and "error:" in done.stderr


def days_of(count: int) -> list[DayCounts]:
    start = date(2025, 1, 1)
    days = [DayCounts(start + timedelta(days=i)) for i in range(count)]
    days[3] = DayCounts(days[3].day, {"statistics": 3, "<x>": 1}, {"statistics": 1}, {})
    days[7] = DayCounts(days[7].day, {"statistics": 1}, {"statistics": 1}, {"statistics": 2})
    return days


@pytest.mark.parametrize("count", [30, 90, 365])
def test_the_chart_has_a_point_per_day(count: int) -> None:
    days = days_of(count)
    rates = rate_chart(days, ["statistics"])
    counts = count_chart(days, ["statistics"])
    rate_points = re.search(r'<polyline points="([^"]*)"', rates)
    count_points = re.search(r'<polyline points="([^"]*)"', counts)
    assert rate_points and count_points
    assert len(rate_points.group(1).split()) == 2  # the two days with decisions
    assert len(count_points.group(1).split()) == count
    assert rates.count("<circle") == 2 and counts.count("<circle") == count
    # 75% on day 4 is higher on the chart (smaller y) than 50% on day 8
    (x1, y1), (x2, y2) = (tuple(map(float, p.split(","))) for p in rate_points.group(1).split())
    assert x1 < x2 and y1 < y2
    table = counts_table(days, ["statistics"])
    assert "3 / 1 / 0 (75%)" in table and "1 / 1 / 2 (50%)" in table
    assert table.count("<tr>") == 3  # the heading and the two days


def test_the_chart_escapes_what_it_names() -> None:
    days = days_of(30)
    for text in (rate_chart(days, ["<x>"]), count_chart(days, ["<x>"]), legend(["<x>"]),
                 counts_table(days, ["<x>"])):
        assert "<x>" not in text and "&lt;x&gt;" in text
