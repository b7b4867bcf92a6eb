"""A site's own consent category end to end (issue 20 item 3), through a real proxy process.

`social`, declared in the configuration with its texts and Consent Mode signals: the banner lists it (nl and
en), the consent API takes a choice of it, its cookies and scripts pass only once it is granted (the others
stay blocked), the stored consent event and the notice name it, the statistics count it, and Consent Mode
grants exactly the signals it maps to.
"""

from __future__ import annotations

import html
import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import Proxy, free_port, launch_proxy, serve_app
from test_admin_api import DPO_TOKEN, TOKENS_TOML, admin
from test_consent_api import Answer, call

from consentproxy.config.secrets import SigningKey
from consentproxy.consent.decision import decide
from consentproxy.consent.state import ConsentCodec, ConsentState

SITE = "kade"
PAGE = """<!doctype html><html lang="{lang}"><head><title>Kade</title>
<script src="https://share.example/widget.js"></script>
<script src="https://stats.example/s.js"></script>
</head><body><p>Hello</p></body></html>"""


def site_config(upstream_port: int) -> str:
    return f"""
[sites.{SITE}]
hosts = ["127.0.0.1", "localhost"]
upstream = "http://127.0.0.1:{upstream_port}"

[sites.{SITE}.consent]
default_language = "nl"

[sites.{SITE}.consent.categories.social]
label = {{ nl = "Sociale media", en = "Social media" }}
description = {{ nl = "Deelknoppen van sociale netwerken.", en = "Share buttons of social networks." }}
consent_mode = ["ad_storage", "ad_user_data"]
order = 25

[[sites.{SITE}.cookies]]
name = "sid"
category = "necessary"

[[sites.{SITE}.services]]
name = "ShareThing"
category = "social"
scripts = ["share.example"]
cookies = ["share_*"]

[[sites.{SITE}.services]]
name = "StatThing"
category = "statistics"
scripts = ["stats.example"]
cookies = ["st_*"]
""" + TOKENS_TOML


