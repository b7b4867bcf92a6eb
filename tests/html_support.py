"""Helpers for the HTML rewriting tests: a rewriter as the proxy builds it, and tree normalisation."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import html5lib

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.config.consent import default_categories
from consentproxy.config.model import CATEGORY_IDS, ConsentConfig, SiteConfig
from consentproxy.consent.decision import Decision
from consentproxy.consent.state import ConsentState
from consentproxy.html.csp import NoncePlan
from consentproxy.html.rewriter import PagePlan, PageRewriter
from consentproxy.html.trackers import TrackerMatcher

CORPUS = Path(__file__).parent / "data" / "html-corpus"
ALL = frozenset(CATEGORY_IDS)
CONSENT_MODE_START = "window.dataLayer=window.dataLayer||[];(function(){function g(){"
#: what the banner script restores (its MOVED list)
_MOVED = ("src", "href", "srcset", "data", "poster", "srcdoc", "imagesrcset", "xlink:href", "data-srcset",
          "data-lazy-srcset", "data-src", "data-lazy-src", "data-original", "data-lazy")

_SITE = SiteConfig(name="corpus", hosts=("corpus.test",), upstream="http://127.0.0.1:1",
                   consent=ConsentConfig(categories=default_categories(), controller="Corpus BV"))
_MARKUP: SiteMarkup | None = None
_MATCHER = TrackerMatcher(())


def markup() -> SiteMarkup:
    global _MARKUP
    if _MARKUP is None:
        _MARKUP = SiteMarkup(_SITE, BannerAssets())
    return _MARKUP


def decision_for(allowed: frozenset[str]) -> Decision:
    if allowed == frozenset({"necessary"}):
        return Decision("none", allowed)
    state = ConsentState("corpus-principal", allowed - {"necessary"}, 1, 0, 2**31, "save_selection")
    return Decision("explicit", allowed, state)


def rewriter(allowed: frozenset[str], nonces: NoncePlan | None = None, mode: Any = None) -> PageRewriter:
    decision = decision_for(allowed)
    plan = PagePlan(_MATCHER, decision.allowed, PageInjection(markup(), decision, None), nonces or NoncePlan(),
                    stamp="corpus-stamp")
    return PageRewriter(plan, mode)


def rewrite(data: bytes, allowed: frozenset[str], sizes: list[int] | None = None,
            nonces: NoncePlan | None = None) -> tuple[bytes, PageRewriter]:
    """Feed `data` in chunks of the given sizes (cycled), or all of it to `whole` (a body that came at once)."""
    r = rewriter(allowed, nonces)
    if not sizes:
        return r.whole(data), r
    out = []
    position, turn = 0, 0
    while position < len(data):
        size = sizes[turn % len(sizes)]
        out.append(r.feed(data[position:position + size]))
        position += size
        turn += 1
    out.append(r.finish())
    return b"".join(out), r


def random_sizes(seed: int, low: int, high: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(997)]


def parse(data: bytes) -> ET.Element:
    return html5lib.parse(data, treebuilder="etree", namespaceHTMLElements=False)  # type: ignore[no-any-return]


def is_injected(element: ET.Element) -> bool:
    """One of the nodes the proxy adds to a page (the banner, its assets, the Consent Mode script)."""
    tag = element.tag
    if not isinstance(tag, str):
        return False
    attrs = element.attrib
    if attrs.get("id") == "cp-root" or "cp-embed" in attrs.get("class", "").split():
        return True
    if tag == "link" and attrs.get("href", "").startswith("/_consent/"):
        return True
    return tag == "script" and (attrs.get("src", "").startswith("/_consent/")
                                or (element.text or "").startswith(CONSENT_MODE_START))


def _remove_injected(parent: ET.Element) -> None:
    previous: ET.Element | None = None
    for child in list(parent):
        if is_injected(child):
            tail = child.tail or ""
            if previous is None:
                parent.text = (parent.text or "") + tail
            else:
                previous.tail = (previous.tail or "") + tail
            parent.remove(child)
            continue
        _remove_injected(child)
        previous = child


def _restore_blocked(root: ET.Element) -> None:
    for element in root.iter():
        attrs = element.attrib
        style = attrs.pop("data-cp-style", None)
        if style is not None:  # a style attribute whose url()s of blocked hosts were neutralised
            attrs["style"] = style
        if "data-cp-blocked" not in attrs:
            continue
        for name in _MOVED:
            moved = attrs.pop("data-cp-" + name, None)
            if moved is not None:
                attrs[name] = moved
        if element.tag == "script":
            original = attrs.pop("data-cp-type", None)
            if original is None:
                attrs.pop("type", None)
            else:
                attrs["type"] = original
        if "data-cp-embed-id" in attrs:
            attrs.pop("data-cp-embed-id")
            attrs.pop("hidden", None)
            attrs.pop("data-cp-fit", None)  # an iframe of no size of its own: 16:9 of its container
        attrs.pop("data-cp-blocked")
        attrs.pop("data-cp-service")
        assert attrs.pop("data-cp-stamp") == "corpus-stamp"


def tree_tokens(root: ET.Element) -> list[tuple[Any, ...]]:
    return [(e.tag, sorted(e.attrib.items()), e.text or "", e.tail or "") for e in root.iter()]


def normalised_output_tree(output: bytes) -> list[tuple[Any, ...]]:
    """The output's tree with our injected nodes taken out and blocked elements put back as they were."""
    root = parse(output)
    _remove_injected(root)
    _restore_blocked(root)
    return tree_tokens(root)


def strip_injections(output: bytes) -> bytes:
    """The output bytes without the bundle and Consent Mode script (they are the only additions)."""
    text = output.decode("utf-8")
    start = text.find('<link rel="stylesheet" href="/_consent/')
    if start != -1:
        end = text.index("</script>", text.index('<script src="/_consent/', start)) + len("</script>")
        text = text[:start] + text[end:]
    cm = re.search(r'<script(?: nonce="[^"]*")?>' + re.escape(CONSENT_MODE_START), text)
    if cm is not None:
        text = text[:cm.start()] + text[text.index("</script>", cm.start()) + len("</script>"):]
    return text.encode("utf-8")


def scanned_bytes(items: list[Any]) -> bytes:
    """What the scanner handed over, as bytes again: passed bytes, and each element's raw tag, content, end."""
    parts = []
    for item in items:
        if isinstance(item, bytes):
            parts.append(item)
        else:
            parts += [item[1], item[5] or b"", item[6] or b""]
    return b"".join(parts)
