"""Analytics hits through the anonymiser: recorded-style hits for every backend and mode, and the promises
that hold for all of them (no client address in any spelling, no e-mail, daily ids, real consent state)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

from consentproxy.analytics import (
    Context,
    DailyKeys,
    Dropped,
    Hit,
    Policy,
    anonymise,
    daily_key,
    encode_query,
    parse_query,
)
from consentproxy.analytics.useragent import BOT, generalise
from consentproxy.geo.lookup import GeoIP, Location

GEOIP = Path(__file__).parent.parent / "config" / "geoip" / "GeoLite2-City-Test.mmdb"
SECRET = b"site secret for shop.example, 32+"
TOKEN = "8f3b0c1d2e4a5b6c7d8e9f00a1b2c3d4"
DAY = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
EMAIL = "jane.doe+shoes@example.com"

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.6367.91 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.4.1 Mobile/15E148 Safari/604.1")
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"

# The visitor addresses: MaxMind's test database places them in Sweden and the Netherlands.
IPV4 = "89.160.20.115"
IPV6 = "2a02:e040::1"
MAPPED = "::ffff:89.160.20.115"  # how a dual-stack socket reports an IPv4 visitor
CLIENTS = [IPV4, IPV6, MAPPED]


# --- an independent search for the client address and e-mails in a finished request ---------------------

def address_forms(ip: str) -> set[str]:
    """Every spelling of the address to search for, written independently of the code under test."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        mapped = ipaddress.IPv6Address(f"::ffff:{address}")
        forms = {str(address), f"::ffff:{address}", mapped.compressed, mapped.exploded}
    else:
        forms = {address.compressed, address.exploded,
                 ":".join(part.lstrip("0") or "0" for part in address.exploded.split(":"))}
    for form in list(forms):
        once = quote(form, safe="")
        forms |= {once, quote(once, safe=""), once.replace("%3A", "%3a")}
    return {form.lower() for form in forms}


def request_texts(hit: Hit) -> list[str]:
    texts = [hit.method, hit.path, hit.client_ip, hit.query_string(), hit.body.decode("utf-8", "replace")]
    texts += [f"{name}: {value}" for name, value in hit.headers]
    texts += [f"{name}={value}" for name, value in hit.query]
    return texts


def decoded_layers(text: str) -> list[str]:
    layers = [text]
    for _ in range(3):
        text = unquote(text)
        layers.append(text)
    return layers


E_MAIL = re.compile(r"[\w.+-]+@[\w-]+\.[a-z]{2,}", re.I)


def assert_clean(hit: Hit, ip: str) -> None:
    forms = address_forms(ip)
    for text in request_texts(hit):
        for layer in decoded_layers(text):
            lowered = layer.lower()
            for form in forms:
                assert form not in lowered, f"{form} leaked in {text!r}"
            assert not E_MAIL.search(layer), f"e-mail leaked in {text!r}"


# --- recorded-style hits --------------------------------------------------------------------------------

def ga4_pageview(ip: str, *, cid: str = "1187452311.1714550000", sid: str = "1714554000") -> Hit:
    """gtag.js page view with client hints, UTM parameters, an e-mail from a newsletter link and the IP."""
    query = [
        ("v", "2"), ("tid", "G-7QX2B9K1LM"), ("gtm", "45je4510v9115749985za200"), ("_p", "1714554012345"),
        ("gcs", "G111"), ("gcd", "13t3t3t3t5"), ("npa", "0"), ("dma", "1"),
        ("cid", cid), ("ul", "de-ch"), ("sr", "1920x1080"),
        ("uaa", "x86"), ("uab", "64"), ("uafvl", "Chromium;124.0.6367.91|Google Chrome;124.0.6367.91"),
        ("uamb", "0"), ("uam", ""), ("uap", "Windows"), ("uapv", "15.0.0"), ("uaw", "0"),
        ("_s", "1"), ("sid", sid), ("sct", "7"), ("seg", "1"), ("_fv", "1"), ("_ss", "1"),
        ("dl", f"https://shop.example/products/runner-2?utm_source=newsletter&utm_medium=email"
               f"&utm_campaign=spring&email={quote(EMAIL)}&gclid=Cj0KCQjw&color=blue#reviews"),
        ("dr", "https://www.google.com/search?q=running+shoes+jane+doe"),
        ("dt", f"Runner 2 empfohlen für {EMAIL}"),
        ("en", "page_view"), ("_et", "15"),
        ("uid", "customer-48151"), ("up.loyalty_tier", "gold"), ("upn.lifetime_orders", "12"),
        ("ep.debug_ip", ip), ("ep.content_group", "products"), ("em", "tv.1~em.8a7b6c5d4e3f"),
        ("_uip", ip),
    ]
    return Hit("POST", "/g/collect", tuple(query),
               (("User-Agent", CHROME_WIN), ("Cookie", "_ga=GA1.1.1187452311.1714550000"),
                ("Referer", f"https://shop.example/products/runner-2?email={quote(EMAIL)}"),
                ("X-Forwarded-For", ip)),
               b"", ip, DAY)


def ga4_batch(ip: str, *, cid: str = "1187452311.1714550000", sid: str = "1714554000") -> Hit:
    """A batched request: shared fields in the URL, one event per body line (purchase, scroll, outbound click)."""
    query = [("v", "2"), ("tid", "G-7QX2B9K1LM"), ("cid", cid), ("sid", sid), ("sct", "7"), ("seg", "1"),
             ("gcs", "G111"), ("npa", "0"), ("ul", "de-ch"),
             ("dl", "https://shop.example/checkout/thank-you?order=T-20240501-0042"), ("dt", "Thank you"),
             ("uaa", "x86"), ("uap", "Windows")]
    lines = [
        [("en", "purchase"), ("_et", "4021"), ("ep.transaction_id", "T-20240501-0042"), ("epn.value", "129.90"),
         ("ep.currency", "EUR"), ("epn.tax", "20.74"), ("ep.coupon", "SPRING10"), ("cu", "EUR"),
         ("pr1", "idRUN-2-42~nmRunner 2~brAcme~caShoes~pr129.90~qt1"), ("ep.customer_email", EMAIL)],
        [("en", "scroll"), ("epn.percent_scrolled", "90"), ("ep.client_address", f"visitor at {ip}")],
        [("en", "click"), ("ep.link_url", f"https://partner.example/offer?ref={quote(EMAIL)}&campaign=x"),
         ("ep.outbound", "true"), ("gcs", "G111")],
    ]
    body = "\n".join(encode_query(line) for line in lines).encode()
    return Hit("POST", "/g/collect", tuple(query), (("User-Agent", CHROME_WIN),), body, ip, DAY)