@dataclass
class Site:
    proxy: Proxy
    #: the Cookie headers the upstream received, in order
    cookies_seen: list[str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    seen: list[str] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        response = web.Response(text=PAGE.format(lang=request.query.get("lang", "nl")), content_type="text/html")
        for name in ("sid", "share_id", "st_id"):
            response.set_cookie(name, "1", path="/")
        return response

    app = web.Application()
    app.router.add_get("/", page)
    port = free_port()
    with serve_app(app, port):
        proxy = launch_proxy(tmp_path_factory.mktemp("custom"), 0, site_config(port))
        yield Site(proxy, seen)
        proxy.stop(signal.SIGTERM)


def banner_config(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="cp-config">(.*?)</script>', page, re.DOTALL)
    assert found, "no banner configuration in the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def set_cookie_names(answer: Answer) -> set[str]:
    return {line.split("=", 1)[0] for line in answer.header("set-cookie") if "max-age=0" not in line.lower()}


def sent_upstream(site: Site) -> set[str]:
    """The names of the cookies the last page request brought the upstream."""
    return {part.split("=", 1)[0] for part in site.cookies_seen[-1].split("; ") if part}


def choose(proxy: Proxy, body: dict[str, Any]) -> Answer:
    return call(proxy, "POST", body=body, headers={"Origin": f"http://127.0.0.1:{proxy.port}"})


def test_the_banner_lists_the_sites_own_category_in_both_languages(site: Site) -> None:
    for lang, label, description in (("nl", "Sociale media", "Deelknoppen van sociale netwerken."),
                                     ("en", "Social media", "Share buttons of social networks.")):
        answer = call(site.proxy, "GET", f"/?lang={lang}")
        assert answer.status == 200
        page = answer.body.decode()
        config = banner_config(page)
        ids = [c["id"] for c in config["categories"]]
        assert ids == ["necessary", "preferences", "statistics", "social", "marketing"]  # order 25
        social = config["categories"][3]
        assert (social["label"], social["description"], social["required"]) == (label, description, False)
        assert [s["name"] for s in social["services"]] == ["ShareThing"]
        assert config["consent_mode"]["ad_storage"] == ["social", "marketing"]
        assert config["consent_mode"]["analytics_storage"] == ["statistics"]
        # nothing decided: the social script is held under its category, its cookie dropped
        assert 'data-cp-blocked="social"' in page and 'data-cp-blocked="statistics"' in page
        assert set_cookie_names(answer) == {"sid"}


def test_a_choice_of_social_only_lets_social_through_and_nothing_else(site: Site) -> None:
    proxy = site.proxy
    refused = choose(proxy, {"action": "save_selection", "choices": {"video": True}})
    assert refused.status == 422 and refused.json()["error"] == "unknown_category"
    assert "necessary, preferences, statistics, social, marketing" in refused.json()["message"]

    answer = choose(proxy, {"action": "save_selection", "choices": {"social": True}})
    assert answer.status == 200, answer.body
    state = answer.json()
    assert state["granted"] == ["necessary", "social"]
    assert state["choices"] == {"necessary": True, "preferences": False, "statistics": False, "social": True,
                                "marketing": False}
    consent = f"cp_consent={answer.cookie_value()}"
    assert call(proxy, "GET", "/_consent", cookie=consent).json()["choices"]["social"] is True

    # the response: the social cookie is set, the statistics one is not
    page = call(proxy, "GET", "/?lang=en", cookie=f"{consent}; sid=1; share_id=1; st_id=1")
    assert set_cookie_names(page) == {"sid", "share_id"}
    # the request: the upstream gets the social cookie, never the statistics one
    assert sent_upstream(site) == {"sid", "share_id"}
    body = page.body.decode()
    assert '<script src="https://share.example/widget.js"></script>' in body
    assert 'data-cp-blocked="social"' not in body and 'data-cp-blocked="statistics"' in body
    # Consent Mode: the signals social maps to are granted, the others denied
    update = re.search(r"g\('consent','update',\{(.*?)\}\)", html.unescape(body))
    assert update, "no Consent Mode update after a decision"
    signals = dict(item.split(":") for item in update.group(1).split(","))
    assert signals == {"analytics_storage": "'denied'", "ad_storage": "'granted'", "ad_user_data": "'granted'",
                       "ad_personalization": "'denied'", "functionality_storage": "'denied'",
                       "personalization_storage": "'denied'"}
    assert 'data-cp-granted="necessary social"' in body

    # the record: the stored event's choices name social, and its notice the category
    access = admin(proxy, "GET", f"/api/sites/{SITE}/consents/{state['principal']}", token=DPO_TOKEN)
    assert access.status == 200, access.body
    (event,) = access.json()["events"]
    assert event["choices"]["social"] is True and event["choices"]["statistics"] is False
    assert event["event_type"] == "given" and event["method"] == "save_selection"
    (notice,) = access.json()["notices"].values()
    purposes = {p["id"]: p for p in notice["content"]["purposes"]}
    assert purposes["social"]["legal_basis"] == "consent" and purposes["social"]["services"] == ["ShareThing"]

    # the statistics: social given once, and counted like the built-in categories
    accepted = choose(proxy, {"action": "accept_all"})
    assert accepted.json()["choices"]["social"] is True
    stats = admin(proxy, "GET", f"/api/sites/{SITE}/stats", token=DPO_TOKEN)
    assert stats.status == 200, stats.body
    totals = stats.json()["totals"]
    assert (totals["social"]["given"], totals["social"]["refused"]) == (2, 0)
    assert (totals["statistics"]["given"], totals["statistics"]["refused"]) == (1, 1)
    assert "social" in stats.json()["categories"]


def test_reject_all_refuses_social_too(site: Site) -> None:
    answer = choose(site.proxy, {"action": "reject_all"})
    assert answer.json()["choices"]["social"] is False
    consent = f"cp_consent={answer.cookie_value()}"
    page = call(site.proxy, "GET", "/", cookie=f"{consent}; share_id=1")
    assert set_cookie_names(page) == {"sid"}
    assert sent_upstream(site) == set()
    assert 'data-cp-blocked="social"' in page.body.decode()


def test_a_cookie_from_before_the_category_existed_stays_valid_and_does_not_grant_it() -> None:
    """The consent cookie names what was granted: an old one still verifies, and a category added since
    is simply not in it (the visitor is asked about it through the settings layer, never assumed to agree)."""
    codec = ConsentCodec((SigningKey("k1", b"k" * 32),))
    old = ConsentState("p", frozenset({"necessary", "preferences", "statistics", "marketing"}), 1, 1, 4_000_000_000,
                       "accept_all")
    state = codec.decode(codec.encode(old), 1, now=2)
    assert state == old
    decision = decide(state, False, everything=frozenset({"necessary", "preferences", "statistics", "marketing",
                                                          "social"}))
    assert decision.allows("marketing") and not decision.allows("social")


def test_check_config_names_an_unknown_category_with_the_sites_own(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from consentproxy.cli import main

    path = tmp_path / "c.toml"
    path.write_text(site_config(9).replace('category = "social"', 'category = "socail"'), "utf-8")
    assert main(["check-config", "-c", str(path), "--file-only"]) == 1
    assert (f"sites.{SITE}.services[0].category: must be one of necessary, preferences, statistics, social, "
            "marketing, got the string 'socail'") in capsys.readouterr().err
