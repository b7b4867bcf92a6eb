"""The scanner streams in linear work and bounded memory, however the page is cut into chunks.

Work is measured by the scanner's own counters, never by timings: `examined`
(bytes its searches stepped over) and `moved` (bytes moved within its buffer)
stay within a small multiple of the input, where reading an unfinished comment,
tag or attribute again from its `<` on every feed made them quadratic. What it
holds is bounded by `hold_limit`; past it the output is still the same whether
the page came whole or in pieces.
"""

from __future__ import annotations

import gc
import random
from typing import Any

import pytest
from html_support import CORPUS, random_sizes, rewrite, scanned_bytes

from consentproxy.html import rewriter as rewriter_module
from consentproxy.html._scanner import NOSCRIPT, SCRIPT, Scanner

MIB = 1 << 20
#: examined ≤ WORK * input and moved ≤ WORK * input (a byte is looked at by a search or two; the old scanner
#: needed ~ input² / (2 * chunk))
WORK = 4


def _feed(scanner: Scanner, data: bytes, piece: int) -> list[Any]:
    items: list[Any] = []
    for k in range(0, len(data), piece):
        items += scanner.feed(data[k:k + piece])
    return items + scanner.finish()


def _normal(items: list[Any]) -> list[Any]:
    """Adjacent bytes joined: what any chunking must give alike."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, bytes):
            if not item:
                continue
            if out and isinstance(out[-1], bytes):
                out[-1] += item
                continue
        out.append(item)
    return out


def _linear(data: bytes, piece: int) -> list[Any]:
    scanner = Scanner()
    items = _feed(scanner, data, piece)
    assert scanner.examined <= WORK * len(data), (piece, scanner.examined / len(data))
    assert scanner.moved <= WORK * len(data), (piece, scanner.moved / len(data))
    return items


COMMENT = b"<p>a<!--" + b"x- -" * (MIB // 4) + b"-->b"


@pytest.mark.parametrize("piece", [4096, 512, 1])
def test_a_1mib_comment_costs_linear_work_in_any_pieces(piece: int) -> None:
    assert scanned_bytes(_linear(COMMENT, piece)) == COMMENT


def test_a_tag_with_100k_attributes_in_1_byte_pieces_is_read_once() -> None:
    tag = b"<img" + b"".join(b" a%d" % k for k in range(100_000)) + b' src="/t.gif">'  # ~690 KB: under the bound
    data = b"<p>" + tag + b"</p>"
    items = _linear(data, 1)
    tokens = [item for item in items if not isinstance(item, bytes)]
    assert len(tokens) == 1 and tokens[0][1] == tag
    attributes = tokens[0][3]
    assert len(attributes) == 100_001 and attributes[0] == ("a0", "") and attributes[-1] == ("src", "/t.gif")
    assert attributes[99_999] == ("a99999", "")


@pytest.mark.parametrize("piece", [4096, 512, 1])
def test_an_unterminated_1mib_script_costs_linear_work(piece: int) -> None:
    data = b"<script>" + b"a<b;<!-- c-->" * (MIB // 13)
    items = _linear(data, piece)
    assert scanned_bytes(items) == data


@pytest.mark.parametrize("piece", [4096, 1])
def test_a_long_quoted_attribute_value_is_read_once(piece: int) -> None:
    value = b"v" * (MIB // 2)
    data = b'<iframe title="' + value + b'" src="https://www.youtube.com/embed/x"></iframe>'
    tokens = [item for item in _linear(data, piece) if not isinstance(item, bytes)]
    assert tokens[0][3] == [("title", value.decode()), ("src", "https://www.youtube.com/embed/x")]


@pytest.mark.parametrize("piece", [4096, 1])
def test_long_unquoted_values_names_and_bogus_comments_cost_linear_work(piece: int) -> None:
    for data in (b"<a href=" + b"h" * 300_000 + b">x</a>", b"<a " + b"n" * 300_000 + b"=1>",
                 b"<div" + b" " * 300_000 + b">", b"<" + b"d" * 300_000 + b">", b"<!x" + b"y" * 300_000 + b">",
                 b"</a" + b" b=c" * 75_000 + b">", b"<!--" + b"-" * 300_000 + b"!-->",
                 b"<style>" + b"<" * 300_000 + b"</style >"):
        assert scanned_bytes(_linear(data, piece)) == data


def test_a_comment_is_passed_on_as_it_comes() -> None:
    scanner = Scanner()
    out = scanner.feed(b"<!--" + b"x" * 10_000)
    assert sum(len(item) for item in out) >= 10_000  # not held to its end


# -- the bound ---------------------------------------------------------------------------------------

def _whole_and_pieces(data: bytes, limit: int) -> list[Any]:
    """The scanner's output for `data` with `hold_limit`, the same whole and in any pieces."""
    whole = _normal(_feed(Scanner(hold_limit=limit), data, len(data) or 1))
    for sizes in ([1], [7], random_sizes(len(data), 1, 3 * limit)):
        scanner = Scanner(hold_limit=limit)
        items: list[Any] = []
        position, turn = 0, 0
        while position < len(data):
            size = sizes[turn % len(sizes)]
            items += scanner.feed(data[position:position + size])
            position, turn = position + size, turn + 1
        assert _normal(items + scanner.finish()) == whole, sizes[:4]
    return whole


