"""Which service an element belongs to: URL patterns and inline-code signatures.

The site's own services come first, then the built-in catalogue, in file
order: the first service with a matching pattern wins (the catalogue lists
Google Ads before Google Analytics for that reason). URLs, hosts and inline
snippets repeat on every page of a site, so answers are cached per matcher
(a page's ~50 `<img>` each ask about their URL); inline code is searched
with one regular expression shaped as a trie (a flat alternation of 80
literals costs twice as much in Python's engine), then ranked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from consentproxy.config.model import ServiceConfig
from consentproxy.cookies.classify import builtin_services

Kind = Literal["scripts", "iframes", "pixels", "hosts"]
_CACHE_LIMIT = 4096
#: inline code is cached up to this many characters in all, a snippet up to 1/16 of it: the regex costs
#: ~0.1 µs a character, and the snippets of a site's template (gtag, fbq…) repeat on every page
_INLINE_CACHE_CHARS = 1 << 18
_HOST_END = re.compile(r"[/:?#]")


@dataclass(frozen=True, slots=True)
class Match:
    service: str
    category: str


class TrackerMatcher:
    """Matches element URLs and inline code against a site's services and the catalogue."""

    def __init__(self, site_services: tuple[ServiceConfig, ...], use_catalogue: bool = True) -> None:
        services = site_services + (builtin_services() if use_catalogue else ())
        self._patterns: dict[str, tuple[tuple[str, Match], ...]] = {
            kind: tuple(
                (pattern.lower(), Match(s.name, s.category)) for s in services for pattern in getattr(s, kind)
            )
            for kind in ("scripts", "iframes", "pixels", "hosts")
        }
        self._url_cache: dict[str, dict[str, Match | None]] = {kind: {} for kind in self._patterns}
        self._host_cache: dict[str, Match | None] = {}
        self._inline_cache: dict[str, Match | None] = {}
        self._inline_chars = 0
        signatures: dict[str, tuple[int, Match]] = {}
        for rank, service in enumerate(services):
            for signature in service.inline:
                signatures.setdefault(signature, (rank, Match(service.name, service.category)))
        self._signatures = signatures
        self._inline_re = re.compile(trie_pattern(signatures)) if signatures else None

    def answers(self, kind: Kind) -> dict[str, Match | None]:
        """The cache behind `url(kind, …)`: a handler called for every `<img>` looks there first and calls
        `url` only on a miss (a Python call per lookup is a measurable part of a page's cost)."""
        return self._url_cache[kind]

    def url(self, kind: Kind, raw_url: str) -> Match | None:
        """The service a URL (a raw attribute value, character references allowed) belongs to."""
        cache = self._url_cache[kind]
        try:
            return cache[raw_url]
        except KeyError:
            pass
        url = (html.unescape(raw_url) if "&" in raw_url else raw_url).strip().lower()
        found = None
        if url:
            for pattern, match in self._patterns[kind]:
                if pattern in url:
                    found = match
                    break
        return _remember(cache, raw_url, found)

    def host(self, raw_url: str) -> Match | None:
        """For resource hints: the host of the URL (scheme-relative allowed) against `hosts`."""
        cache = self._host_cache
        try:
            return cache[raw_url]
        except KeyError:
            pass
        url = (html.unescape(raw_url) if "&" in raw_url else raw_url).strip().lower()
        start = url.find("//")
        host = url[start + 2:] if start >= 0 else url
        host = _HOST_END.split(host, maxsplit=1)[0]
        found = None
        for pattern, match in self._patterns["hosts"]:
            if host == pattern or host.endswith("." + pattern):
                found = match
                break
        return _remember(cache, raw_url, found)

    def inline(self, code: str) -> Match | None:
        """The best-ranked service whose signature occurs in inline script code."""
        if self._inline_re is None:
            return None
        cache = self._inline_cache
        try:
            return cache[code]
        except KeyError:
            pass
        found = self._search_inline(code)
        if len(code) <= _INLINE_CACHE_CHARS // 16:
            if self._inline_chars + len(code) > _INLINE_CACHE_CHARS:
                cache.clear()
                self._inline_chars = 0
            cache[code] = found
            self._inline_chars += len(code)
        return found

    def _search_inline(self, code: str) -> Match | None:
        assert self._inline_re is not None
        best: tuple[int, Match] | None = None
        for found in self._inline_re.finditer(code):
            candidate = self._signatures[found.group()]
            if best is None or candidate[0] < best[0]:
                best = candidate
                if best[0] == 0:
                    break
        return best[1] if best is not None else None


def trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching any of `words`, the longest at each position, shaped as a trie."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _remember(cache: dict[str, Match | None], key: str, found: Match | None) -> Match | None:
    """Store an answer in a bounded cache (emptied when full: the pages' URLs soon fill it again)."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = found
    return found
