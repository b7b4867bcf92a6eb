"""`consentproxy demo` end to end: real processes and sockets, no mocks.

One demo serves the read-only checks; the shutdown and port-clash tests start
their own, since they end it or keep it from starting.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import psutil
import pytest
from demo_support import Demo, fetch, free_port_pair, records, start_demo, stop_demo

DEMO_COOKIES = {"kade_session", "_ga", "_gcl_au", "kade_ab_variant"}


def records_with(path: Path, marker: str) -> list[dict[str, Any]]:
    return [record for record in records(path) if marker in record.get("query", "")]


# --- the site, through the proxy -------------------------------------------------------------------


def test_home_page_is_dutch_with_the_usual_trackers_all_held_back(demo: Demo) -> None:
    """A first visit: the banner is in the page and every tracker stand-in is neutralised, its code kept."""
    reply = fetch(demo.port, "/")
    assert reply.status == 200
    assert reply.headers.get_content_type() == "text/html"
    page = reply.text
    assert '<html lang="nl">' in page
    assert "Kade IT-diensten" in page
    assert '<section id="cp-banner"' in page and "Alles weigeren" in page
    tracker = r"http://[a-z.]+\.localhost:\d+"
    # Google tag: async loader plus the inline configuration.
    assert re.search(rf'<script async type="text/plain" data-cp-src="{tracker}/gtag/js\?id=G-DEMO12345" '
                     r'data-cp-blocked="statistics"', page)
    assert not re.search(rf' src="{tracker}/', page)  # no tracker URL is live anywhere in the page
    assert "function gtag(){dataLayer.push(arguments);}" in page
    assert "gtag('config', 'G-DEMO12345');" in page
    # Meta pixel: the loader, init and PageView, and the <noscript> image.
    assert "!function(f,b,e,v,n,t,s)" in page
    assert re.search(rf"'{tracker}/fbevents\.js'\);", page)
    assert "fbq('init', '1234567890123456');" in page and "fbq('track', 'PageView');" in page
    assert re.search(rf'<noscript><img [^>]*data-cp-src="{tracker}/tr\?id=1234567890123456&ev=PageView&noscript=1"',
                     page)
    # Hotjar.
    assert "(function(h,o,t,j,a,r){" in page
    # YouTube, behind a click-to-load placeholder.
    assert re.search(rf'<iframe [^>]*data-cp-src="{tracker}/youtube/embed/kAdeITdemo1"', page)
    assert 'class="cp-embed' in page
    assert page.count('type="text/plain" data-cp-blocked') + page.count("data-cp-blocked=") >= 5


def test_every_page_sets_the_four_cookies(demo: Demo) -> None:
    cookies = fetch(demo.upstream_port(), "/").cookies()  # the site itself, without the proxy
    assert set(cookies) == DEMO_COOKIES

    session = cookies["kade_session"]["kade_session"]
    assert session["httponly"] and session["samesite"].lower() == "lax" and session["path"] == "/"
    assert not session["max-age"] and not session["expires"], "a session cookie"

    ga = cookies["_ga"]["_ga"]
    assert re.fullmatch(r"GA1\.1\.\d+\.\d+", ga.value)
    assert int(ga["max-age"]) == 395 * 86400
    assert not ga["httponly"]

    gcl = cookies["_gcl_au"]["_gcl_au"]
    assert gcl["httponly"]
    assert int(gcl["max-age"]) == 90 * 86400

    variant = cookies["kade_ab_variant"]["kade_ab_variant"]
    assert variant.value in ("a", "b")
    assert int(variant["max-age"]) == 30 * 86400


def test_cookies_the_browser_already_has_are_not_set_again(demo: Demo) -> None:
    reply = fetch(demo.upstream_port(), "/diensten",
                  headers={"Cookie": "kade_session=s; _ga=GA1.1.1.2; kade_ab_variant=a"})
    assert set(reply.cookies()) == {"_gcl_au"}


def test_through_the_proxy_only_the_necessary_cookie_is_set(demo: Demo) -> None:
    reply = fetch(demo.port, "/")
    assert set(reply.cookies()) == {"kade_session"}
    assert "Cookie" in (reply.headers.get("Vary") or "")
    assert "private" in (reply.headers.get("Cache-Control") or "")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_tracker_stand_ins_are_third_parties_with_real_looking_names(demo: Demo, host: str) -> None:
    """On this machine, the vendors' host names under .localhost: browsers resolve them to loopback, and they
    are other hosts than the site's, as the real trackers are."""
    page = fetch(demo.upstream_port(), "/", headers={"Host": f"{host}:{demo.port}"}).text
    port = demo.tracker_port()
    for url in (f"http://www.googletagmanager.com.localhost:{port}/gtag/js?id=G-DEMO12345",
                f"'http://connect.facebook.net.localhost:{port}/fbevents.js'",
                f"http://connect.facebook.net.localhost:{port}/tr?id=1234567890123456",
                f"'http://static.hotjar.com.localhost:{port}/hotjar-'",
                f"http://www.youtube.com.localhost:{port}/youtube/embed/kAdeITdemo1"):
        assert url in page, url
    assert f"//{host}:{port}" not in page


