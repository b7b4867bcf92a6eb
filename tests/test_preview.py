"""`consentproxy preview` on a file and on a URL, as a site owner runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, Upstream

CORPUS = ROOT / "tests" / "data" / "html-corpus"


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "consentproxy", "preview", *args], capture_output=True, timeout=60,
                          cwd=ROOT)


def config(tmp_path: Path, upstream: str = "http://127.0.0.1:9") -> str:
    path = tmp_path / "site.toml"
    path.write_text(f'[sites.kade]\nhosts = ["www.kade-it.nl"]\nupstream = "{upstream}"\n'
                    '[[sites.kade.services]]\nname = "Kade chat"\ncategory = "preferences"\n'
                    'scripts = ["/chat/widget.js"]\n')
    return str(path)


def test_preview_of_a_file_prints_the_page_and_why_each_element_is_blocked(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text('<html lang="en"><head><script async src="https://www.googletagmanager.com/gtag/js?id=G-1">'
                    '</script><script src="/chat/widget.js"></script></head><body>'
                    '<video data-consent-category="marketing" src="/promo.mp4"></video>'
                    '<img src="/px.gif" data-consent-category="statistics"></body></html>')
    result = run("-c", config(tmp_path), "--site", "www.kade-it.nl", str(page))
    assert result.returncode == 0, result.stderr
    html, report = result.stdout.decode(), result.stderr.decode()
    assert 'id="cp-banner"' in html and "Accept all" in html  # lang="en" on the page
    assert 'data-cp-src="/chat/widget.js"' in html
    assert "4 element(s) blocked" in report
    assert "built-in catalogue: Google Analytics" in report
    assert "service declared in the site's configuration: Kade chat" in report
    assert "marked data-consent-category by the site" in report


def test_preview_with_consent_blocks_only_what_is_not_granted(tmp_path: Path) -> None:
    page = str(CORPUS / "03-en-news-homepage.html")
    everything = run("-c", config(tmp_path), "--site", "kade", "--consent", "all", page, "--summary-only")
    assert everything.returncode == 0 and everything.stdout == b""
    assert "0 element(s) blocked" in everything.stderr.decode()
    statistics = run("-c", config(tmp_path), "--site", "kade", "--consent", "statistics", page, "--summary-only")
    report = statistics.stderr.decode()
    assert "marketing" in report and " statistics " not in report.split("\n", 1)[1]


def test_preview_of_a_url_and_clear_errors(tmp_path: Path, upstream: Upstream) -> None:
    out = tmp_path / "out.html"
    result = run("-c", config(tmp_path), "--site", "kade", f"{upstream.url}/status/200", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert b"cp-root" in out.read_bytes()
    bad = run("-c", config(tmp_path), "--site", "nosuch.example", str(CORPUS / "01-nl-news-homepage.html"))
    assert bad.returncode == 2 and b"no site named or answering to 'nosuch.example'" in bad.stderr
    bad = run("-c", config(tmp_path), "--site", "kade", "--consent", "everything", str(out))
    assert bad.returncode == 2 and b"unknown categories: everything" in bad.stderr
