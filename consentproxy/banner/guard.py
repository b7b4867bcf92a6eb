"""The client-side guard: `static/banner/guard.js` with the site's tracker table, one content-hashed file.

The proxy blocks the trackers written in a page's HTML; the guard, the page's first script, holds what the
page's scripts load later. It decides with the server's rules, shipped as a table made from the site's
`TrackerMatcher`:

- `c`: {category: "host host …"}: hosts whose every URL has that category;
- `p`: {host: {path prefix: category}}: hosts whose category depends on the path (the longest prefix the
  URL's path and query start with wins; "" is the host's default);
- `u`: {kind: [[substring, category], …]}: the patterns that name no host ("matomo.js"), for third-party
  URLs whose host has no entry;
- only for a site that holds unknown third parties (`third_party = "hold"`, see consentproxy/html/functional.py):
  `d`, the category such a host is held under, and `a`, "host host/path …": what is not held (the site's own
  names and their registrable domains, its declared hosts, the built-in functional list; a page's own host and
  its subdomains, "www." left out, are its own too).

A URL's host is looked up, then each parent domain down to two labels: the first host with an entry
decides. Category "" means allowed: a necessary service, or one the site routes through the proxy's
anonymiser (`unblocked`); such entries stay where they shadow a tracker's parent domain.

Each entry is the server's own answer: the matcher is asked for the host with each path prefix its rules
(and its parent domains' rules) have, so ranking across hosts, services and parent domains is the
server's. The guard does not tell element kinds apart: a URL is read as the server reads a script's, else
(no rule for scripts) an iframe's, else a pixel's; a prefix rule for pixels holds a fetch to it too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from consentproxy.banner.assets import Asset, BannerAssets, make_asset
from consentproxy.banner.compaction import compact_script
from consentproxy.html.functional import UNKNOWN_CATEGORY, ThirdParties
from consentproxy.html.trackers import Kind, TrackerMatcher

logger = logging.getLogger("consentproxy.banner")

#: where guard.js takes its table
TABLE_MARKER = "/*table*/{c: {}, p: {}, u: {}}"
#: hosts in the table at most (the first ones the matcher yields: the site's services, then the catalogue,
#: then the larger lists); a million-rule operator list must not become a megabyte every page loads
HOST_LIMIT = 20000
_KINDS: tuple[Kind, ...] = ("scripts", "iframes", "pixels")
_ALLOWED = ""


@dataclass(frozen=True, slots=True)
class SiteGuard:
    """A site's guard file: its URL path under the consent prefix and the categories its table holds."""

    path: str
    categories: frozenset[str]
    #: the file itself, so a configuration that reuses the site serves it too
    asset: Asset | None = None

    def needed(self, allowed: frozenset[str]) -> bool:
        """Whether a page with these categories granted needs the guard (something in the table is held)."""
        return not self.categories <= allowed


def build_guard(assets: BannerAssets, matcher: TrackerMatcher, unblocked: frozenset[str],
                parties: ThirdParties | None = None) -> SiteGuard:
    """The site's guard, registered with `assets` (so the consent endpoints serve it, compressed once)."""
    asset, categories = compile_guard(assets.guard_source, matcher, unblocked, parties)
    return SiteGuard(assets.put(asset), categories, asset)


def compile_guard(source: str, matcher: TrackerMatcher, unblocked: frozenset[str],
                  parties: ThirdParties | None = None) -> tuple[Asset, frozenset[str]]:
    """The guard file and the categories its table holds: the same for every site with the same matcher
    inputs, so the runtime compiles it once for all of them (~5 ms and ~60 KB each)."""
    table = guard_table(matcher, unblocked, parties)
    return make_asset("guard.js", guard_script(source, table)), table_categories(table)


