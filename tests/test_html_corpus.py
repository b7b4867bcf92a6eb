"""The rewriter against the 60-page corpus (tests/data/html-corpus, README there).

For every page: the output is the same for any chunking down to single bytes;
html5lib reads the same tree from input and output except for our injected
nodes and the moved attributes of blocked elements; every tracker listed in
the manifest is blocked when its category is not consented and left exactly
as it was when it is.
"""

from __future__ import annotations

import json
import re

import pytest
from html_support import (
    ALL,
    CORPUS,
    normalised_output_tree,
    parse,
    random_sizes,
    rewrite,
    strip_injections,
    tree_tokens,
)

PAGES = sorted(CORPUS.glob("*.html"))
MANIFEST: dict[str, list[dict[str, str]]] = json.loads((CORPUS / "manifest.json").read_text())
NECESSARY = frozenset({"necessary"})
_TAG_OF_KIND = {"script-src": "script", "inline-script": "script", "iframe": "iframe", "noscript-iframe": "iframe",
                "img": "img", "noscript-img": "img", "link": "link"}


def test_the_corpus_is_the_one_the_issue_asks_for() -> None:
    assert len(PAGES) >= 50
    assert set(MANIFEST) == {p.name for p in PAGES}
    assert sum(len(v) for v in MANIFEST.values()) > 400


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_output_is_identical_for_any_chunking(page) -> None:
    data = page.read_bytes()
    whole, _ = rewrite(data, NECESSARY)
    seed = sum(data[:64])
    for sizes in ([len(data)], [1], [2, 3], random_sizes(seed, 1, 17), random_sizes(seed + 1, 1, 4096)):
        assert rewrite(data, NECESSARY, sizes)[0] == whole, f"chunk sizes {sizes[:5]}…"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
@pytest.mark.parametrize("allowed", [NECESSARY, frozenset({"necessary", "statistics"}), ALL],
                         ids=["no-decision", "statistics", "all"])
def test_tree_differs_only_by_the_banner_and_blocked_attributes(page, allowed) -> None:
    data = page.read_bytes()
    output, _ = rewrite(data, allowed, random_sizes(7, 1, 300))
    assert normalised_output_tree(output) == tree_tokens(parse(data))


def _tag_trackers(data: bytes, entries: list[dict[str, str]]) -> bytes:
    """Mark each manifest tracker's element with `data-manifest-id` to find it in the output."""
    text = data.decode("utf-8")
    inserts = []
    for index, entry in enumerate(entries):
        marker = text.index(entry["marker"])
        assert text.count(entry["marker"]) == 1
        tag = _TAG_OF_KIND[entry["kind"]]
        starts = [m.start() for m in re.finditer(rf"<{tag}\b", text[:marker + len(entry["marker"])], re.I)]
        # A marker inside a start tag may itself begin with the tag: take the last start before its end.
        start = max(s for s in starts if s <= marker + (len(tag) + 1 if entry["marker"].lower().startswith(
            f"<{tag}") else 0))
        inserts.append((start + 1 + len(tag), index))
    for position, index in sorted(inserts, reverse=True):
        text = text[:position] + f' data-manifest-id="{index}"' + text[position:]
    return text.encode("utf-8")


def _by_manifest_id(output: bytes) -> dict[int, dict[str, str]]:
    return {int(e.attrib["data-manifest-id"]): dict(e.attrib) for e in parse(output).iter()
            if "data-manifest-id" in e.attrib}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_catalogued_tracker_is_blocked_without_consent(page) -> None:
    entries = MANIFEST[page.name]
    output, rewriter = rewrite(_tag_trackers(page.read_bytes(), entries), NECESSARY)
    found = _by_manifest_id(output)
    for index, entry in enumerate(entries):
        attrs = found[index]
        assert attrs.get("data-cp-blocked") == entry["category"], (entry, attrs)
        if entry["service"] != "site-tagged":
            assert attrs.get("data-cp-service") == entry["service"], (entry, attrs)
        kind = entry["kind"]
        if kind in ("script-src", "iframe", "img", "noscript-img", "noscript-iframe"):
            assert "src" not in attrs and "srcset" not in attrs, (entry, attrs)
        if kind == "link":
            assert "href" not in attrs, (entry, attrs)
        if _TAG_OF_KIND[kind] == "script":
            assert attrs.get("type") == "text/plain", (entry, attrs)
    assert len(rewriter.blocked) >= len(entries)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_consented_trackers_stay_byte_identical(page) -> None:
    data = page.read_bytes()
    everything, _ = rewrite(data, ALL)
    assert strip_injections(everything) == data
    statistics = frozenset({"necessary", "statistics"})
    output, _ = rewrite(data, statistics)
    text = output.decode("utf-8")
    for entry in MANIFEST[page.name]:
        if entry["category"] in statistics:
            # the start tag (or, for inline scripts, the code) that holds the marker is unchanged
            assert text.count(entry["marker"]) == 1, entry
    found = _by_manifest_id(rewrite(_tag_trackers(data, MANIFEST[page.name]), statistics)[0])
    for index, entry in enumerate(MANIFEST[page.name]):
        blocked = found[index].get("data-cp-blocked")
        assert (blocked is None) == (entry["category"] in statistics), entry
