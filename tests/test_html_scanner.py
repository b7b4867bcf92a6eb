"""The HTML scanner (consentproxy/html/_scanner.c) against html5lib, the reference parser.

Documents are made of the pieces tokenizers get wrong: comments and bogus
comments, raw-text elements, script escapes, CDATA, SVG and MathML with their
integration points and break-out tags, templates, odd attribute syntax. For
each one the scanner must pass every byte through for any chunking, and hand
over exactly the elements a browser would create in the HTML namespace that
the rewriter acts on (html5lib with scripting on, as in a browser).
"""

from __future__ import annotations

import html
from typing import Any

import html5lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentproxy.html._scanner import ELEMENT, NOSCRIPT, SCRIPT, Scanner, TagSet

PIECES = [
    # ordinary markup and text
    "<p>", "</p>", "<div class=a>", "</div>", "<span>", "</span>", "text ", "a < b ", "x > y ", "&amp; ", "<br>",
    "</br>", "<b>", "<table>", "<td>", "</table>", "<ul><li>", "<a href='/x'>", "</a>", "<h1>", "\n", "<b/>",
    # what the rewriter acts on
    "<img src=pixel.gif>", "<img src='https://www.facebook.com/tr?id=1'>", '<IMG SRC="q.png" alt="a>b">',
    "<image src=legacy.png>", "<iframe src=https://www.youtube.com/embed/x>", "</iframe>",
    "<link rel=preconnect href=//www.googletagmanager.com>", '<meta http-equiv="Content-Security-Policy" '
    'content="script-src \'self\'">', "<meta charset=utf-8>", "<script src=gtm.js>", "<script>", "</script>",
    "<SCRIPT type=text/javascript>", "</SCRIPT >", "</script\n>", "<script/>", "<noscript>", "</noscript>",
    '<div data-consent-category="marketing">', "<video DATA-CONSENT-CATEGORY=ads src=v.mp4>",
    "<input type=image src=i.png data-consent-category=statistics>",
    # comments and the like
    "<!--", "-->", "--!>", "<!-- <img src=c> -->", "<!-->", "<!--->", "<!x>", "<?php echo 1 ?>", "</ x>", "</>",
    "<!DOCTYPE html>", "<![CDATA[", "]]>", "<![CDATA[<img src=cd>]]>",
    # raw text elements
    "<style>", "</style>", "<textarea>", "</textarea>", "<title>", "</title>", "<xmp>", "</xmp>", "<noembed>",
    "</noembed>", "<noframes>", "</noframes>", "<style>a::after{content:'<img src=s>'}</style>",
    "<textarea><script>t</script></textarea>",
    # script escapes
    "<script><!--", "<script>", "<!--<script>", "</script>", "-->", "document.write('<img src=w>')",
    "<script>var s='<!--<script>';</script>x-->",
    # foreign content
    "<svg>", "</svg>", "<svg/>", "<svg viewBox='0 0 1 1'><path d='M0 0'/></svg>", "<math>", "</math>",
    "<foreignObject>", "</foreignObject>", "<desc>", "</desc>", "<mi>", "</mi>", "<mtext>", "</mtext>",
    '<annotation-xml encoding="text/html">', "</annotation-xml>", "<font color=red>", "<font>", "</font>",
    "<g>", "</g>", "<path/>", "<use href=#i />", "<circle r=1>", "<script>svg()</script>",
    # templates
    "<template>", "</template>", "<template><script src=t.js></script></template>",
    # odd attribute syntax
    "<img src=a/alt=b>", "<img/src=slash>", "<img src = 'sp' >", "<img src=\"dq\"alt='no space'>",
    "<img src=un'quoted>", "<img =src>", "<img src=1 src=2>", "<img\tsrc=tab\fclass=ff>", "<a title=\"<script>\">",
    "<div title='</script>'>", "<img src=x /", ">",
    # NUL bytes (the parser reads them as U+FFFD; the scanner's loops stop at a NUL after the buffer)
    "te\x00xt ", "<img src=nul\x00.png>", "<img da\x00ta-x=1 src='q\x00'>", "<p\x00>", "<img src=\x00",
]
REPORTED = {"script", "iframe", "img", "link", "noscript"}


def _html5lib_elements(document: str) -> list[tuple[str, str]]:
    tree = html5lib.HTMLParser(namespaceHTMLElements=True).parse(document, scripting=True)
    found = []
    prefix = "{http://www.w3.org/1999/xhtml}"
    for element in tree.iter():
        tag = element.tag
        if not isinstance(tag, str) or not tag.startswith(prefix):
            continue
        name = tag[len(prefix):]
        attributes = element.attrib
        if (name in REPORTED or "data-consent-category" in attributes
                or (name == "meta" and "http-equiv" in attributes)):
            found.append((name, attributes.get("src") or attributes.get("href") or ""))
    return sorted(found)


