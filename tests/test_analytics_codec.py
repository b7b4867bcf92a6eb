"""The analytics query codec is the standard library's, only faster: same pairs, same escapes, same text.

`parse_query`, `percent_decode` and `encode_component` replace `parse_qsl`,
`unquote` and `quote` on every hit; whatever a browser or an attacker sends,
they must return exactly what those return (or raise where they raise).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

from consentproxy.analytics.model import encode_component, encode_query, parse_query, percent_decode

# Query syntax, escapes valid and broken, backslashes (the fast decoder's own escape), UTF-8 and lone surrogates.
_TRICKY = st.sampled_from([*"a=&+%%%2F3AFcex\\ ;é€/?#G\x00\ud800", "%C3", "%A9", "%E2%82", "%zz", "\\x41"])
TEXT = st.lists(_TRICKY | st.characters(blacklist_categories=()), max_size=40).map("".join)


@settings(max_examples=examples(3000))
@given(TEXT)
def test_parse_query_is_parse_qsl(raw: str) -> None:
    assert parse_query(raw) == tuple(parse_qsl(raw, keep_blank_values=True, errors="replace"))


@settings(max_examples=examples(3000))
@given(TEXT)
def test_percent_decode_is_unquote(raw: str) -> None:
    assert percent_decode(raw) == unquote(raw)


@settings(max_examples=examples(3000))
@given(TEXT)
def test_encode_component_is_quote(text: str) -> None:
    try:
        expected, expected_plus = quote(text, safe=""), quote_plus(text, safe="")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: both refuse it
        for plus in (False, True):
            try:
                encode_component(text, plus=plus)
            except UnicodeEncodeError:
                continue
            raise AssertionError(f"encoded {text!r} that quote() refuses") from None
        return
    assert encode_component(text) == expected
    assert encode_component(text, plus=True) == expected_plus


@settings(max_examples=examples(1000))
@given(st.lists(st.tuples(TEXT, TEXT), max_size=8))
def test_encode_query_is_urlencode_and_parses_back(pairs: list[tuple[str, str]]) -> None:
    pairs = [(k, v) for k, v in pairs if not any("\ud800" <= c <= "\udfff" for c in k + v)]
    assert encode_query(pairs) == urlencode(pairs, quote_via=quote)
    assert encode_query(pairs, plus=True) == urlencode(pairs)
    assert parse_query(encode_query(pairs)) == tuple(pairs)


def test_known_spellings() -> None:
    assert parse_query("dl=https%3A%2F%2Fshop.example%2F%3Fq%3Da%2Bb&dt=Caf%C3%A9+%26+more&x&=y&&z=") == (
        ("dl", "https://shop.example/?q=a+b"), ("dt", "Café & more"), ("x", ""), ("", "y"), ("z", ""))
    assert percent_decode("100%") == "100%" and percent_decode("%4") == "%4"
    assert percent_decode("a\\x41%41") == "a\\x41A"
    assert encode_component("a b/é") == "a%20b%2F%C3%A9" and encode_component("a b", plus=True) == "a+b"