def ga4_mp(ip: str, *, client_id: str = "1187452311.1714550000", session: str = "1714554000") -> Hit:
    body = {
        "client_id": client_id,
        "user_id": "customer-48151",
        "timestamp_micros": 1714555800000000,
        "user_properties": {"loyalty_tier": {"value": "gold"}, "email": {"value": EMAIL}},
        "user_data": {"sha256_email_address": "a" * 64},
        "ip_override": ip,
        "user_location": {"city": "Malmö", "country_id": "SE"},
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
        "events": [{
            "name": "refund",
            "params": {"session_id": session, "engagement_time_msec": 120, "currency": "EUR", "value": 129.9,
                       "transaction_id": "T-20240501-0042", "note": f"requested by {EMAIL} from {ip}",
                       "page_location": f"https://shop.example/account/orders?email={quote(EMAIL)}",
                       "items": [{"item_id": "RUN-2-42", "item_name": "Runner 2", "price": 129.9, "quantity": 1}]},
        }],
    }
    query = (("measurement_id", "G-7QX2B9K1LM"), ("api_secret", "browser-guess"))
    return Hit("POST", "/mp/collect", query, (("Content-Type", "application/json"),),
               json.dumps(body).encode(), ip, DAY)


def matomo_pageview(ip: str, *, visitor: str = "5a3c2b1d0e9f8a7b") -> Hit:
    query = [
        ("idsite", "3"), ("rec", "1"), ("r", "482913"), ("h", "11"), ("m", "30"), ("s", "12"),
        ("url", f"https://shop.example/products/runner-2?utm_source=newsletter&utm_campaign=spring"
                f"&newsletter_email={quote(EMAIL)}&fbclid=IwAR0xyz"),
        ("urlref", "https://www.bing.com/search?q=runner+2+review"),
        ("action_name", "Runner 2 | Shop"), ("_id", visitor), ("_idn", "0"), ("_idts", "1700000000"),
        ("_idvc", "7"), ("_viewts", "1714000000"), ("_ref", "https://news.example/article?id=9"),
        ("_rcn", "spring"), ("uid", EMAIL), ("res", "1920x1080"), ("cookie", "1"), ("pdf", "1"), ("qt", "0"),
        ("realp", "0"), ("wma", "0"), ("fla", "0"), ("java", "0"), ("ag", "0"), ("pv_id", "AbC123"),
        ("dimension1", "gold"), ("dimension2", ip),
        ("_cvar", json.dumps({"1": ["content_type", "product"], "2": ["email", EMAIL]})),
        ("uadata", json.dumps({"fullVersionList": [{"brand": "Chromium", "version": "124.0.6367.91"}]})),
        ("lang", "de-CH,de;q=0.9,en;q=0.8"), ("token_auth", "browser-supplied"), ("cip", "6.6.6.6"),
        ("country", "us"),
    ]
    return Hit("GET", "/matomo.php", tuple(query),
               (("User-Agent", SAFARI_IPHONE), ("Accept-Language", "de-CH,de;q=0.9,en;q=0.8"),
                ("Cookie", "_pk_id.3.1fff=5a3c2b1d0e9f8a7b.1700000000")), b"", ip, DAY)


def matomo_ecommerce_post(ip: str, *, visitor: str = "5a3c2b1d0e9f8a7b") -> Hit:
    form = [("idsite", "3"), ("rec", "1"), ("idgoal", "0"), ("ec_id", "T-20240501-0042"), ("revenue", "129.90"),
            ("ec_st", "129.90"), ("ec_tx", "20.74"),
            ("ec_items", json.dumps([["RUN-2-42", "Runner 2", "Shoes", 129.9, 1]])),
            ("url", "https://shop.example/checkout/thank-you"), ("_id", visitor), ("uid", "customer-48151"),
            ("e_c", "checkout"), ("e_a", "paid"), ("e_n", f"card of {EMAIL}"), ("search", ip)]
    return Hit("POST", "/matomo.php", (("idsite", "3"),),
               (("User-Agent", FIREFOX_LINUX), ("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")),
               encode_query(form).encode(), ip, DAY)


def matomo_bulk(ip: str) -> Hit:
    requests = [
        "?" + encode_query([("idsite", "3"), ("rec", "1"), ("url", "https://shop.example/cart"),
                            ("_id", "5a3c2b1d0e9f8a7b"), ("uid", "customer-48151"), ("e_c", "cart"), ("e_a", "add"),
                            ("e_n", ip)]),
        "?" + encode_query([("idsite", "3"), ("rec", "1"), ("url", f"https://shop.example/login?user={quote(EMAIL)}"),
                            ("_id", "5a3c2b1d0e9f8a7b"), ("ping", "1")]),
    ]
    body = json.dumps({"requests": requests, "token_auth": "browser-supplied"}).encode()
    return Hit("POST", "/matomo.php", (), (("User-Agent", CHROME_WIN), ("Content-Type", "application/json")),
               body, ip, DAY)


def plausible_pageview(ip: str) -> Hit:
    """What plausible.js sends: short keys."""
    body = {"n": "pageview", "u": f"https://shop.example/blog/spring-sale?utm_source=newsletter&email={quote(EMAIL)}",
            "d": "shop.example", "r": "https://news.ycombinator.com/item?id=40215",
            "p": json.dumps({"author": "Kim", "email": EMAIL, "visitor_ip": ip}), "h": 0}
    return Hit("POST", "/api/event", (), (("User-Agent", SAFARI_IPHONE), ("Content-Type", "text/plain"),
                                          ("X-Forwarded-For", ip)), json.dumps(body).encode(), ip, DAY)


def plausible_revenue(ip: str) -> Hit:
    body = {"name": "Purchase", "url": "https://shop.example/#/checkout/thank-you?order=T-42",
            "domain": "shop.example", "referrer": None, "hashMode": 1,
            "props": {"method": "card", "user_id": "customer-48151", "note": ip},
            "revenue": {"currency": "EUR", "amount": "129.90"}}
    return Hit("POST", "/api/event", (), (("User-Agent", FIREFOX_LINUX),), json.dumps(body).encode(), ip, DAY)


def umami_event(ip: str) -> Hit:
    body = {"type": "event", "payload": {
        "website": "5f1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8", "hostname": "shop.example", "screen": "390x844",
        "language": "de-CH", "title": f"Welcome back {EMAIL}",
        "url": f"/products/runner-2?utm_source=newsletter&ref={quote(EMAIL)}#specs",
        "referrer": "https://www.instagram.com/p/C6xyz/?igshid=abc", "name": "add-to-cart",
        "data": {"method": "quick-add", "sku": "RUN-2-42", "userId": "customer-48151", "client": ip},
        "id": "customer-48151", "ip": "203.0.113.9", "userAgent": "spoofed"}}  # a browser's word for its address
    return Hit("POST", "/api/send", (), (("User-Agent", SAFARI_IPHONE), ("Content-Type", "application/json")),
               json.dumps(body).encode(), ip, DAY)


