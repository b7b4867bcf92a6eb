"""The rewritten HTML of the 170 real pages, read as a browser's parser reads it (html5lib).

Issue 16's static check: without consent no element that would load a catalogued tracker is left live
(a script, iframe, image, resource hint, object, embed, media or inline code naming one), the tree is
otherwise the page's own (only our injected nodes and the attributes of blocked elements differ), and
the output is the same for any chunking. The pages are real (tests/data/real-pages/README.md); the
"catalogued tracker" is what the matcher under test knows — the browser test (test_browser_real_pages)
judges with an independent oracle instead.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from html_support import is_injected, normalised_output_tree, parse, random_sizes, rewrite, tree_tokens

from consentproxy.html.rewriter import is_javascript
from consentproxy.html.trackers import Match, TrackerMatcher, srcset_urls

PAGES = sorted((Path(__file__).parent / "data" / "real-pages").glob("*.html.gz"))
NECESSARY = frozenset({"necessary"})
STATISTICS = frozenset({"necessary", "statistics"})
MATCHER = TrackerMatcher(())
_FETCHING_RELS = frozenset({"preload", "prefetch", "modulepreload", "stylesheet", "icon", "prerender"})
#: the attributes through which an element loads a URL, by element, with the matcher's kind for it
_URL_ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "script": ("scripts", ("src",)),
    "iframe": ("iframes", ("src",)),
    "frame": ("iframes", ("src",)),
    "img": ("pixels", ("src",)),
    "image": ("pixels", ("href", "{http://www.w3.org/1999/xlink}href")),
    "input": ("pixels", ("src",)),
    "embed": ("iframes", ("src",)),
    "object": ("iframes", ("data",)),
    "video": ("pixels", ("src", "poster")),
    "audio": ("pixels", ("src",)),
    "source": ("pixels", ("src",)),
    "track": ("pixels", ("src",)),
}


def _page(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _live_trackers(output: bytes, allowed: frozenset[str]) -> list[str]:
    """Elements of the output that a browser would let load (or run) a tracker not in `allowed`."""
    found: list[str] = []

    def blocks(match: Match | None) -> bool:
        return match is not None and match.category not in allowed

    def walk(element: ET.Element, inert: bool) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        name = tag.rpartition("}")[2]
        if is_injected(element):  # ours: the Consent Mode default names gtag, the banner is no tracker
            return
        inert = inert or name in ("template", "noscript", "textarea", "xmp")
        if not inert and "data-cp-blocked" not in element.attrib:
            attrs = element.attrib
            if name == "script":
                if is_javascript(attrs.get("type")):
                    src = attrs.get("src")
                    if src is not None and blocks(MATCHER.url("scripts", src)):
                        found.append(f"<script src={src!r}>")
                    elif src is None and blocks(MATCHER.inline(element.text or "")):
                        found.append(f"inline script {(element.text or '')[:80]!r}")
            elif name == "link":
                rels = set((attrs.get("rel") or "").lower().split())
                href = attrs.get("href") or ""
                fetches = bool(rels & _FETCHING_RELS) and blocks(MATCHER.url("scripts", href))
                connects = bool(rels & {"preconnect", "dns-prefetch"}) and bool(href) and blocks(MATCHER.host(href))
                if fetches or connects:
                    found.append(f"<link rel={sorted(rels)} href={href!r}>")
            elif name in _URL_ATTRIBUTES:
                kind, names = _URL_ATTRIBUTES[name]
                for attribute in names:
                    value = attrs.get(attribute)
                    if value and blocks(MATCHER.url(kind, value)):  # type: ignore[arg-type]
                        found.append(f"<{name} {attribute}={value!r}>")
                srcset = attrs.get("srcset")
                if srcset and any(blocks(MATCHER.url("pixels", url)) for url in srcset_urls(srcset)):
                    found.append(f"<{name} srcset={srcset[:80]!r}>")
        for child in element:
            walk(child, inert)

    walk(parse(output), False)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name.split("__")[0])
def test_no_catalogued_tracker_is_left_live_and_the_tree_is_the_pages_own(page: Path) -> None:
    data = _page(page)
    for allowed in (NECESSARY, STATISTICS):
        output, _ = rewrite(data, allowed)
        assert _live_trackers(output, allowed) == [], f"left live at {sorted(allowed)}"
        assert normalised_output_tree(output) == tree_tokens(parse(data))


@pytest.mark.parametrize("page", PAGES[::5], ids=lambda p: p.name.split("__")[0])
def test_output_is_identical_for_any_chunking(page: Path) -> None:
    data = _page(page)
    whole, _ = rewrite(data, NECESSARY)
    seed = sum(data[:64])
    for sizes in ([7], random_sizes(seed, 1, 300), random_sizes(seed + 1, 1, 16384)):
        assert rewrite(data, NECESSARY, sizes)[0] == whole, f"chunk sizes {sizes[:5]}…"


def test_the_check_finds_a_live_tracker() -> None:
    """The check itself: a page whose tracker the rewriter did not touch is caught."""
    page = (b"<!doctype html><html><head><script src='https://www.googletagmanager.com/gtm.js?id=GTM-1'></script>"
            b"</head><body><img src='https://www.facebook.com/tr?id=1&ev=PageView'>"
            b"<video poster='https://pixel.quantserve.com/pixel/p-1.gif'></video></body></html>")
    assert len(_live_trackers(page, NECESSARY)) == 3
    assert _live_trackers(rewrite(page, NECESSARY)[0], NECESSARY) == []
