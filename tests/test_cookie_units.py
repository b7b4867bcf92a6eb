"""Cookie parsing, filtering and the consent cookie, in-process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

from consentproxy.config.model import ConsentConfig, CookieDeclaration, SiteConfig
from consentproxy.config.secrets import SigningKey
from consentproxy.consent.decision import ALL, decide
from consentproxy.consent.state import ConsentCodec, ConsentState, new_principal
from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.enforcement import CookieEnforcement, mark_private
from consentproxy.cookies.expiry import domain_variants, expiring_set_cookies
from consentproxy.cookies.header import parse_set_cookie, set_cookie_name
from consentproxy.cookies.inventory import CookieInventory

HTTP_STATE = json.loads((Path(__file__).parent / "data" / "http-state-parser.json").read_text())
KEY = SigningKey("k1", b"k" * 32)


def test_http_state_suite_has_222_cases() -> None:
    assert len(HTTP_STATE) == 222


@pytest.mark.parametrize("case", HTTP_STATE, ids=[c["test"] for c in HTTP_STATE])
def test_http_state_cookie_names(case: dict[str, Any]) -> None:
    """Every cookie the browser sent back was named exactly as our parser names one received header,
    and a header our parser says sets nothing never shows up."""
    derived = []
    for header in case["received"]:
        raw = header.encode("utf-8")
        name = set_cookie_name(raw)
        derived.append(None if name is None else name.decode("utf-8"))
    sent = [cookie["name"] for cookie in case["sent"]]
    for name in sent:
        assert name in derived, (case["test"], name, derived)
    if all(name is None for name in derived):
        assert sent == []


@pytest.mark.parametrize("header, name", [
    (b"foo=bar", b"foo"), (b"  A  = BC  ;foo", b"A"), (b"foo", None), (b"=abc", None), (b"", None),
    (b"a=" + b"x" * 5000, None), (b"z=y, a=b", b"z"), (b"$Version=1", b"$Version"),
])
def test_set_cookie_name(header: bytes, name: bytes | None) -> None:
    assert set_cookie_name(header) == name


def test_set_cookie_attributes() -> None:
    parsed = parse_set_cookie(b"_ga=GA1.1.1.2; Domain=.Kade-IT.nl; Path=/shop; Max-Age=3600; Secure; "
                              b"HttpOnly; SameSite=lax")
    assert parsed is not None
    name, cookie = parsed
    assert (name, cookie.domain, cookie.path, cookie.max_age) == (b"_ga", "kade-it.nl", "/shop", 3600)
    assert cookie.secure and cookie.httponly and cookie.samesite == "Lax" and not cookie.session
    for malformed in (b"bad=a\x01b", b"novalue", b"=x", b"big=" + b"v" * 4096):
        assert parse_set_cookie(malformed) is None
    assert parse_set_cookie(b"ok=1; Path=/") is not None


def _enforcement(unknown: str = "block") -> CookieEnforcement:
    consent = ConsentConfig(cookies=(CookieDeclaration("necessary", name="sid"),), unknown_cookies=unknown)  # type: ignore[arg-type]
    site = SiteConfig(name="s", hosts=("x",), upstream="http://127.0.0.1:1", consent=consent)
    return CookieEnforcement(site, ConsentCodec((KEY,)), CookieInventory(Path("/nonexistent-dir")))


class _Exchange:
    """The attributes of proxy.pipeline.Exchange the step uses."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.scope = {"raw_path": b"/"}
        self.request_headers = headers
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.extra: dict[str, Any] = {}
        self.host = b"www.kade-it.nl"
        self.scheme = "https"


def _everything_consented(step: CookieEnforcement) -> str:
    now = int(time.time())
    state = ConsentState(new_principal(), ALL - {"necessary"}, 1, now, now + 3600, "accept_all")
    return step.codec.encode(state)


cookie_text = st.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(cookie_text, max_size=4), st.lists(cookie_text, max_size=4))
def test_filter_never_raises_on_arbitrary_bytes(cookies: list[bytes], set_cookies: list[bytes]) -> None:
    step = _enforcement()
    exchange = _Exchange([(b"cookie", c) for c in cookies])
    step.on_request(exchange)  # type: ignore[arg-type]
    exchange.response_headers = [(b"set-cookie", c) for c in set_cookies]
    step.on_response(exchange)  # type: ignore[arg-type]


token = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters=";=,\" \\"),
                min_size=1, max_size=12)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters=";\" ,\\"),
                max_size=20)
pair = st.tuples(token, value).map(lambda p: f"{p[0]}={p[1]}".encode())
separator = st.sampled_from([b";", b"; ", b";  "])


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(pair, separator), min_size=1, max_size=10),
       st.lists(st.tuples(token, value, st.sampled_from(["", "; Path=/", "; HttpOnly; Secure", "; Max-Age=60"])),
                max_size=6))
def test_everything_consented_and_unknown_allowed_is_byte_identical(
    pieces: list[tuple[bytes, bytes]], set_cookies: list[tuple[str, str, str]]
) -> None:
    step = _enforcement(unknown="allow")
    header = b"".join(p + s for p, s in pieces[:-1]) + pieces[-1][0]
    consent = b"cp_consent=" + _everything_consented(step).encode()
    if any(p.startswith(b"cp_consent=") for p, _ in pieces):
        return
    exchange = _Exchange([(b"cookie", header), (b"cookie", consent)])
    step.on_request(exchange)  # type: ignore[arg-type]
    assert exchange.request_headers == [(b"cookie", header)]
    sent = [(b"set-cookie", f"{n}={v}{attrs}".encode()) for n, v, attrs in set_cookies if n != "cp_consent"]
    exchange.response_headers = list(sent)
    step.on_response(exchange)  # type: ignore[arg-type]
    assert [h for h in exchange.response_headers if h[0] == b"set-cookie"] == sent


def test_request_filter_keeps_pieces_byte_identical_and_in_order() -> None:
    step = _enforcement()
    exchange = _Exchange([(b"cookie", b"_ga=GA1.2.3; sid=abc;mystery=1;  theme=\"dark\"; _fbp=fb.1; sid=dup")])
    step.on_request(exchange)  # type: ignore[arg-type]
    assert exchange.request_headers == [(b"cookie", b"sid=abc; sid=dup")]


def test_consent_codec_rejects_tampering_unknown_keys_expiry_and_old_revisions() -> None:
    codec = ConsentCodec((SigningKey("new", b"n" * 32), KEY))
    now = int(time.time())
    good = ConsentState(new_principal(), frozenset({"statistics"}), 2, now, now + 60, "save_selection")
    value = codec.encode(good)
    assert value.split(".")[1] == "new"  # the first key signs
    assert codec.decode(value, 2) == good
    old_key_value = ConsentCodec((KEY,)).encode(good)
    assert codec.decode(old_key_value, 2) == good  # older keys still verify: rotation
    for position in range(len(value)):
        for bit in (1, 2, 4, 32):
            flipped = value[:position] + chr(ord(value[position]) ^ bit) + value[position + 1:]
            if flipped != value:
                assert codec.decode(flipped, 2) is None, (position, bit)
    assert ConsentCodec((SigningKey("other", b"o" * 32),)).decode(value, 2) is None
    assert codec.decode(value, 3) is None  # a newer notice revision asks again
    assert codec.decode(value, 2, now=now + 61) is None  # expired
    for junk in ("", "1", "1.new..", "garbage", "1.new.e30.AAAA", "é" * 10):
        assert codec.decode(junk, 2) is None


def test_decisions() -> None:
    assert decide(None, False).label == "none" and decide(None, True).label == "gpc"
    assert decide(None, True).allowed == {"necessary"}
    now = int(time.time())
    state = ConsentState("p", frozenset({"statistics"}), 1, now, now + 5, "save_selection")
    assert decide(state, True).label == "partial"  # an explicit choice wins over GPC
    assert decide(state, False).allows("statistics") and not decide(state, False).allows("marketing")