def umami_identify(ip: str) -> Hit:
    body = {"type": "identify", "payload": {"website": "5f1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8",
                                            "id": "customer-48151", "data": {"plan": "gold", "email": EMAIL}}}
    return Hit("POST", "/api/send", (), (("User-Agent", SAFARI_IPHONE),), json.dumps(body).encode(), ip, DAY)


def generic_event(ip: str) -> Hit:
    body = {"event": "signup", "userId": "customer-48151", "e-mail": EMAIL,
            "page": {"url": f"https://shop.example/welcome?email={quote(EMAIL)}&plan=gold", "title": "Welcome"},
            "referrer": "https://mail.example/inbox?msg=123",
            "context": {"ip": ip, "client_id": "1187452311.1714550000", "locale": "de-CH",
                        "note": f"signed up from {ip} as {EMAIL}"},
            "items": [{"sku": "RUN-2-42", "qty": 1}]}
    return Hit("POST", "/collect/generic", (("user_id", "48151"), ("v", "1")), (("User-Agent", CHROME_WIN),),
               json.dumps(body).encode(), ip, DAY)


RECORDED: dict[str, tuple[str, Callable[[str], Hit]]] = {
    "ga4-pageview": ("ga4", ga4_pageview),
    "ga4-batch": ("ga4", ga4_batch),
    "ga4-mp": ("ga4", ga4_mp),
    "matomo-get": ("matomo", matomo_pageview),
    "matomo-post-ecommerce": ("matomo", matomo_ecommerce_post),
    "matomo-bulk": ("matomo", matomo_bulk),
    "plausible-pageview": ("plausible", plausible_pageview),
    "plausible-revenue": ("plausible", plausible_revenue),
    "umami-event": ("umami", umami_event),
    "generic": ("generic", generic_event),
}


def policy(**overrides: Any) -> Policy:
    settings_: dict[str, Any] = {"own_hosts": frozenset({"shop.example"}), "referrer": "origin",
                                 "matomo_token_auth": TOKEN}
    settings_.update(overrides)
    return Policy(**settings_)


def context(mode: str, *, when: datetime = DAY, marketing: bool = False, country: str | None = "SE") -> Context:
    return Context(mode, daily_key(SECRET, when.date()), statistics=mode == "consented",  # type: ignore[arg-type]
                   marketing=marketing, location=Location(country, None) if country else None)


def run(backend: str, hit: Hit, mode: str, **kw: Any) -> Hit:
    pol = kw.pop("pol", None) or policy()
    result = anonymise(backend, hit, pol, context(mode, **kw))  # type: ignore[arg-type]
    assert isinstance(result, Hit), result
    return result


def query_of(hit: Hit) -> dict[str, str]:
    return dict(hit.query)


def form_of(hit: Hit) -> dict[str, str]:
    return dict(parse_qsl(hit.body.decode(), keep_blank_values=True))


def body_json(hit: Hit) -> Any:
    return json.loads(hit.body)


def header(hit: Hit, name: str) -> str | None:
    return hit.header(name)


# --- the promises, for every backend, mode, address family and IP policy --------------------------------

IP_POLICIES = [
    pytest.param({}, id="ip-drop"),
    pytest.param({"ipv4": "v4/24", "ipv6": "v6/48"}, id="ip-24-48"),
    pytest.param({"ipv4": "v4/16", "ipv6": "v6/32"}, id="ip-16-32"),
]


@pytest.mark.parametrize("ip", CLIENTS)
@pytest.mark.parametrize("mode", ["consented", "exempt"])
@pytest.mark.parametrize("ip_policy", IP_POLICIES)
@pytest.mark.parametrize("name", list(RECORDED))
def test_no_client_address_and_no_email_leave(name: str, ip_policy: dict[str, str], mode: str, ip: str) -> None:
    backend, make = RECORDED[name]
    out = run(backend, make(ip), mode, pol=policy(**ip_policy))
    assert_clean(out, ip)
    assert "Cookie" not in {k for k, _ in out.headers} and "Referer" not in {k for k, _ in out.headers}
    assert out.header("x-forwarded-for") in (None, out.client_ip)


def test_the_leak_search_itself_finds_every_spelling() -> None:
    """The checker above must be able to fail: every form it knows is found in a request that holds it."""
    for ip in CLIENTS:
        for form in address_forms(ip):
            hit = Hit("GET", "/x", (("a", f"x{form}y"),), (), b"", "", DAY)
            with pytest.raises(AssertionError):
                assert_clean(hit, ip)
    with pytest.raises(AssertionError):
        assert_clean(Hit("GET", "/x", (), (), f"mail {quote(quote(EMAIL))}".encode(), "", DAY), IPV4)


@pytest.mark.parametrize("name", list(RECORDED))
def test_drop_mode_forwards_nothing(name: str) -> None:
    backend, make = RECORDED[name]
    result = anonymise(backend, make(IPV4), policy(), context("drop"))  # type: ignore[arg-type]
    assert result == Dropped("not_consented")


@pytest.mark.parametrize("ip", [IPV4, IPV6])
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.text(alphabet="abcXYZ019 -_./:;=&?#%@+", max_size=12),
       after=st.text(alphabet="abcXYZ019 -_./:;=&?#%@+", max_size=12),
       spelling=st.sampled_from(["plain", "upper", "encoded", "twice", "mapped"]),
       where=st.sampled_from(["ga4", "plausible", "umami", "generic", "matomo"]))
def test_an_address_hidden_anywhere_never_leaves(ip: str, before: str, after: str, spelling: str, where: str) -> None:
    """Whatever text surrounds it and however it is spelled, the address is cleaned, or the hit is dropped."""
    form = ip
    if spelling == "upper":
        form = ip.upper()
    elif spelling == "encoded":
        form = quote(ip, safe="")
    elif spelling == "twice":
        form = quote(quote(ip, safe=""), safe="")
    elif spelling == "mapped" and ":" not in ip:
        form = f"::ffff:{ip}"
    value = f"{before}{form}{after}"
    hit = {
        "ga4": lambda: Hit("POST", "/g/collect", (("v", "2"), ("en", "x"), ("ep.note", value), ("dt", value)),
                           (), b"", ip, DAY),
        "plausible": lambda: Hit("POST", "/api/event", (), (), json.dumps(
            {"name": "x", "url": f"https://shop.example/?q={quote(value)}", "props": {"note": value}}).encode(),
            ip, DAY),
        "umami": lambda: Hit("POST", "/api/send", (), (), json.dumps(
            {"type": "event", "payload": {"url": "/", "title": value, "data": {"note": value}}}).encode(), ip, DAY),
        "generic": lambda: Hit("POST", "/g", (("q", value),), (), json.dumps({"a": [value, {"b": value}]}).encode(),
                               ip, DAY),
        "matomo": lambda: Hit("GET", "/matomo.php", (("idsite", "1"), ("action_name", value), ("e_n", value)),
                              (), b"", ip, DAY),
    }[where]()
    for mode in ("consented", "exempt"):
        result = anonymise(where, hit, policy(property_allow=frozenset({"note"})), context(mode))  # type: ignore[arg-type]
        if isinstance(result, Dropped):
            assert result.reason == "leak"
        else:
            assert_clean(result, ip)


