"""Which service an element belongs to: URL patterns, host rules and inline-code signatures.

The site's own services come first, then the built-in catalogue, in file
order, then the Open Cookie Database's Marketing and Analytics hosts: of the
rules that match, the first service's wins (the catalogue lists Google Ads
before Google Analytics for that reason); among equally ranked rules, the
most specific host.

A pattern that starts with a host name ("doubleclick.net",
"google-analytics.com/analytics.js"), and every name of a service's `hosts`,
goes into one dict from host name to its rules (rank, kinds, path prefix,
service). A URL is read the way a browser reads it (scheme-relative, any
case, port, userinfo, trailing dot, backslashes, tabs and newlines, IDN) and
its host looked up label by label, from the full name down to two labels
(a.b.example.com, b.example.com, example.com): a few dict look-ups, whatever
the number of rules. A rule without a path (a bare host) counts for every
kind of element and for resource hints; one with a path ("facebook.com/tr")
is a prefix of the URL's path under that host, for its kind. Patterns that do
not start with a host ("matomo.js", "/b/ss/") stay substrings of the whole
URL (a short list, by rank).

The operator's tracker lists (`[trackers] lists`, read by
`consentproxy.tracker_lists`) come last, as a `ListIndex` built once per
configuration and shared by every site's matcher (never copied: a million
rules for thousands of sites): their bare hosts in a second dict, looked up
label by label only when no rule of the first matched (a list never
overrides the catalogue's or the site's categorisation), then their filter
rules that are more than a host, asked per URL (through adblock-rust) only
when no host matched at all.

The tables built from the services (host index, substring patterns, inline
signatures) are read-only: sites that declare no services of their own share
the catalogue's one copy (10,000 sites need not build and hold 10,000).

URLs, hosts and inline snippets repeat on every page of a site, so answers
are cached per matcher (a page's ~50 `<img>` each ask about their URL; inline
code longer than 16 K characters by a digest of it);
inline code is searched with one regular expression per first character of
the signatures, each shaped as a trie (Python's engine tries an alternation's
branches one by one at every position: a flat alternation of 80 literals costs
twice a trie, and one trie of the 300 signatures of 200 services four times
these ~45 tries, whose literal first character it finds by fast search), then
ranked, and for the catalogued hosts it names in URL-like strings
(`'//sb.scorecardresearch.com/beacon.js'`, `"https://secure" +
".quantserve.com/quant.js"`): code that builds a tracker's URL is that
tracker.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import html
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from consentproxy.config.model import ServiceConfig
from consentproxy.cookies.classify import builtin_services
from consentproxy.trackers_data import open_cookie_database_hosts

Kind = Literal["scripts", "iframes", "pixels", "hosts"]
_CACHE_LIMIT = 4096
#: inline code is cached up to this many characters in all, a snippet up to 1/16 of it: the regex costs
#: ~0.1 µs a character, and the snippets of a site's template (gtag, fbq…) repeat on every page
_INLINE_CACHE_CHARS = 1 << 18
#: longer snippets (a page's inlined bundle or state, up to megabytes, on every page view) are cached by a
#: digest instead, this many: hashing costs ~1/100 of searching
_BIG_INLINE_ENTRIES = 256
#: what a rule applies to (bits of a rule's mask)
_BITS: dict[str, int] = {"scripts": 1, "iframes": 2, "pixels": 4, "hosts": 8}
_INLINE = 16
_EVERY = 31
#: the rank of the rules from outside the services (the Open Cookie Database): after every service
_EXTRA_RANK = 1 << 30
#: the rank of the operator's lists: after everything else
_LIST_RANK = 1 << 31
#: the host a URL without one (relative) is given when a list's filters are asked about it: the page's own
_PAGE_ORIGIN = "https://consentproxy.invalid"
#: the host part of a pattern: labels of letters, digits and hyphens, a top-level label that is no number
_PATTERN_HOST = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9])?\.)+(?:[a-z][a-z0-9-]*[a-z0-9]|xn--[a-z0-9-]+)")
_PATTERN_HOST_END = re.compile(r"[/?#]")
#: "matomo.js", "piwik.php": file names, not hosts
_FILE_SUFFIXES = frozenset({"js", "mjs", "php", "gif", "png", "jpg", "jpeg", "webp", "svg", "html", "htm", "json",
                            "css", "cgi", "asp", "aspx", "jsp", "pl", "txt", "xml", "swf"})
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")
#: schemes whose URLs have a host (and read "\" as "/")
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp"})
#: what a browser strips from both ends of a URL (C0 controls and space) and removes inside it
_URL_EDGES = "".join(map(chr, range(33)))
_URL_INSIDE = dict.fromkeys(map(ord, "\t\n\r"))
_AUTHORITY_END = re.compile(r"[/?#]")
#: a `srcset` candidate's URL (after separators), then its descriptors up to the next comma (not one in
#: parentheses)
_SRCSET_URL = re.compile(r"[\t\n\f\r ,]*([^\t\n\f\r ]*)")
_SRCSET_DESCRIPTORS = re.compile(r"(?:[^,(]+|\([^)]*\)?)*")
#: a host name in code, as the start of a URL ("//host", "https://host", "\/\/host" in JSON) or of a string
#: ("'host.com/x'", "'.host.com/x'" after a computed subdomain); with what follows it up to a quote or space
_CODE_HOST = re.compile(r"""(?:\\?/\\?/|["'`]\.?)((?:[a-z0-9_-]+\.)+[a-z][a-z0-9-]*)((?:\\?/[^\s"'`<>()\\]*)*)""")

#: (rank, kinds mask, path prefix, service) of one host rule
_Rule = tuple[int, int, str, "Match"]


@dataclass(frozen=True, slots=True)
class Match:
    service: str
    category: str


class UrlFilter(Protocol):
    """A list's rules that are more than a host (an adblock filter engine): asked per URL."""

    def match(self, url: str, kind: Kind) -> Match | None:
        """The list's match for an absolute URL loaded by an element of `kind` ("scripts", "iframes",
        "pixels"), seen from a page of another site."""
        ...


@dataclass(frozen=True, slots=True)
class ListIndex:
    """The operator's tracker lists: one per configuration, shared by every site's matcher.

    `hosts`: host name → match (a rule for the host and its subdomains, every kind of element); `filters`:
    the rest of the lists' rules, asked in order.
    """

    hosts: Mapping[str, Match] = field(default_factory=dict)
    filters: tuple[UrlFilter, ...] = ()

    def __len__(self) -> int:
        return len(self.hosts)


def open_cookie_database_rules() -> tuple[tuple[str, Match], ...]:
    """The Open Cookie Database's Marketing and Analytics hosts as host rules, after the catalogue.

    From `consentproxy.trackers_data.open_cookie_database_hosts()` ((host, platform, category), hosts the
    catalogue covers left out).
    """
    return tuple((host, Match(platform or host, category)) for host, platform, category in open_cookie_database_hosts())


def split_url(raw_url: str) -> tuple[str, str | None, str]:
    """A URL as a browser reads it → (the whole URL, normalised; its host or None; the rest after the host).

    Character references are decoded; tabs and newlines removed; controls and spaces stripped at both ends;
    lower case; "\\" read as "/"; scheme-relative ("//host/x") and `http:`/`https:` URLs (any number of
    slashes) have a host, without userinfo, port and trailing dots, IDN in its ASCII (punycode) form. A
    relative URL or one of another scheme (`data:`, `javascript:`) has none.
    """
    url = html.unescape(raw_url) if "&" in raw_url else raw_url
    url = url.strip(_URL_EDGES)
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.translate(_URL_INSIDE)
    url = url.lower()
    if "\\" in url:
        url = url.replace("\\", "/")
    scheme = _SCHEME.match(url)
    if scheme is not None:
        if url[:scheme.end() - 1] not in _SPECIAL:
            return url, None, url
        rest = url[scheme.end():].lstrip("/")
    elif url.startswith("//"):
        rest = url.lstrip("/")
    else:
        return url, None, url
    end = _AUTHORITY_END.search(rest)
    authority, path = (rest[:end.start()], rest[end.start():]) if end else (rest, "")
    host = authority.rpartition("@")[2]
    if host.startswith("["):  # IPv6: no name to look up
        return url, host.partition("]")[0] + "]", path
    host = host.partition(":")[0]
    if "%" in host:
        host = unquote(host)
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # not a valid IDN: looked up as it is (it names no rule)
            host = host.encode("idna").decode("ascii")
    return url, host.rstrip("."), path


def srcset_urls(value: str) -> list[str]:
    """The URLs of a `srcset` (or `imagesrcset`) value, as the HTML standard splits it: a URL is a run without
    whitespace (commas inside it belong to it, trailing ones end it), its descriptors go up to the next comma."""
    urls: list[str] = []
    pos = 0
    while True:
        found = _SRCSET_URL.match(value, pos)
        assert found is not None  # the pattern matches the empty string
        url = found.group(1)
        if not url:
            return urls
        pos = found.end()
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            descriptors = _SRCSET_DESCRIPTORS.match(value, pos)
            assert descriptors is not None
            pos = descriptors.end()
        if url:
            urls.append(url)


@dataclass(frozen=True, slots=True)
class _Tables:
    """What a matcher looks things up in, built from its services and extra hosts (read-only once built)."""

    index: dict[str, tuple[_Rule, ...]]
    residual: dict[str, tuple[tuple[int, str, Match], ...]]
    signatures: dict[str, tuple[int, Match]]
    inline_res: tuple[re.Pattern[str], ...]

    @classmethod
    def build(cls, services: tuple[ServiceConfig, ...], extra_hosts: Iterable[tuple[str, Match]]) -> _Tables:
        index: dict[str, tuple[_Rule, ...]] = {}
        shared: dict[_Rule, tuple[_Rule, ...]] = {}  # one tuple for the many hosts with one same rule

        def add(host: str, rule: _Rule) -> None:
            rules = index.get(host)
            if rules is None:
                single = shared.get(rule)
                if single is None:
                    single = shared[rule] = (rule,)
                index[host] = single
            elif rule not in rules:  # ranks only grow: the rules of a host stay sorted by rank
                index[host] = (*rules, rule)

        residual: dict[str, list[tuple[int, str, Match]]] = {kind: [] for kind in _BITS}
        for rank, service in enumerate(services):
            match = Match(service.name, service.category)
            for host in service.hosts:
                add(host.lower().strip().rstrip("."), (rank, _EVERY, "", match))
            for kind in ("scripts", "iframes", "pixels"):
                for pattern in getattr(service, kind):
                    pattern = pattern.lower()
                    head = _PATTERN_HOST_END.split(pattern, maxsplit=1)[0]
                    if _PATTERN_HOST.fullmatch(head) and head.rsplit(".", 1)[1] not in _FILE_SUFFIXES:
                        path = pattern[len(head):]
                        add(head, (rank, _EVERY, "", match) if not path else (rank, _BITS[kind] | _INLINE, path,
                                                                                 match))
                    else:
                        residual[kind].append((rank, pattern, match))
        for host, match in extra_hosts:
            add(host, (_EXTRA_RANK, _EVERY, "", match))
        signatures: dict[str, tuple[int, Match]] = {}
        for rank, service in enumerate(services):
            for signature in service.inline:
                signatures.setdefault(signature, (rank, Match(service.name, service.category)))
        by_first: dict[str, list[str]] = {}
        for signature in signatures:
            by_first.setdefault(signature[0], []).append(signature)
        return cls(index, {kind: tuple(rules) for kind, rules in residual.items()}, signatures,
                   tuple(re.compile(trie_pattern(group)) for group in by_first.values()))


@functools.cache
def _catalogue_tables() -> _Tables:
    return _Tables.build(builtin_services(), open_cookie_database_rules())


class TrackerMatcher:
    """Matches element URLs and inline code against a site's services and the catalogue.

    `extra_hosts`: (host, service) rules after every service (default, with the catalogue: the Open Cookie
    Database's, see `open_cookie_database_rules`). `lists`: the operator's tracker lists, consulted last
    (shared, not copied).
    """

    def __init__(self, site_services: tuple[ServiceConfig, ...], use_catalogue: bool = True,
                 extra_hosts: Iterable[tuple[str, Match]] | None = None, lists: ListIndex | None = None) -> None:
        if not site_services and use_catalogue and extra_hosts is None:
            tables = _catalogue_tables()  # most sites declare no services: one copy for all of them
        else:
            services = site_services + (builtin_services() if use_catalogue else ())
            tables = _Tables.build(services, (open_cookie_database_rules() if use_catalogue else ())
                                   if extra_hosts is None else extra_hosts)
        self._index = tables.index
        self._residual = tables.residual
        self._signatures = tables.signatures
        self._inline_res = tables.inline_res
        self._list_hosts: Mapping[str, Match] = lists.hosts if lists is not None else {}
        self._filters = lists.filters if lists is not None else ()
        self._url_cache: dict[str, dict[str, Match | None]] = {kind: {} for kind in _BITS}
        self._host_cache: dict[str, Match | None] = {}
        self._srcset_cache: dict[str, dict[str, Match | None]] = {kind: {} for kind in _BITS}
        self._inline_cache: dict[str, Match | None] = {}
        self._inline_chars = 0
        self._big_inline_cache: dict[bytes, Match | None] = {}
        #: ranks below this are the site's own services (for `source`)
        self._site_ranks = len(site_services)

    def fresh(self) -> TrackerMatcher:
        """The same rules (shared, not copied) with empty caches: for asking many questions in another
        thread (the guard's table at a reload) without touching the caches the event loop uses."""
        other = copy.copy(self)
        other._url_cache = {kind: {} for kind in _BITS}
        other._host_cache = {}
        other._srcset_cache = {kind: {} for kind in _BITS}
        other._inline_cache = {}
        other._inline_chars = 0
        other._big_inline_cache = {}
        return other

    def __len__(self) -> int:
        """The number of host names with rules (the site's services, the catalogue and the Open Cookie
        Database; not the operator's lists)."""
        return len(self._index)

    def host_rules(self) -> Iterator[tuple[str, str, Match]]:
        """Every host rule as (host, path prefix or "", match), the best-ranked first for each host: what the
        client-side guard's table is made from (the same rules as the server's), the site's and the
        catalogue's first, then the hosts of the operator's lists (whose size the guard bounds; their URL
        filters name no host and stay the server's)."""
        index = self._index
        for host, rules in index.items():
            for _, _, prefix, match in rules:
                yield host, prefix, match
        for host, match in self._list_hosts.items():
            if host not in index:
                yield host, "", match

    def url_patterns(self) -> Iterator[tuple[Kind, str, Match]]:
        """The patterns that do not start with a host ("matomo.js", "/b/ss/"): substrings of a whole URL."""
        for kind, rules in self._residual.items():
            for _, pattern, match in rules:
                yield kind, pattern, match  # type: ignore[misc]

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
        url, host, path = split_url(raw_url)
        best = self._ranked(kind, url, host, path)
        if best is None and self._filters:
            return _remember(cache, raw_url, self._filter(kind, url, host, path))
        return _remember(cache, raw_url, best[1] if best is not None else None)

    def _ranked(self, kind: Kind, url: str, host: str | None, path: str) -> tuple[int, Match] | None:
        """The best host or residual (substring) rule for a split URL, with its rank; the lists' filters aside."""
        best = self._lookup(_BITS[kind], host, path) if host else None
        for rank, pattern, match in self._residual[kind]:
            if best is not None and rank >= best[0]:
                break
            if pattern in url:
                return rank, match
        return best

    def _filter(self, kind: Kind, url: str, host: str | None, path: str) -> Match | None:
        """The lists' filter rules for a URL no host rule matched: absolute, a relative one on the page's own
        origin; URLs of other schemes (`data:`, `javascript:`) load nothing from the network."""
        if host is not None:
            absolute = f"https://{host}{path}" if path.startswith("/") else f"https://{host}/{path}"
        elif _SCHEME.match(url) is None:
            absolute = f"{_PAGE_ORIGIN}/{url.lstrip('/')}"
        else:
            return None
        for url_filter in self._filters:
            found = url_filter.match(absolute, kind)
            if found is not None:
                return found
        return None

    def source(self, kind: Kind, raw_url: str) -> tuple[Match, str] | None:
        """A loaded URL's service and where its rule comes from, for the inventory: "declared" (the site's
        services), "catalogue", "database" (the Open Cookie Database's hosts) or "operator" (the operator's
        lists). Not cached: asked once per new host a browser reports, not per element."""
        url, host, path = split_url(raw_url)
        best = self._ranked(kind, url, host, path)
        if best is None:
            found = self._filter(kind, url, host, path) if self._filters else None
            return (found, "operator") if found is not None else None
        rank, match = best
        if rank >= _LIST_RANK:
            return match, "operator"
        if rank >= _EXTRA_RANK:
            return match, "database"
        return match, "declared" if rank < self._site_ranks else "catalogue"

    def srcset(self, kind: Kind, raw_srcset: str) -> Match | None:
        """The service of the first URL of a `srcset` (a raw attribute value) that belongs to one."""
        cache = self._srcset_cache[kind]
        try:
            return cache[raw_srcset]
        except KeyError:
            pass
        value = html.unescape(raw_srcset) if "&" in raw_srcset else raw_srcset
        found = None
        for url in srcset_urls(value):
            found = self.url(kind, url)
            if found is not None:
                break
        return _remember(cache, raw_srcset, found)

    def host(self, raw_url: str) -> Match | None:
        """For resource hints: the host of the URL (scheme-relative allowed; a bare host name too) against the
        rules without a path."""
        cache = self._host_cache
        try:
            return cache[raw_url]
        except KeyError:
            pass
        _, host, path = split_url(raw_url)
        if host is None:  # "example.com" in a dns-prefetch: a host name, as browsers read it there too
            _, host, path = split_url("//" + raw_url.strip(_URL_EDGES))
        best = self._lookup(_BITS["hosts"], host, path) if host else None
        return _remember(cache, raw_url, best[1] if best is not None else None)

    def _lookup(self, bit: int, host: str, path: str) -> tuple[int, Match] | None:
        """The first-ranked rule for `bit` of the host or a parent domain (down to two labels) whose path
        prefix the path starts with; the most specific host among equal ranks. Then, only if none, the
        operator's lists' hosts (the most specific)."""
        index = self._index
        best: tuple[int, Match] | None = None
        name = host
        while True:
            rules = index.get(name)
            if rules is not None:
                for rank, mask, prefix, match in rules:
                    if best is not None and rank >= best[0]:
                        break
                    if mask & bit and path.startswith(prefix):
                        best = (rank, match)
                        break
            dot = name.find(".")
            if dot < 0:
                break
            name = name[dot + 1:]
            if "." not in name:
                break
        if best is None and self._list_hosts:
            listed = _walk(self._list_hosts, host)
            if listed is not None:
                return _LIST_RANK, listed
        return best

    def inline(self, code: str) -> Match | None:
        """The best-ranked service whose signature occurs in inline script code, or whose host it names."""
        cache = self._inline_cache
        try:
            return cache[code]
        except KeyError:
            pass
        if len(code) > _INLINE_CACHE_CHARS // 16:
            big = self._big_inline_cache
            digest = hashlib.blake2b(code.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            try:
                return big[digest]
            except KeyError:
                pass
            found = self._search_inline(code)
            if len(big) >= _BIG_INLINE_ENTRIES:
                big.clear()
            big[digest] = found
            return found
        found = self._search_inline(code)
        if self._inline_chars + len(code) > _INLINE_CACHE_CHARS:
            cache.clear()
            self._inline_chars = 0
        cache[code] = found
        self._inline_chars += len(code)
        return found

    def _search_inline(self, code: str) -> Match | None:
        best: tuple[int, Match] | None = None
        for pattern in self._inline_res:
            for found in pattern.finditer(code):
                candidate = self._signatures[found.group()]
                if best is None or candidate[0] < best[0]:
                    best = candidate
                    if best[0] == 0:
                        return best[1]
        if ("/" in code or "." in code) and (self._index or self._list_hosts):
            lowered = code.lower()
            for found in _CODE_HOST.finditer(lowered):
                path = found.group(2)
                named = self._lookup(_INLINE, found.group(1), path.replace("\\", "") if path else "")
                if named is not None and (best is None or named[0] < best[0]):
                    best = named
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


def _walk(hosts: Mapping[str, Match], host: str) -> Match | None:
    """The match of the host or its nearest parent domain (down to two labels) in a host → match index."""
    name = host
    while True:
        found = hosts.get(name)
        if found is not None:
            return found
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1:]
        if "." not in name:
            return None


def _remember(cache: dict[str, Match | None], key: str, found: Match | None) -> Match | None:
    """Store an answer in a bounded cache (emptied when full: the pages' URLs soon fill it again)."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = found
    return found