def _scan(data: bytes, sizes: list[int] | None = None) -> list[Any]:
    scanner = Scanner()
    items: list[Any] = []
    position = turn = 0
    while position < len(data):
        size = sizes[turn % len(sizes)] if sizes else len(data)
        items += scanner.feed(data[position:position + size])
        position += size
        turn += 1
    return items + scanner.finish()


def _joined(items: list[Any]) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, bytes):
            parts.append(item)
        else:
            parts += [item[1], item[5] or b"", item[6] or b""]
    return b"".join(parts)


def _scanner_elements(items: list[Any]) -> list[tuple[str, str]]:
    found = []
    for item in items:
        if isinstance(item, bytes):
            continue
        _, _, name, attributes, *_ = item
        if name in ("html", "body"):
            continue
        first = dict(reversed(attributes))
        name = "img" if name == "image" else name
        found.append((name, html.unescape(first.get("src") or first.get("href") or "").replace("\x00", "\ufffd")))
    return sorted(found)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_the_scanner_finds_what_html5lib_builds_and_passes_every_byte(pieces: list[str], sizes: list[int]) -> None:
    document = "".join(pieces)
    data = document.encode()
    whole = _scan(data)
    assert _joined(whole) == data
    chunked = _scan(data, sizes)
    assert _joined(chunked) == data
    assert [i for i in chunked if not isinstance(i, bytes)] == [i for i in whole if not isinstance(i, bytes)]
    assert _scanner_elements(whole) == _html5lib_elements(document)


def test_a_script_comes_whole_with_its_escapes() -> None:
    data = b"<script>a('<!--<script>');b('</script>');--></script><img src=after>"
    items = _scan(data, [1])
    script = items[0]
    assert script[0] == SCRIPT and script[5] == b"a('<!--<script>');b('</script>');-->" and script[6] == b"</script>"
    assert items[1][0] == ELEMENT and items[1][3] == [("src", "after")]


def test_noscript_text_is_handed_over_raw() -> None:
    items = _scan(b"<noscript><img src=p></noscript>")
    assert items == [(NOSCRIPT, b"<noscript>", "noscript", [], False, b"<img src=p>", b"</noscript>", False)]


def test_attributes_come_lower_cased_raw_and_in_order() -> None:
    (item,) = _scan(b'<IMG SRC="a&amp;b" Alt=x data-X=\'1\' empty src=dup/>')
    assert item[2] == "img"
    assert item[3] == [("src", "a&amp;b"), ("alt", "x"), ("data-x", "1"), ("empty", ""), ("src", "dup/")]
    assert item[7] is False  # the "/" belongs to the unquoted value


def test_template_scripts_are_marked() -> None:
    items = _scan(b"<template><script>t()</script></template><script>u()</script>")
    assert [i[4] for i in items if not isinstance(i, bytes)] == [True, False]


def test_known_unchanged_tags_pass_as_bytes() -> None:
    data = b"<img src=a><img src=b>"
    noop = TagSet()
    noop.add(b"<img src=a>")
    scanner = Scanner(noop=noop)
    items = scanner.feed(data) + scanner.finish()
    assert next(i for i in items if not isinstance(i, bytes))[1] == b"<img src=b>"
    assert _joined(items) == data


def test_latin1_mode_decodes_values_byte_for_byte() -> None:
    scanner = Scanner(latin1=True)
    (item,) = scanner.feed(b"<img alt='caf\xe9' src=x>") + scanner.finish()
    assert item[3][0] == ("alt", "caf\xe9")


def test_an_unfinished_document_is_passed_through() -> None:
    for data in (b"<img src='never closed", b"<script>for(;;", b"<!-- open", b"<", b"<svg><![CDATA[x"):
        assert _joined(_scan(data)) == data
        assert _joined(_scan(data, [1])) == data


def test_a_blocked_tag_with_more_attributes_than_the_scanner_lists_keeps_them_all() -> None:
    from html_support import rewrite  # the rewriter as the proxy builds it

    extra = " ".join(f"data-a{n}='{n}'" for n in range(140))
    data = f"<body><img {extra} src='https://www.facebook.com/tr?id=1' =odd data-last=x></body>".encode()
    output, rewriter = rewrite(data, frozenset({"necessary"}))
    (img,) = [tag for tag in output.decode().split("<")[1:] if tag.startswith("img ")]
    assert [b.kind for b in rewriter.blocked] == ["img"]
    assert "data-a0='0'" in img and "data-a139='139'" in img and " =odd " in img and "data-last=x" in img
    assert 'data-cp-src="https://www.facebook.com/tr?id=1"' in img and " src=" not in img


def test_any_bytes_like_input_scans_as_bytes_do() -> None:
    data = b"<p>a<img src='https://www.facebook.com/tr?id=1' al\x00t=x>b<div data-consent-category=ads>"
    expected = _scan(data)
    for kind in (bytearray, memoryview):
        scanner = Scanner()
        assert scanner.feed(kind(data)) + scanner.finish() == expected