def _leaves(ip: str) -> st.SearchStrategy[Any]:
    secret = st.sampled_from([ip, f"::ffff:{ip}" if ":" not in ip else ip.upper(), EMAIL, quote(EMAIL),
                              f"https://shop.example/?e={quote(EMAIL)}&ip={ip}", f"https://{ip}/x", f"a {ip} b"])
    return st.one_of(secret, st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.booleans(),
                     st.none())


def _json(ip: str) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["url", "u", "referrer", "r", "name", "n", "props", "p", "data", "payload", "type",
                            "events", "params", "client_id", "user_id", "requests", "ip", "id", "title", "x"])
    return st.recursive(_leaves(ip), lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(keys, inner, max_size=5)), max_leaves=12)


@pytest.mark.parametrize("ip", [IPV4, IPV6])
@settings(max_examples=examples(200), deadline=None)
@given(data=st.data())
def test_arbitrary_bodies_never_raise_and_never_leak(ip: str, data: st.DataObject) -> None:
    backend, path = data.draw(st.sampled_from([("ga4", "/mp/collect"), ("plausible", "/api/event"),
                                               ("umami", "/api/send"), ("generic", "/c"), ("matomo", "/matomo.php")]))
    shape = data.draw(_json(ip))
    leaf = data.draw(_leaves(ip).map(str))
    if data.draw(st.integers(0, 3)):  # mostly inside each backend's envelope, so its transform is reached
        if backend == "ga4":
            shape = {"client_id": leaf, "user_id": leaf, "user_properties": shape,
                     "events": [{"name": leaf, "params": shape if isinstance(shape, dict) else {"x": shape}}]}
        elif backend == "plausible":
            shape = {"name": leaf, "url": f"https://shop.example/{leaf}", "referrer": leaf, "props": shape}
        elif backend == "umami":
            shape = {"type": "event", "payload": shape if isinstance(shape, dict) else {"url": leaf, "data": shape}}
    if backend == "matomo":
        shape = {"requests": [("?" + encode_query([("url", str(v)), ("e_n", str(v))])) for v in
                              (shape if isinstance(shape, list) else [shape])]}
    query = tuple(data.draw(st.lists(st.tuples(st.sampled_from(["dl", "dr", "cid", "q", "url"]),
                                               _leaves(ip).map(str)), max_size=3)))
    hit = Hit("POST", path, query, (("User-Agent", f"Mozilla/5.0 ({ip})"),), json.dumps(shape).encode(), ip, DAY)
    for mode in ("consented", "exempt"):
        result = anonymise(backend, hit, policy(ipv4="v4/24"), context(mode))  # type: ignore[arg-type]
        if isinstance(result, Hit):
            assert_clean(result, ip)
        else:
            assert result.reason in ("malformed", "leak", "identify"), result
            assert "while reading" not in result.detail, result  # a parser crash, caught: still a bug


def test_the_last_check_drops_a_hit_whose_address_only_appears_once_encoded() -> None:
    """A control character before the address hides it until the value is percent-encoded: the final
    search of the finished request catches it and drops the hit instead of sending it."""
    hit = Hit("POST", "/g/collect", (("v", "2"), ("en", "x"), ("ep.note", "\x18" + IPV4[1:])), (), b"", IPV4, DAY)
    assert anonymise("ga4", hit, policy(), context("consented")) == Dropped(
        "leak", "the client address survived anonymisation")


@pytest.mark.parametrize("backend", ["plausible", "umami", "generic"])
def test_an_email_spelled_with_json_escapes_is_cleaned(backend: str) -> None:
    """"jane\\u0040example.com" is no e-mail to a search of the raw body, but it is one to the backend."""
    event = {"name": "pageview", "url": "https://shop.example/", "domain": "shop.example", "website": "w",
             "hostname": "shop.example", "props": {"note": "jane@example.com"}, "data": {"note": "jane@example.com"}}
    body = json.dumps({"type": "event", "payload": event} if backend == "umami" else event).replace("@", "\\u0040")
    hit = Hit("POST", "/api/send" if backend == "umami" else "/api/event", (), (("User-Agent", "Mozilla/5.0"),),
              body.encode(), IPV4, DAY)
    out = run(backend, hit, "consented")
    assert b"example.com" not in out.body and b"jane" not in out.body, out.body


def test_headers_are_cleaned_too() -> None:
    hit = Hit("POST", "/api/event", (), (("User-Agent", f"Mozilla/5.0 (X11; Linux x86_64) probe/{IPV4} {EMAIL}"),),
              json.dumps({"name": "pageview", "url": "https://shop.example/"}).encode(), IPV4, DAY)
    out = run("plausible", hit, "consented")
    assert out.header("user-agent") == "Mozilla/5.0 (X11; Linux x86_64) probe/redacted redacted"
    assert_clean(out, IPV4)


def test_ordinary_hits_are_cleaned_not_dropped() -> None:
    for name, (backend, make) in RECORDED.items():
        for ip in CLIENTS:
            for mode in ("consented", "exempt"):
                result = anonymise(backend, make(ip), policy(), context(mode))  # type: ignore[arg-type]
                assert isinstance(result, Hit), (name, ip, mode, result)


# --- ids: stable within a day, different across days and visitors ----------------------------------------

def _ids(hit: Hit) -> dict[str, str]:
    """The identifiers a backend would use to recognise the visitor."""
    ids = dict(hit.query)
    if hit.path.endswith("/mp/collect"):
        body = body_json(hit)
        return {"cid": body["client_id"], "sid": str(body["events"][0]["params"]["session_id"])}
    if "matomo" in hit.path:
        form = form_of(hit) if hit.body and not hit.body.startswith(b"{") else ids
        return {"_id": form.get("_id", ""), "cip": form.get("cip", "")}
    if hit.path == "/g/collect":
        return {"cid": ids["cid"], "sid": ids["sid"]}
    return {"address": hit.client_ip}