def test_a_script_longer_than_the_bound_is_handed_over_cut() -> None:
    text = b"x" * 300
    out = _whole_and_pieces(b"<p><script src=a.js>" + text + b"</script><b>", 100)
    assert out[0] == b"<p>"
    token = out[1]
    assert token[0] == SCRIPT and token[5] == text[:100] and token[6] is None
    assert out[2] == text[100:] + b"</script><b>"


def test_a_noscript_longer_than_the_bound_loses_its_text() -> None:
    out = _whole_and_pieces(b"<noscript><img src=https://t/p.gif>" + b"y" * 200 + b"</noscript>.", 100)
    token = out[0]
    assert token[0] == NOSCRIPT and token[5] == b"" and token[6] is None
    assert out[1:] == [b"</noscript>."]


def test_a_start_tag_longer_than_the_bound_passes_unreported_and_a_script_one_inert() -> None:
    filler = b" data-x='" + b"z" * 200 + b"'"
    out = _whole_and_pieces(b"<img src=https://t/p.gif" + filler + b"><b>", 100)
    assert out == [b"<img src=https://t/p.gif" + filler + b"><b>"]
    out = _whole_and_pieces(b"<script src=https://t/x.js" + filler + b">var a='<b>';</script><i>", 100)
    assert out == [b'<script type="text/plain" src=https://t/x.js' + filler + b">var a='<b>';</script><i>"]
    # a <noscript> tag: its text is dropped; a <style> one: its text stays raw text
    assert _whole_and_pieces(b"<noscript" + filler + b"><img src=x></noscript>", 100) == [
        b"<noscript" + filler + b"></noscript>"]
    assert _whole_and_pieces(b"<style" + filler + b"><img src=x></style><img src=y>", 100)[0] == (
        b"<style" + filler + b"><img src=x></style>")


def test_an_end_tag_longer_than_the_bound_ends_its_element_cut() -> None:
    out = _whole_and_pieces(b"<script>a()</script" + b" " * 200 + b"><img src=y>", 100)
    assert out[0][5] == b"a()" and out[0][6] is None
    assert out[1] == b"</script" + b" " * 200 + b">"
    assert out[2][2] == "img"


def test_the_corpus_scans_alike_in_any_pieces_with_a_small_bound() -> None:
    for page in sorted(CORPUS.glob("*.html"))[:12]:
        data = page.read_bytes()
        rng = random.Random(len(data))
        limit = rng.choice([64, 200, 1000])
        whole = _whole_and_pieces(data, limit)
        assert len(scanned_bytes(whole)) <= len(data) + 20 * len(whole)


# -- the rewriter past the bound -------------------------------------------------------------------

@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(rewriter_module, "HOLD_LIMIT", 256)
    return 256


NECESSARY = frozenset({"necessary"})
ALL = frozenset({"necessary", "preferences", "statistics", "marketing"})