def test_from_another_device_the_trackers_use_the_host_name_the_visitor_used(demo: Demo) -> None:
    """A phone on the LAN cannot reach this machine's .localhost: it gets the address it used."""
    page = fetch(demo.port, "/", headers={"Host": f"192.0.2.7:{demo.port}"}).text
    assert re.search(r'data-cp-src="http://192\.0\.2\.7:\d+/gtag/js\?id=G-DEMO12345"', page)
    assert ".localhost" not in page and "127.0.0.1" not in page


@pytest.mark.parametrize(("path", "lang", "phrase"), [
    ("/en/", "en", "IT that simply works"),
    ("/en/services", "en", "Workplace management"),
    ("/en/contact", "en", "E-mail address"),
    ("/en/privacy", "en", "right to erasure"),
    ("/diensten", "nl", "Werkplekbeheer"),
    ("/contact", "nl", "E-mailadres"),
    ("/privacy", "nl", "recht op verwijdering"),
])
def test_pages_in_both_languages(demo: Demo, path: str, lang: str, phrase: str) -> None:
    reply = fetch(demo.port, path)
    assert reply.status == 200
    assert f'<html lang="{lang}">' in reply.text
    assert phrase in reply.text
    assert set(reply.cookies()) == {"kade_session"}  # the proxy holds back the rest until consent


@pytest.mark.parametrize(("path", "promises"), [
    ("/privacy", ["alleen voor bezoekersstatistieken", "geanonimiseerd", "Europese Economische Ruimte",
                  "recht op inzage", "recht op verwijdering"]),
    ("/en/privacy", ["only for visitor statistics", "anonymised", "European Economic Area",
                     "right of access", "right to erasure"]),
])
def test_privacy_statement_makes_the_promises(demo: Demo, path: str, promises: list[str]) -> None:
    page = fetch(demo.port, path).text
    for promise in promises:
        assert promise in page


@pytest.mark.parametrize(("path", "lang", "label"), [("/privacy", "nl", "Bewaartermijn"),
                                                      ("/en/privacy", "en", "Lifetime")])
def test_the_privacy_pages_carry_the_cookie_declaration(demo: Demo, path: str, lang: str, label: str) -> None:
    page = fetch(demo.port, path).text
    inside = page[page.index("data-consent-declaration>"):]
    assert inside.startswith(f'data-consent-declaration><div class="cp-declaration" lang="{lang}">')
    inside = inside[:inside.index("</div></div>")]
    assert f'<th scope="col">{label}</th>' in inside
    assert '<th scope="row">kade_session</th>' in inside and '<th scope="row">_ga</th>' in inside
    assert "YouTube (demo stand-in)" in inside