IDENTIFIED = {
    "ga4": lambda ip, v: ga4_pageview(ip, cid=f"{v}.1714550000"),
    "ga4-mp": lambda ip, v: ga4_mp(ip, client_id=f"{v}.1714550000"),
    "matomo": lambda ip, v: matomo_pageview(ip, visitor=f"{v:016x}"),
    "plausible": lambda ip, v: plausible_pageview(ip),
    "umami": lambda ip, v: umami_event(ip),
}
OTHER_VISITOR = {IPV4: "81.2.69.160", IPV6: "2001:480::1"}


@pytest.mark.parametrize("ip", [IPV4, IPV6])
@pytest.mark.parametrize("kind", list(IDENTIFIED))
def test_exempt_ids_are_stable_within_a_day_and_change_the_next(kind: str, ip: str) -> None:
    backend = "ga4" if kind.startswith("ga4") else kind
    make = IDENTIFIED[kind]

    def ids(when: datetime, visitor: int = 1187452311, address: str = ip) -> dict[str, str]:
        hit = make(address, visitor)
        hit = Hit(hit.method, hit.path, hit.query, hit.headers, hit.body, hit.client_ip, when)
        return _ids(run(backend, hit, "exempt", when=when))

    morning, evening = ids(DAY.replace(hour=0, minute=1)), ids(DAY.replace(hour=23, minute=59))
    tomorrow = ids(DAY + timedelta(days=1))
    assert morning == evening
    assert all(value for value in morning.values())
    for key, value in morning.items():
        assert tomorrow[key] != value, key
    assert ids(DAY, visitor=2000000001, address=OTHER_VISITOR[ip]) != morning
    original = make(ip, 1187452311)
    for value in morning.values():  # the hashed id is none of the originals
        assert value not in (original.query_string() + original.body.decode())


def test_a_ga4_session_keeps_one_session_id_across_page_hits_batches_and_the_measurement_protocol() -> None:
    page = query_of(run("ga4", ga4_pageview(IPV4), "exempt"))
    batch = query_of(run("ga4", ga4_batch(IPV4), "exempt"))
    mp = body_json(run("ga4", ga4_mp(IPV4), "exempt"))
    assert page["cid"] == batch["cid"] == mp["client_id"]
    assert page["sid"] == batch["sid"] == str(mp["events"][0]["params"]["session_id"])
    assert page["sct"] == "1"  # how often the visitor came before is cross-visit history
    later_session = query_of(run("ga4", ga4_pageview(IPV4, sid="1714569999"), "exempt"))
    assert later_session["cid"] == page["cid"] and later_session["sid"] != page["sid"]
    other_visitor = query_of(run("ga4", ga4_pageview(IPV4, cid="999.1714550000"), "exempt"))
    assert other_visitor["sid"] != page["sid"]  # same session start second, different visitor
    assert re.fullmatch(r"\d{10}\.\d{10}", page["cid"])
    assert page["cid"].endswith(f".{int(datetime(2024, 5, 1, tzinfo=UTC).timestamp())}")


def test_daily_keys() -> None:
    d = date(2024, 5, 1)
    assert daily_key(SECRET, d) == daily_key(SECRET, d)
    assert daily_key(SECRET, d) != daily_key(SECRET, d + timedelta(days=1))
    assert daily_key(SECRET, d) != daily_key(SECRET + b"!", d)
    keys = DailyKeys(SECRET)
    assert keys.for_time(datetime(2024, 5, 1, 23, 59, tzinfo=UTC)) == daily_key(SECRET, d)
    # 01:30 in Amsterdam on 2 May is still 1 May in UTC
    amsterdam = datetime(2024, 5, 2, 1, 30, tzinfo=UTC) - timedelta(hours=2)
    assert keys.for_time(amsterdam.replace(tzinfo=UTC)) == daily_key(SECRET, d)
    assert keys.for_time(datetime(2024, 5, 2, 0, 0, tzinfo=UTC)) == daily_key(SECRET, d + timedelta(days=1))
    with pytest.raises(ValueError):
        daily_key(b"short", d)
    with pytest.raises(ValueError):
        Context("exempt", b"short")
    with pytest.raises(ValueError):
        Context("consented", daily_key(SECRET, d), statistics=False)


# --- consent fields always tell the truth ---------------------------------------------------------------

@pytest.mark.parametrize(("mode", "statistics", "marketing", "gcs", "npa"), [
    ("exempt", False, False, "G100", "1"),
    ("exempt", False, True, "G110", "0"),
    ("consented", True, False, "G101", "1"),
    ("consented", True, True, "G111", "0"),
])
def test_ga4_consent_fields_state_the_real_choice(mode: str, statistics: bool, marketing: bool, gcs: str,
                                                  npa: str) -> None:
    ctx = Context(mode, daily_key(SECRET, DAY.date()), statistics=statistics, marketing=marketing)  # type: ignore[arg-type]
    for make in (ga4_pageview, ga4_batch):
        out = anonymise("ga4", make(IPV4), policy(), ctx)
        assert isinstance(out, Hit)
        assert [v for k, v in out.query if k == "gcs"] == [gcs]
        assert [v for k, v in out.query if k == "npa"] == [npa]
        gcd = query_of(out)["gcd"]
        letters = re.fullmatch(r"\d+([a-z])\d+([a-z])\d+([a-z])\d+([a-z])\d+", gcd)
        assert letters is not None, gcd
        truth = (marketing, statistics, marketing, marketing)
        for letter, granted in zip(letters.groups(), truth, strict=True):
            assert letter in ("trnv" if granted else "pqmu"), gcd
        for line in out.body.decode().splitlines():  # a body line's own consent fields are corrected too
            fields = dict(parse_qsl(line))
            if "gcs" in fields:
                assert fields["gcs"] == gcs and fields["npa"] == npa
    mp = anonymise("ga4", ga4_mp(IPV4), policy(), ctx)
    assert isinstance(mp, Hit)
    state = "GRANTED" if marketing else "DENIED"
    assert body_json(mp)["consent"] == {"ad_user_data": state, "ad_personalization": state}
    assert body_json(mp)["non_personalized_ads"] is not marketing


def test_gcd_keeps_how_a_right_signal_was_set_and_corrects_a_wrong_one() -> None:
    hit = ga4_pageview(IPV4)
    hit = Hit(hit.method, hit.path, tuple((k, "11r1q1l1p5" if k == "gcd" else v) for k, v in hit.query),
              hit.headers, hit.body, hit.client_ip, DAY)
    out = run("ga4", hit, "consented")
    # ad_storage r (granted by update) is wrong for a visitor without marketing consent → m;
    # analytics q (denied) is wrong → n; l (unset, which Google reads as granted) → m; p stays
    assert query_of(out)["gcd"] == "11m1n1m1p5"