def test_classification_order_and_short_wildcards() -> None:
    consent = ConsentConfig(cookies=(CookieDeclaration("preferences", name="_ga"),
                                     CookieDeclaration("necessary", prefix="kade_"),
                                     CookieDeclaration("statistics", pattern="^stat[0-9]+$")))
    classifier = CookieClassifier(consent)
    assert classifier.classify("_ga").source == "declared"  # the site's word beats every list
    assert classifier.classify("_ga").category == "preferences"
    assert classifier.classify("kade_session").category == "necessary"
    assert classifier.classify("stat42").category == "statistics"
    assert classifier.classify("_gid").source == "catalogue"
    assert classifier.classify("AMCV_123").source == "database"
    assert classifier.classify("tp_anything").category == "unknown"  # "tp" is too short to be a prefix
    assert classifier.classify("sessionid").category == "necessary"


def test_expiry_variants() -> None:
    assert domain_variants("www.shop.kade-it.nl") == (None, "www.shop.kade-it.nl", "shop.kade-it.nl", "kade-it.nl")
    assert domain_variants("127.0.0.1") == (None,)
    headers = expiring_set_cookies(b"_ga", "www.kade-it.nl", frozenset({"/shop"}), secure=True)
    assert b"_ga=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Domain=kade-it.nl; Secure" in headers
    assert len(headers) == 6
    assert expiring_set_cookies(b"__Host-x", "a.b", frozenset(), False) == (
        b"__Host-x=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure",)


def test_mark_private() -> None:
    headers = [(b"cache-control", b"public, max-age=600, s-maxage=3600"), (b"vary", b"Accept-Encoding")]
    mark_private(headers)
    assert headers == [(b"cache-control", b"private, max-age=600"), (b"vary", b"Accept-Encoding, Cookie")]
    headers = [(b"cache-control", b"no-store")]
    mark_private(headers)
    assert headers == [(b"cache-control", b"no-store"), (b"vary", b"Cookie")]


def test_consent_set_cookie_attributes() -> None:
    from consentproxy.consent.state import consent_set_cookie

    codec = ConsentCodec((KEY,))
    now = int(time.time())
    state = ConsentState(new_principal(), frozenset(), 1, now, now + 86400 * 365, "reject_all")
    header = consent_set_cookie(codec, state, "cp_consent", secure=True, now=now)
    parsed = parse_set_cookie(header)
    assert parsed is not None
    name, attributes = parsed
    assert name == b"cp_consent" and attributes.httponly and attributes.secure
    assert attributes.samesite == "Lax" and attributes.path == "/" and attributes.domain == ""
    assert attributes.max_age == 86400 * 365  # a refusal is remembered as long as a consent
    value = header.split(b";")[0].split(b"=", 1)[1].decode()
    assert codec.decode(value, 1) == state
    assert b"Secure" not in consent_set_cookie(codec, state, "cp_consent", secure=False)


def test_builtin_catalogue_is_valid() -> None:
    """The shipped catalogue passes the same validation as a site's own [[services]]."""
    import tomllib

    from consentproxy.config.consent import read_consent
    from consentproxy.config.reader import Reader
    from consentproxy.cookies.classify import builtin_services

    path = Path(__file__).parent.parent / "consentproxy" / "data" / "services.toml"
    services = tomllib.loads(path.read_text())["service"]
    problems: list[Any] = []
    read_consent(Reader(str(path), problems, {"services": services}, "catalogue"))
    assert problems == []
    assert len(builtin_services()) >= 30
    names = [service.name for service in builtin_services()]
    assert len(names) == len(set(names))


def test_html_corpus_manifest_is_consistent() -> None:
    """Every tracker the corpus manifest lists names a catalogue service, and its marker is unique."""
    from consentproxy.cookies.classify import builtin_services

    corpus = Path(__file__).parent / "data" / "html-corpus"
    manifest = json.loads((corpus / "manifest.json").read_text())
    services = {service.name for service in builtin_services()}
    pages = sorted(corpus.glob("*.html"))
    assert len(pages) >= 50 and set(manifest) == {page.name for page in pages}
    for page in pages:
        text = page.read_text("utf-8-sig")
        for tracker in manifest[page.name]:
            assert tracker["service"] in services or tracker["service"] == "site-tagged", tracker
            assert text.count(tracker["marker"]) == 1, (page.name, tracker["marker"])