@pytest.mark.parametrize(("path", "thanks"), [("/contact", "Bedankt, "), ("/en/contact", "Thank you, ")])
def test_contact_form_works_through_the_proxy(demo: Demo, path: str, thanks: str) -> None:
    form = urlencode({"name": "Ann <script>alert(1)</script>", "email": "ann@example.org", "message": "Hallo"})
    reply = fetch(demo.port, path, "POST", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200
    assert f"{thanks}Ann &lt;script&gt;alert(1)&lt;/script&gt;!" in reply.text
    assert "<script>alert(1)" not in reply.text


def test_contact_form_with_a_missing_field_asks_again(demo: Demo) -> None:
    form = urlencode({"name": 'Bob "B"', "email": "", "message": "Hi"})
    reply = fetch(demo.port, "/contact", "POST", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 400
    assert 'role="alert" >' in reply.text
    assert 'value="Bob &quot;B&quot;"' in reply.text


def test_unknown_page_is_a_404_page(demo: Demo) -> None:
    reply = fetch(demo.port, "/en/no-such-page")
    assert reply.status == 404
    assert "Page not found" in reply.text


# --- the tracker stand-ins, directly --------------------------------------------------------------


def test_gtag_script_and_collect_hit_are_logged(demo: Demo) -> None:
    tracker = demo.tracker_port()
    marker = uuid.uuid4().hex
    headers = {"Cookie": "_ga=GA1.1.1.2; _gid=x", "Referer": "http://127.0.0.1/en/"}

    script = fetch(tracker, f"/gtag/js?id=G-DEMO12345&m={marker}", headers=headers)
    assert script.status == 200
    assert "javascript" in script.headers.get_content_type()
    assert f'"http://127.0.0.1:{tracker}"' in script.text
    assert "/g/collect?" in script.text

    query = urlencode({"v": "2", "tid": "G-DEMO12345", "cid": "1.2", "dl": "http://127.0.0.1/", "dt": "Home",
                       "en": "page_view", "m": marker})
    assert fetch(tracker, f"/g/collect?{query}", headers=headers).status == 204

    logged = records_with(demo.data_dir / "tracker-hits.ndjson", marker)
    assert [(r["tracker"], r["kind"], r["path"]) for r in logged] == [
        ("ga", "script", "/gtag/js"), ("ga", "hit", "/g/collect")]
    hit = logged[1]
    assert hit["method"] == "GET"
    assert parse_qs(hit["query"])["en"] == ["page_view"]
    assert hit["referer"] == "http://127.0.0.1/en/"
    assert hit["cookie_names"] == ["_ga", "_gid"]
    assert datetime.fromisoformat(hit["time"].replace("Z", "+00:00")).utcoffset() is not None


@pytest.mark.parametrize(("path", "tracker", "kind", "content_type"), [
    ("/fbevents.js?", "facebook", "script", "application/javascript"),
    ("/tr?id=1234567890123456&ev=PageView&noscript=1&", "facebook", "pixel", "image/gif"),
    ("/hotjar-3141592.js?sv=6&", "hotjar", "script", "application/javascript"),
    ("/youtube/embed/kAdeITdemo1?", "youtube", "iframe", "text/html"),
])
def test_other_tracker_requests_are_logged(demo: Demo, path: str, tracker: str, kind: str,
                                           content_type: str) -> None:
    marker = uuid.uuid4().hex
    reply = fetch(demo.tracker_port(), f"{path}m={marker}")
    assert reply.status == 200
    assert reply.headers.get_content_type() == content_type
    (logged,) = records_with(demo.data_dir / "tracker-hits.ndjson", marker)
    assert (logged["tracker"], logged["kind"]) == (tracker, kind)


def test_hotjar_hit_is_logged_and_cors_allows_the_site(demo: Demo) -> None:
    marker = uuid.uuid4().hex
    origin = f"http://127.0.0.1:{demo.port}"
    reply = fetch(demo.tracker_port(), f"/hotjar/hit?m={marker}", "POST", b'{"kind":"pageview"}',
                  {"Origin": origin, "Content-Type": "text/plain"})
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == origin
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    (logged,) = records_with(demo.data_dir / "tracker-hits.ndjson", marker)
    assert (logged["tracker"], logged["kind"], logged["method"]) == ("hotjar", "hit", "POST")


def test_cors_preflight_is_answered(demo: Demo) -> None:
    reply = fetch(demo.tracker_port(), "/g/collect", "OPTIONS", headers={
        "Origin": "http://localhost:8080", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    assert reply.headers["Access-Control-Allow-Headers"] == "content-type"


def test_analytics_sink_logs_everything_it_receives(demo: Demo) -> None:
    marker = uuid.uuid4().hex
    body = json.dumps({"events": [{"name": "page_view"}]}).encode()
    reply = fetch(demo.tracker_port(), f"/sink/x?m={marker}", "POST", body,
                  {"Content-Type": "application/json", "X-Demo-Test": marker})
    assert reply.status == 204
    (logged,) = records_with(demo.data_dir / "analytics-sink.ndjson", marker)
    assert (logged["method"], logged["path"], logged["query"]) == ("POST", "/sink/x", f"m={marker}")
    assert ["X-Demo-Test", marker] in logged["headers"]
    assert (logged["body"], logged["body_encoding"]) == (body.decode(), "text")


def test_analytics_sink_keeps_binary_bodies_as_base64(demo: Demo) -> None:
    marker = uuid.uuid4().hex
    body = b"\xff\x00\xfe binary"
    fetch(demo.tracker_port(), f"/sink/matomo.php?m={marker}", "PUT", body)
    (logged,) = records_with(demo.data_dir / "analytics-sink.ndjson", marker)
    assert logged["method"] == "PUT"
    assert logged["body_encoding"] == "base64"
    assert base64.b64decode(logged["body"]) == body


# --- the configuration it writes ------------------------------------------------------------------


def test_written_configuration_passes_check_config(demo: Demo) -> None:
    config_path = demo.data_dir / "consentproxy.toml"
    server = demo.config()["server"]
    assert server["listen"] == [f"127.0.0.1:{demo.port}"]
    assert server["admin_listen"] == f"127.0.0.1:{demo.port + 1}"
    assert server["trusted_proxies"] == ["127.0.0.1/32", "::1/128"]
    result = subprocess.run([sys.executable, "-m", "consentproxy", "check-config", "-c", str(config_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert fetch(demo.port + 1, "/healthz").status == 200


# --- starting and stopping ------------------------------------------------------------------------


def test_inventory_lists_every_cookie_the_demo_sets_unknown_first(tmp_path: Path) -> None:
    demo = start_demo(tmp_path)
    try:
        for path in ("/", "/diensten", "/en/", "/privacy"):
            assert fetch(demo.port, path).status == 200
    finally:
        assert stop_demo(demo) == 0  # the inventory is written at shutdown
    result = subprocess.run([sys.executable, "-m", "consentproxy", "inventory", "-c",
                             str(demo.data_dir / "consentproxy.toml"), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert {e["name"] for e in entries if e["kind"] == "cookie"} == DEMO_COOKIES
    assert entries[0]["name"] == "kade_ab_variant" and entries[0]["source"] == "unknown"
    by_name = {e["name"]: e for e in entries}
    assert by_name["kade_session"]["source"] == "declared" and by_name["kade_session"]["blocked"] == 0
    assert by_name["_gcl_au"]["category"] == "marketing" and by_name["_gcl_au"]["httponly"]
    # four page views and start_demo's readiness probe, each blocked for want of consent
    assert by_name["_ga"]["category"] == "statistics" and by_name["_ga"]["blocked"] == 5


def test_sigterm_stops_the_demo_and_its_site(tmp_path: Path) -> None:
    demo = start_demo(tmp_path)
    try:
        children = psutil.Process(demo.process.pid).children(recursive=True)
        assert children, "the demo site runs as a child process"
        site_port = demo.upstream_port()
    finally:
        code = stop_demo(demo)
    assert code == 0, demo.output()
    for child in children:
        assert not child.is_running(), f"site process {child.pid} outlived the demo"
    with pytest.raises(OSError):
        fetch(site_port, "/")


def test_a_taken_port_is_reported(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "consentproxy", "demo", "--port", str(port), "--data-dir", str(tmp_path / "d")],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode != 0
    assert str(port) in result.stderr
    assert "--port" in result.stderr


@pytest.mark.parametrize(("path", "privacy"), [("/", "/privacy"), ("/en/", "/en/privacy")])
def test_banner_names_the_controller_and_links_the_statement_in_the_pages_language(demo: Demo, path: str,
                                                                                  privacy: str) -> None:
    page = fetch(demo.port, path).text
    banner = page[page.index('<section id="cp-banner"'):page.index("</section>")]
    assert "Kade IT-diensten B.V." in banner
    assert f'<a class="cp-link" href="{privacy}">' in banner


@pytest.mark.parametrize(("client", "regime", "button"), [
    ("216.160.83.58", "opt-out", "Mijn persoonsgegevens niet verkopen of delen"),  # US, in MaxMind's test data
    ("89.160.20.115", "opt-in", "Alles weigeren"),  # SE
])
def test_the_demo_asks_by_the_visitors_place(demo: Demo, client: str, regime: str, button: str) -> None:
    page = fetch(demo.port, "/", headers={"X-Forwarded-For": client}).text
    assert f'data-cp-regime="{regime}"' in page
    assert button in page
    assert ("data-cp-blocked" in page) == (regime == "opt-in")


# --- the admin listener, discoverable (issue 20 item 4) --------------------------------------------------------


def test_the_demo_prints_the_admin_urls_and_where_the_token_is(demo: Demo) -> None:
    admin = f"http://127.0.0.1:{demo.port + 1}"
    token_file = demo.data_dir / "secrets" / "admin-token"
    output = demo.output()
    for line in (f"  console            {admin}/  (sign in with the admin token below; the banner preview is at "
                 f"{admin}/preview/demo)",
                 f"  admin              {admin}/  (for programs: an index of every endpoint, as JSON)",
                 f"  admin token        {token_file}",
                 f"  metrics, health    {admin}/metrics  {admin}/healthz  {admin}/readyz"):
        assert line in output, output
    assert f"{admin}/api/sites" in output
    # the printed way to use it works: the token in that file opens the API
    token = token_file.read_text().strip()
    assert token not in output
    reply = fetch(demo.port + 1, "/api/sites", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200, reply.text


def test_the_admin_listeners_root_is_an_index_not_a_404(demo: Demo) -> None:
    as_json = fetch(demo.port + 1, "/")
    assert as_json.status == 200 and as_json.headers["Content-Type"] == "application/json"
    index = json.loads(as_json.body)
    assert [e["path"] for e in index["endpoints"]] == ["/healthz", "/readyz", "/metrics"]
    assert {"method": "GET", "path": "/api/sites", "scope": "read"} in index["api"]
    assert "Bearer" in index["auth"]
    as_html = fetch(demo.port + 1, "/", headers={"Accept": "text/html,*/*"})
    assert as_html.status == 200 and as_html.headers["Content-Type"].startswith("text/html")
    assert '<a href="/metrics">/metrics</a>' in as_html.text and "GET /api/sites" in as_html.text