# --- GA4 ------------------------------------------------------------------------------------------------

def test_ga4_consented_keeps_page_title_events_and_reduces_the_address() -> None:
    out = run("ga4", ga4_pageview(IPV4), "consented", pol=policy(ipv4="v4/24"))
    q = query_of(out)
    assert q["en"] == "page_view" and q["tid"] == "G-7QX2B9K1LM"
    assert q["dt"] == "Runner 2 empfohlen für redacted"
    dl = urlsplit(q["dl"])
    assert (dl.netloc, dl.path, dl.fragment) == ("shop.example", "/products/runner-2", "reviews")
    assert parse_qsl(dl.query) == [("utm_source", "newsletter"), ("utm_medium", "email"),
                                   ("utm_campaign", "spring"), ("color", "blue")]  # e-mail and ad click id gone
    assert q["dr"] == "https://www.google.com/search?q=running+shoes+jane+doe"  # consented: whole, minus e-mails
    assert q["cid"] == "1187452311.1714550000" and q["uid"] == "customer-48151" and q["sct"] == "7"
    assert q["up.loyalty_tier"] == "gold" and q["uap"] == "Windows" and q["ep.content_group"] == "products"
    assert "ep.debug_ip" not in q and "em" not in q  # the address itself; ad user data without marketing
    assert [v for k, v in out.query if k == "_uip"] == ["89.160.20.0"]
    assert out.header("user-agent") == CHROME_WIN and out.client_ip == "89.160.20.0"
    batch = run("ga4", ga4_batch(IPV4), "consented")
    lines = [dict(parse_qsl(line)) for line in batch.body.decode().splitlines()]
    assert [line["en"] for line in lines] == ["purchase", "scroll", "click"]
    assert lines[0]["ep.transaction_id"] == "T-20240501-0042" and lines[0]["pr1"].startswith("idRUN-2-42~")
    assert "ep.customer_email" not in lines[0]
    assert lines[1]["ep.client_address"] == "visitor at redacted"
    assert lines[2]["ep.link_url"] == "https://partner.example/offer?campaign=x"


def test_ga4_marketing_consent_lets_ad_data_through() -> None:
    q = query_of(run("ga4", ga4_pageview(IPV4), "consented", marketing=True))
    assert q["em"] == "tv.1~em.8a7b6c5d4e3f"
    assert "gclid=Cj0KCQjw" in q["dl"]


@pytest.mark.parametrize(("ip", "ip_policy", "uip"), [
    (IPV4, {}, "0.0.0.0"),
    (IPV4, {"ipv4": "v4/16"}, "89.160.0.0"),
    (MAPPED, {"ipv4": "v4/24"}, "89.160.20.0"),
    (IPV6, {"ipv6": "v6/48"}, "2a02:e040::"),
    (IPV6, {"ipv6": "v6/32"}, "2a02:e040::"),
    (IPV6, {"ipv4": "v4/24"}, "0.0.0.0"),  # families are configured separately
    ("89.160.20.0", {"ipv4": "v4/24"}, "0.0.0.0"),  # host part already zero: it would be the address itself
])
def test_ga4_uip(ip: str, ip_policy: dict[str, str], uip: str) -> None:
    out = run("ga4", ga4_pageview(ip), "consented", pol=policy(**ip_policy))
    assert [v for k, v in out.query if k == "_uip"] == [uip]
    assert_clean(out, ip)


def test_ga4_exempt_keeps_only_anonymous_measurement() -> None:
    out = run("ga4", ga4_pageview(IPV4), "exempt", pol=policy(ipv4="v4/24"))
    q = query_of(out)
    for gone in ("uid", "up.loyalty_tier", "upn.lifetime_orders", "uaa", "uab", "uafvl", "uam", "uamb", "uap",
                 "uapv", "uaw", "em", "ep.debug_ip", "dma_x"):
        assert gone not in q, gone
    assert q["_uip"] == "0.0.0.0"  # no address without consent, whatever the truncation setting
    assert q["cid"] != "1187452311.1714550000" and q["sid"] != "1714554000" and q["sct"] == "1"
    assert q["dl"] == "https://shop.example/products/runner-2?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    assert q["dr"] == "https://www.google.com/"
    assert q["en"] == "page_view" and q["dt"] == "Runner 2 empfohlen für redacted"
    assert q["ep.content_group"] == "products" and q["ul"] == "de-ch" and q["_fv"] == "1"
    assert out.header("user-agent") == ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
    assert out.client_ip == ""
    lines = [dict(parse_qsl(line)) for line in run("ga4", ga4_batch(IPV4), "exempt").body.decode().splitlines()]
    assert lines[0] == {"en": "purchase", "_et": "4021", "epn.value": "129.90", "ep.currency": "EUR",
                        "epn.tax": "20.74", "cu": "EUR", "pr1": "idRUN-2-42~nmRunner 2~brAcme~caShoes~pr129.90~qt1"}
    assert lines[1] == {"en": "scroll", "epn.percent_scrolled": "90"}
    assert lines[2]["en"] == "click" and "ep.link_url" not in lines[2] and lines[2]["gcs"] == "G100"


def test_ga4_exempt_referrers_by_policy() -> None:
    def dr(referrer: str, mode: str = "origin") -> str | None:
        hit = ga4_pageview(IPV4)
        hit = Hit(hit.method, hit.path, tuple((k, referrer if k == "dr" else v) for k, v in hit.query),
                  hit.headers, hit.body, hit.client_ip, DAY)
        return query_of(run("ga4", hit, "exempt", pol=policy(referrer=mode))).get("dr")

    assert dr("https://www.google.com/search?q=x") == "https://www.google.com/"
    assert dr("https://www.google.com/search?q=x", "none") is None
    assert dr("http://blog.example:8080/post?id=1#c") == "http://blog.example:8080/"
    # the site's own pages (and subdomains) are cleaned like page URLs, not cut to an origin
    assert dr(f"https://www.shop.example/cart?utm_source=x&session=abc&email={EMAIL}") == \
        "https://www.shop.example/cart?utm_source=x"
    assert dr("https://help.shop.example/faq#returns", "none") == "https://help.shop.example/faq"
    assert dr(f"https://user:{quote(EMAIL)}@evil.example/") == "https://evil.example/"