def _rewritten(data: bytes, allowed: frozenset[str]) -> tuple[bytes, list[Any]]:
    whole, r = rewrite(data, allowed)
    for sizes in ([1], random_sizes(3, 1, 700)):
        assert rewrite(data, allowed, sizes)[0] == whole
    return whole, r.blocked


def test_an_inline_script_too_long_to_judge_is_blocked_until_marketing(small_bound: int) -> None:
    code = b"var app = {};" + b" " * 1000 + b"app.start();"
    page = b"<html><body><script>" + code + b"</script></body></html>"
    out, blocked = _rewritten(page, NECESSARY)
    assert b'type="text/plain"' in out and code in out
    assert [(b.kind, b.category) for b in blocked] == [("oversize-script", "marketing")]
    out, blocked = _rewritten(page, ALL)
    assert b"<script>" + code + b"</script>" in out and not blocked


def test_a_long_script_the_site_tagged_or_with_src_is_judged_by_its_tag(small_bound: int) -> None:
    code = b"x()" + b" " * 1000
    tagged = b"<body><script data-consent-category=necessary>" + code + b"</script>"
    out, blocked = _rewritten(tagged, NECESSARY)
    assert b"<script data-consent-category=necessary>" + code + b"</script>" in out and not blocked
    src = b'<body><script src="https://www.googletagmanager.com/gtag/js?id=G-1">' + code + b"</script>"
    out, blocked = _rewritten(src, NECESSARY)
    assert [b.kind for b in blocked] == ["script-src"] and code + b"</script>" in out
    assert b'data-cp-src="https://www.googletagmanager.com/gtag/js?id=G-1"' in out


def test_a_long_noscript_is_emptied(small_bound: int) -> None:
    page = b"<body><noscript><img src=https://www.facebook.com/tr?id=1>" + b"." * 1000 + b"</noscript>"
    out, blocked = _rewritten(page, NECESSARY)
    assert b"<noscript></noscript>" in out and b"facebook" not in out
    assert [b.kind for b in blocked] == ["oversize-noscript"]


# -- re-entrancy -----------------------------------------------------------------------------------

class _Reenter:
    """In a reference cycle: its finalizer runs from the collector, inside whatever allocates."""

    def __init__(self, scanner: Scanner, errors: list[str]) -> None:
        self.scanner = scanner
        self.errors = errors
        self.cycle = self

    def __del__(self) -> None:
        try:
            self.scanner.feed(b"<img src=inner>" * 4)
        except RuntimeError as exc:
            self.errors.append(str(exc))


def test_a_feed_from_inside_a_feed_is_refused() -> None:
    scanner = Scanner()
    errors: list[str] = []
    page = b"<p>" + b"<img src=a%d.gif>" * 50 + b"<!-- pending"
    thresholds = gc.get_threshold()
    gc.collect()
    try:
        gc.set_threshold(1)
        for _ in range(20):
            _Reenter(scanner, errors)
            items = scanner.feed(page)
            if errors:
                break
    finally:
        gc.set_threshold(*thresholds)
    gc.collect()
    assert errors and "busy" in errors[0]
    rest = scanner.finish()
    # the outer feeds went on undisturbed
    assert len([i for i in items if not isinstance(i, bytes)]) == 50
    assert rest == [] or all(isinstance(item, bytes) for item in rest)


_BITS = [b"<!--", b"-->", b"--!>", b"-", b"<!x", b"<?p", b">", b"</", b"<![CDATA[", b"]]>", b"<svg>", b"</svg>",
         b"<script>", b"</script>", b"<script", b"<!--<script>", b"<noscript>", b"</noscript>", b"<style>",
         b"</style>", b"<img src=a", b" b='", b'"', b"'", b"=", b" ", b"/", b"x" * 40, b"<p", b"</p ", b"<template>",
         b"<math><mi>", b"<textarea>", b"</textarea>", b"<plaintext>", b"\x00", b"\xc3\xa9"]


@pytest.mark.parametrize("seed", range(40))
def test_random_markup_scans_alike_whole_and_in_pieces_with_a_small_bound(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(rng.choice(_BITS) for _ in range(rng.randint(20, 400)))
    _whole_and_pieces(data, rng.choice([64, 100, 300]))
    assert scanned_bytes(_whole_and_pieces(data, 1 << 20)) == data