def guard_script(source: str, table: dict[str, Any]) -> bytes:
    """guard.js as served: compact, with the table in place of its empty one."""
    if source.count(TABLE_MARKER) != 1:
        raise ValueError(f"guard.js must hold {TABLE_MARKER!r} once, where the table goes")
    encoded = json.dumps(table, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return compact_script(source).replace(TABLE_MARKER, encoded).encode("ascii")


def table_categories(table: dict[str, Any]) -> frozenset[str]:
    found = set(table["c"])
    if "d" in table:
        found.add(table["d"])
    for entry in table["p"].values():
        found.update(entry.values())
    for patterns in table["u"].values():
        found.update(category for _, category in patterns)
    return frozenset(found - {_ALLOWED})


def guard_table(matcher: TrackerMatcher, unblocked: frozenset[str],
                parties: ThirdParties | None = None) -> dict[str, Any]:
    """The compact table of the matcher's host rules and URL patterns (see the module docstring)."""
    prefixes: dict[str, set[str]] = {}
    for host, prefix, _ in matcher.host_rules():
        if host not in prefixes and len(prefixes) >= HOST_LIMIT:
            logger.warning("the client-side guard's table holds the first %d tracker hosts of %d", HOST_LIMIT,
                           len(matcher))
            break
        prefixes.setdefault(host, set()).add(prefix)

    hold = parties if parties is not None and parties.hold else None  # the site holds unknown hosts
    if hold is not None:  # what is not held under a tracker's domain gets entries (and prefixes) of its own
        for allowed in hold.not_held:
            host, slash, path = allowed.partition("/")
            if any(name in prefixes for name in _self_and_parents(host)):
                prefixes.setdefault(host, set()).add(slash + path)

    def verdict(host: str, prefix: str) -> str:
        """The server's category for a URL of this host whose path starts with this prefix and no longer one:
        as a script's URL, else (no rule for scripts) an iframe's, else a pixel's. So a service the site
        routes through its anonymiser stays allowed where another has a rule for another kind of element.
        Under hold, a URL no rule knows is held unless the site's third parties allow it."""
        url = f"//{host}{prefix or '/'}"  # a browser's path starts with "/"
        for kind in _KINDS:
            match = matcher.url(kind, url)
            if match is not None:
                return match.category if match.category != "necessary" and match.service not in unblocked \
                    else _ALLOWED
        if hold is not None and hold.party(url).origin == "unknown":
            return UNKNOWN_CATEGORY
        return _ALLOWED

    entries: dict[str, dict[str, str]] = {}
    for host in prefixes:
        candidates = {""}
        for name in _self_and_parents(host):
            candidates |= prefixes.get(name, set())
        entry: dict[str, str] = {}
        for prefix in sorted(candidates, key=len):
            category = verdict(host, prefix)
            # the longest shorter candidate kept answers for this prefix when it is left out
            if prefix == "" or _pick(entry, prefix) != category:
                entry[prefix] = category
        entries[host] = entry

    kept: dict[str, dict[str, str]] = {}
    for host in sorted(entries, key=lambda name: name.count(".")):  # parent domains first
        entry = entries[host]
        fallback = next((kept[name] for name in _self_and_parents(host)[1:] if name in kept), None)
        if fallback is None:
            if hold is not None or set(entry.values()) != {_ALLOWED}:  # under hold, no entry is not "allowed"
                kept[host] = entry
        elif any(_pick(entry, prefix) != _pick(fallback, prefix) for prefix in {*entry, *fallback}):
            kept[host] = entry

    simple: dict[str, list[str]] = {}
    by_path: dict[str, dict[str, str]] = {}
    for host, entry in sorted(kept.items()):
        if list(entry) == [""]:
            simple.setdefault(entry[""], []).append(host)
        else:
            by_path[host] = entry
    patterns: dict[str, list[list[str]]] = {}
    for kind, pattern, match in matcher.url_patterns():
        if match.category != "necessary" and match.service not in unblocked:
            patterns.setdefault(kind, []).append([pattern, match.category])
    table: dict[str, Any] = {"c": {category: " ".join(hosts) for category, hosts in simple.items()},
                             "p": by_path, "u": patterns}
    if hold is not None:
        table["d"] = UNKNOWN_CATEGORY
        table["a"] = " ".join(hold.not_held)
    return table


def _self_and_parents(host: str) -> list[str]:
    """The host and its parent domains down to two labels, as the matcher looks them up."""
    names = [host]
    while host.count(".") > 1:
        host = host.split(".", 1)[1]
        names.append(host)
    return names


def _pick(entry: dict[str, str], path: str) -> str:
    """What the guard answers for a path under an entry: the longest prefix of the path there."""
    best = max((prefix for prefix in entry if path.startswith(prefix)), key=len, default=None)
    return entry[best] if best is not None else _ALLOWED