def test_ga4_measurement_protocol() -> None:
    loc = Location("SE", None)
    consented = body_json(run("ga4", ga4_mp(IPV4), "consented", pol=policy(ipv4="v4/24", ga4_api_secret="s3cr3t")))
    assert consented["client_id"] == "1187452311.1714550000" and consented["user_id"] == "customer-48151"
    assert consented["ip_override"] == "89.160.20.0" and consented["user_location"] == {"country_id": loc.country}
    assert "user_data" not in consented
    assert consented["user_properties"] == {"loyalty_tier": {"value": "gold"}}
    params = consented["events"][0]["params"]
    assert params["transaction_id"] == "T-20240501-0042" and params["note"] == "requested by redacted from redacted"
    assert params["page_location"] == "https://shop.example/account/orders"
    exempt_hit = run("ga4", ga4_mp(IPV4), "exempt", pol=policy(ga4_api_secret="s3cr3t"))
    assert dict(exempt_hit.query) == {"measurement_id": "G-7QX2B9K1LM", "api_secret": "s3cr3t"}
    exempt = body_json(exempt_hit)
    assert set(exempt) == {"client_id", "timestamp_micros", "events", "consent", "non_personalized_ads",
                           "user_location"}
    params = exempt["events"][0]["params"]
    assert set(params) == {"session_id", "engagement_time_msec", "currency", "value", "page_location", "items"}
    assert exempt["events"][0]["name"] == "refund"


# --- Matomo ---------------------------------------------------------------------------------------------

def test_matomo_consented_with_token_sets_address_and_country_in_a_post() -> None:
    out = run("matomo", matomo_pageview(IPV4), "consented", pol=policy(ipv4="v4/16"))
    assert out.method == "POST" and out.query == ()  # the token never travels in a URL
    form = form_of(out)
    assert form["token_auth"] == TOKEN and form["cip"] == "89.160.0.0" and form["country"] == "se"
    assert list(form_of(out).values()).count(TOKEN) == 1
    assert form["_id"] == "5a3c2b1d0e9f8a7b" and "uid" not in form  # the whole value was an e-mail address
    assert form["action_name"] == "Runner 2 | Shop" and form["_idvc"] == "7"
    assert parse_qsl(urlsplit(form["url"]).query) == [("utm_source", "newsletter"), ("utm_campaign", "spring")]
    assert form["urlref"] == "https://www.bing.com/search?q=runner+2+review"
    assert "dimension2" not in form and "6.6.6.6" not in out.body.decode()
    assert json.loads(form["_cvar"]) == {"1": ["content_type", "product"]}  # the e-mail variable goes whole
    assert out.header("user-agent") == SAFARI_IPHONE


def test_matomo_without_token_cannot_set_address_or_country() -> None:
    out = run("matomo", matomo_pageview(IPV4), "consented", pol=policy(matomo_token_auth=None, ipv4="v4/24"))
    assert out.method == "GET" and out.body == b""
    q = query_of(out)
    assert not {"token_auth", "cip", "country"} & set(q)
    assert out.client_ip == ""


def test_matomo_exempt() -> None:
    out = run("matomo", matomo_pageview(IPV4), "exempt", pol=policy(ipv4="v4/24"))
    form = form_of(out)
    assert re.fullmatch(r"[0-9a-f]{16}", form["_id"]) and form["_id"] != "5a3c2b1d0e9f8a7b"
    for gone in ("uid", "_idts", "_idvc", "_viewts", "_ref", "_rcn", "fla", "pdf", "qt", "realp", "wma", "java",
                 "ag", "cookie", "uadata", "dimension1", "dimension2"):
        assert gone not in form, gone
    assert form["cip"].startswith("2001:db8:")  # a daily pseudonym, not an address, not the truncation
    assert form["country"] == "se" and form["token_auth"] == TOKEN
    assert form["url"] == "https://shop.example/products/runner-2?utm_source=newsletter&utm_campaign=spring"
    assert form["urlref"] == "https://www.bing.com/" and form["lang"] == "de-CH"
    assert json.loads(form["_cvar"]) == {"1": ["content_type", "product"]}
    assert form["res"] == "1920x1080" and form["pv_id"] == "AbC123" and form["_idn"] == "0"
    assert out.header("user-agent") == generalise(SAFARI_IPHONE) and out.header("accept-language") == "de-CH"
    ecommerce = form_of(run("matomo", matomo_ecommerce_post(IPV4), "exempt"))
    assert "ec_id" not in ecommerce and "uid" not in ecommerce and ecommerce["revenue"] == "129.90"
    assert json.loads(ecommerce["ec_items"]) == [["RUN-2-42", "Runner 2", "Shoes", 129.9, 1]]
    assert ecommerce["e_n"] == "card of redacted" and "search" not in ecommerce
    assert ecommerce["_id"] == form["_id"]  # one visitor, one id all day


def test_matomo_bulk() -> None:
    out = run("matomo", matomo_bulk(IPV4), "exempt")
    body = body_json(out)
    assert body["token_auth"] == TOKEN and len(body["requests"]) == 2
    first, second = (dict(parse_query(r.partition("?")[2])) for r in body["requests"])
    assert "uid" not in first and first["_id"] == second["_id"] != "5a3c2b1d0e9f8a7b"
    assert "e_n" not in first  # the whole value was the address
    assert second["url"] == "https://shop.example/login" and first["country"] == "se"
    without_token = body_json(run("matomo", matomo_bulk(IPV4), "consented", pol=policy(matomo_token_auth=None)))
    assert "token_auth" not in without_token
    assert all("cip=" not in r and "token_auth" not in r for r in without_token["requests"])


# --- Plausible ------------------------------------------------------------------------------------------

def test_plausible_consented() -> None:
    out = run("plausible", plausible_pageview(IPV4), "consented", pol=policy(ipv4="v4/24"))
    body = body_json(out)
    assert body["name"] == "pageview" and body["domain"] == "shop.example"
    assert body["url"] == "https://shop.example/blog/spring-sale?utm_source=newsletter"
    assert body["referrer"] == "https://news.ycombinator.com/item?id=40215"
    assert body["props"] == {"author": "Kim"}  # identifier-named keys go even with consent; the IP value too
    assert out.header("x-forwarded-for") == "89.160.20.0" and out.header("user-agent") == SAFARI_IPHONE


def test_plausible_without_truncation_counts_visitors_by_a_daily_pseudonym() -> None:
    def xff(ip: str, mode: str, when: datetime = DAY) -> str | None:
        hit = plausible_pageview(ip)
        hit = Hit(hit.method, hit.path, hit.query, hit.headers, hit.body, ip, when)
        return run("plausible", hit, mode, when=when).header("x-forwarded-for")

    a = xff(IPV4, "consented")
    assert a is not None and ipaddress.ip_address(a) in ipaddress.ip_network("2001:db8::/32")
    assert a == xff(IPV4, "consented", DAY.replace(hour=23)) == xff(IPV4, "exempt")
    assert a != xff(OTHER_VISITOR[IPV4], "consented") and a != xff(IPV4, "consented", DAY + timedelta(days=1))
    assert xff(MAPPED, "consented") == a  # an IPv4-mapped address is the same visitor


def test_plausible_exempt() -> None:
    body = body_json(run("plausible", plausible_revenue(IPV4), "exempt"))
    assert body["url"] == "https://shop.example/#/checkout/thank-you"  # hash routing keeps the route only
    assert body["props"] == {"method": "card"} and body["revenue"] == {"currency": "EUR", "amount": "129.90"}
    assert "referrer" not in body
    page = body_json(run("plausible", plausible_pageview(IPV4), "exempt", pol=policy(referrer="none")))
    assert "referrer" not in page and "props" not in page
    assert page["url"] == "https://shop.example/blog/spring-sale?utm_source=newsletter"


# --- Umami ----------------------------------------------------------------------------------------------

def test_umami_truncated_address_goes_in_the_payload() -> None:
    out = run("umami", umami_event(IPV6), "consented", pol=policy(ipv6="v6/32"))
    payload = body_json(out)["payload"]
    assert payload["ip"] == "2a02:e040::" and payload["userAgent"] == SAFARI_IPHONE
    assert out.header("cf-ipcountry") is None  # Umami ignores location headers once the payload has an ip
    assert payload["title"] == "Welcome back redacted" and payload["id"] == "customer-48151"
    consented_drop = body_json(run("umami", umami_event(IPV4), "consented"))["payload"]
    assert "ip" not in consented_drop and consented_drop["userAgent"] == SAFARI_IPHONE
    assert payload["url"] == "/products/runner-2?utm_source=newsletter#specs"
    assert payload["referrer"] == "https://www.instagram.com/p/C6xyz/"  # the click id goes without marketing
    assert payload["data"] == {"method": "quick-add", "sku": "RUN-2-42"}


def test_umami_otherwise_pseudonym_and_country_headers() -> None:
    geo = GeoIP(GEOIP)
    try:
        location = geo.locate(IPV6)
    finally:
        geo.close()
    assert location.country == "NL"
    ctx = Context("exempt", daily_key(SECRET, DAY.date()), location=location)
    out = anonymise("umami", umami_event(IPV6), policy(ipv6="v6/48"), ctx)
    assert isinstance(out, Hit)
    payload = body_json(out)["payload"]
    assert "ip" not in payload and "id" not in payload
    assert payload["userAgent"] == generalise(SAFARI_IPHONE) == out.header("user-agent")
    assert out.header("cf-ipcountry") == "NL"
    assert ipaddress.ip_address(out.header("cf-connecting-ip") or "") in ipaddress.ip_network("2001:db8::/32")
    assert payload["data"] == {"method": "quick-add"} and payload["referrer"] == "https://www.instagram.com/"
    assert payload["url"] == "/products/runner-2?utm_source=newsletter"
    no_country = anonymise("umami", umami_event(IPV6), policy(country_when_exempt=False), ctx)
    assert isinstance(no_country, Hit) and no_country.header("cf-ipcountry") is None


def test_umami_identify_needs_consent() -> None:
    assert anonymise("umami", umami_identify(IPV4), policy(), context("exempt")) == Dropped(
        "identify", "Umami identify without statistics consent")
    out = run("umami", umami_identify(IPV4), "consented")
    assert body_json(out)["payload"]["data"] == {"plan": "gold"}


# --- generic --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["consented", "exempt"])
def test_generic_removes_id_keys_emails_addresses_and_cleans_urls(mode: str) -> None:
    out = run("generic", generic_event(IPV4), mode)
    body = body_json(out)
    assert set(body) == {"event", "page", "referrer", "context", "items"}
    assert body["context"] == {"locale": "de-CH", "note": "signed up from redacted as redacted"}
    assert body["page"] == {"url": "https://shop.example/welcome" + ("?plan=gold" if mode == "consented" else ""),
                            "title": "Welcome"}
    assert body["referrer"] == ("https://mail.example/inbox?msg=123" if mode == "consented" else "https://mail.example/")
    assert body["items"] == [{"sku": "RUN-2-42", "qty": 1}]
    assert out.query == (("v", "1"),) and out.header("x-country-code") == "SE"
    custom = run("generic", generic_event(IPV4), mode, pol=policy(id_keys=frozenset({"sku"})))
    assert body_json(custom)["items"] == [{"qty": 1}] and "userId" in body_json(custom)


@pytest.mark.parametrize(("backend", "body"), [
    ("generic", b"[1, 2]"), ("generic", b"not json"), ("plausible", b'{"name": "x"}'), ("umami", b'{"type": "event"}'),
    ("ga4", b"\xff\xfe"),
])
def test_malformed_bodies_are_dropped(backend: str, body: bytes) -> None:
    path = "/g/collect" if backend == "ga4" else "/x"
    result = anonymise(backend, Hit("POST", path, (), (), body, IPV4, DAY), policy(), context("consented"))  # type: ignore[arg-type]
    assert isinstance(result, Dropped) and result.reason == "malformed"


def test_encoded_bodies_and_unknown_backends_are_refused() -> None:
    hit = Hit("POST", "/api/event", (), (("Content-Encoding", "gzip"),), b"\x1f\x8b", IPV4, DAY)
    assert anonymise("plausible", hit, policy(), context("consented")).reason == "unsupported"  # type: ignore[union-attr]
    assert anonymise("segment", hit, policy(), context("consented")).reason == "unsupported"  # type: ignore[arg-type, union-attr]


# --- user agents ----------------------------------------------------------------------------------------

def test_generalised_user_agents_hide_builds_and_devices() -> None:
    other_build = CHROME_WIN.replace("124.0.6367.91", "124.0.6367.207")
    assert generalise(CHROME_WIN) == generalise(other_build)
    assert "6367" not in generalise(CHROME_WIN)
    pixel = ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro Build/AP1A.240405.002) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Chrome/124.0.6367.113 Mobile Safari/537.36")
    assert generalise(pixel) == ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                                 "Chrome/124.0.0.0 Mobile Safari/537.36")
    assert "17_0" in generalise(SAFARI_IPHONE) and "Version/17.0" in generalise(SAFARI_IPHONE)
    assert "17_4_1" not in generalise(SAFARI_IPHONE)
    assert generalise(FIREFOX_LINUX) == "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    edge = CHROME_WIN + " Edg/124.0.2478.80"
    assert generalise(edge).endswith("Edg/124.0.0.0")
    assert generalise("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)") == BOT
    assert generalise("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "HeadlessChrome/124.0.0.0 Safari/537.36") == BOT
    assert generalise(None) == BOT
