"""The operator's tracker lists (`[trackers] lists`), read into one shared host index.

None of these lists is shipped (their licences forbid it): an operator obtains
them and names them in the configuration. Four formats:

- trackerdb: Ghostery's TrackerDB, `trackerdb.db` (SQLite: `tracker_domains`
  (tracker, domain) → `trackers` (id, name, category_id) → `categories` (id,
  name)) or its JSON export (`patterns` → id → {name, category, domains}).
  The patterns' own filters are not read (their domains are).
- tds: DuckDuckGo's tracker blocklist (`trackers` → domain → {owner,
  categories, default}); domains whose `default` is "ignore" are blocked by
  DuckDuckGo only through path rules, which are not read, so they are left out.
- disconnect: Disconnect's `services.json` (`categories` → name → list of
  {company: {url: [domains], flags…}}).
- abp: an EasyList/EasyPrivacy-style filter list. A rule that is just a host
  (`||host^`, with `$third-party` or `$important` at most) goes into the host
  index unless an exception (`@@||…`) or a `$badfilter` touches that host; every
  other network rule goes to adblock-rust (the `braveblock` bindings), asked
  per URL only when no host rule matched. Element-hiding rules are dropped.

Each list's categories are mapped to ours by `BUILTIN_CATEGORIES` (a list's
categories not named there are not trackers, e.g. CDN, hosting, "essential",
consent managers, and are left out), overridden by the list's `categories`;
mapping a category to "necessary" leaves it out too (what a list does not
hold is allowed anyway). A TDS tracker with several categories takes the most
restrictive one (marketing, then statistics, then preferences); one without
any counts as "(none)"; every rule of an ABP list counts as "all".

A file that cannot be used stops the start (and a SIGHUP reload keeps the
running configuration): `ConfigError` naming the list, its path and the
reason. Lists are read once per configuration; the last configuration's
lists stay cached by file identity (path, size, modification time, inode), so
the start's check and the runtime, or a reload that did not touch the files,
do not read a million rules twice.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from consentproxy.config.model import Config, TrackerListConfig, TrackerListFormat
from consentproxy.config.reader import ConfigError, Problem
from consentproxy.html.trackers import Kind, ListIndex, Match, UrlFilter

logger = logging.getLogger("consentproxy.trackers")

#: each format's categories that are trackers, mapped to ours
BUILTIN_CATEGORIES: dict[TrackerListFormat, dict[str, str]] = {
    "trackerdb": {
        "advertising": "marketing", "pornvertising": "marketing", "adult_advertising": "marketing",
        "social_media": "marketing", "customer_interaction": "marketing", "audio_video_player": "marketing",
        "site_analytics": "statistics",
    },
    "tds": {
        "Advertising": "marketing", "Ad Motivated Tracking": "marketing", "Action Pixels": "marketing",
        "Third-Party Analytics Marketing": "marketing", "Social Network": "marketing", "Social - Share": "marketing",
        "Social - Comment": "marketing", "Unknown High Risk Behavior": "marketing", "Obscure Ownership": "marketing",
        "(none)": "marketing",
        "Analytics": "statistics", "Audience Measurement": "statistics", "Session Replay": "statistics",
    },
    "disconnect": {
        "Advertising": "marketing", "Social": "marketing", "FingerprintingInvasive": "marketing",
        "FingerprintingGeneral": "marketing", "Cryptomining": "marketing",
        "Analytics": "statistics",
    },
    "abp": {"all": "marketing"},
}
#: the most restrictive first: a tracker in several categories takes the first
_SEVERITY = ("marketing", "statistics", "preferences")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HOST = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)+")
#: `||host^` with options that do not narrow what it blocks
_ABP_HOST_LINE = re.compile(r"^\|\|([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+)\.?\^(?:\$([A-Za-z0-9~,-]+))?$", re.MULTILINE)
_ABP_BROAD_OPTIONS = frozenset({"third-party", "3p", "~first-party", "~1p", "important"})
_ABP_EXCEPTION_HOST = re.compile(r"@@\|\|([a-z0-9_.-]+)", re.IGNORECASE)
_ABP_COSMETIC = re.compile(r"#@?[?$%]?#")
#: what adblock-rust calls our kinds of element
_REQUEST_TYPES: dict[str, str] = {"scripts": "script", "iframes": "sub_frame", "pixels": "image"}
_PAGE = "https://consentproxy.invalid/"

_cached: tuple[tuple[Any, ...], ListIndex] | None = None


class ListError(Exception):
    """Why a list file cannot be used (and what to do)."""


def load_tracker_lists(config: Config) -> ListIndex:
    """The configuration's lists as one index (the first list that names a host wins); `ConfigError` naming
    every list that cannot be used."""
    global _cached
    lists = config.trackers.lists
    if not lists:
        _cached = None  # a reload that drops the lists frees them once the old runtime is gone
        return ListIndex()
    key = tuple(_identity(item) for item in lists)
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    problems: list[Problem] = []
    parts: list[ListIndex] = []
    for index, item in enumerate(lists):
        try:
            parts.append(read_list(item))
        except ListError as exc:
            problems.append(Problem(str(config.source) if config.source else "(command line)",
                                    f"trackers.lists[{index}]", f"{item.path}: {exc}"))
    if problems:
        raise ConfigError(problems)
    merged = _merge(parts)
    _cached = (key, merged)
    logger.info("tracker lists: %d host(s), %d filter engine(s) from %d list(s)", len(merged.hosts),
                len(merged.filters), len(lists))
    return merged


def read_list(item: TrackerListConfig) -> ListIndex:
    """One list file's host rules and filters; `ListError` with the reason."""
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        raise ListError(f"cannot read the {item.format} list: {exc.strerror or exc}; check `path` (relative to "
                        "the configuration file) and the file's permissions") from None
    categories = {**BUILTIN_CATEGORIES[item.format], **item.categories}
    mapper = _Mapper(categories)
    if item.format == "abp":
        index = _read_abp(data, item.path, mapper)
    else:
        rules: Iterable[tuple[str, str, str | list[str]]]
        if item.format == "trackerdb" and data.startswith(_SQLITE_MAGIC):
            rules = _trackerdb_sqlite(item.path)
        else:
            rules = _JSON_READERS[item.format](_json(data, item.format))
        hosts: dict[str, Match] = {}
        for host, service, category in rules:
            match = mapper.match(service, category)
            if match is not None:
                hosts.setdefault(host, match)
        index = ListIndex(hosts)
    if not index.hosts and not index.filters:
        seen = ", ".join(sorted(mapper.seen)) or "none"
        raise ListError(f"holds no usable rule (the {item.format} list's categories found: {seen}; mapped: "
                        f"{', '.join(f'{k} = {v}' for k, v in sorted(categories.items()))}); is it the right "
                        "file and `format`? Map its tracker categories with `categories = {NAME = \"marketing\"}`")
    unused = set(item.categories) - mapper.seen
    if unused:
        logger.warning("%s: categories %s do not occur in this list", item.path, ", ".join(sorted(unused)))
    return index


class _Mapper:
    """A list's category names → ours, one shared Match per (service, category)."""

    def __init__(self, categories: dict[str, str]) -> None:
        self.categories = categories
        self.seen: set[str] = set()
        self._matches: dict[tuple[str, str], Match] = {}

    def match(self, service: str, category: str | list[str]) -> Match | None:
        names = [category] if isinstance(category, str) else category or ["(none)"]
        self.seen.update(names)
        ours = {self.categories.get(name) for name in names}
        chosen = next((c for c in _SEVERITY if c in ours), None)
        if chosen is None:  # unmapped, or mapped to "necessary": not a tracker
            return None
        key = (service, chosen)
        found = self._matches.get(key)
        if found is None:
            found = self._matches[key] = Match(service, chosen)
        return found


def _identity(item: TrackerListConfig) -> tuple[Any, ...]:
    try:
        stat = item.path.stat()
        state: tuple[int, ...] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        state = ()
    return item.format, str(item.path), tuple(sorted(item.categories.items())), state


def _merge(parts: list[ListIndex]) -> ListIndex:
    if len(parts) == 1:
        return parts[0]
    hosts: dict[str, Match] = {}
    for part in parts:
        for host, match in part.hosts.items():
            hosts.setdefault(host, match)
    return ListIndex(hosts, tuple(f for part in parts for f in part.filters))


def _host(raw: Any) -> str | None:
    """A list's domain as our index keys it (lower case, no trailing dot, no leading "*."), or None."""
    if not isinstance(raw, str):
        return None
    host = raw.strip().lower().rstrip(".").removeprefix("*.").removeprefix(".")
    return host if _HOST.fullmatch(host) else None


def _json(data: bytes, list_format: str) -> Any:
    if data.startswith(_SQLITE_MAGIC):
        raise ListError(f"is an SQLite database, not the JSON a {list_format} list is; a Ghostery trackerdb.db "
                        "takes format = \"trackerdb\"")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ListError(f"is not JSON ({exc}); a {list_format} list is a JSON file — is `format` right "
                        "(an EasyList-style filter list takes format = \"abp\")?") from None


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ListError(f"has no {what} table where the format has one; is `format` right for this file?")
    return value


_Rules = Iterator[tuple[str, str, str | list[str]]]


def _trackerdb_json(data: Any) -> _Rules:
    """Ghostery's trackerdb.json: `patterns` → id → {name, category, domains}."""
    patterns = _table(_table(data, "top-level").get("patterns"), '"patterns"')
    for key, pattern in patterns.items():
        if isinstance(pattern, dict) and isinstance(pattern.get("domains"), list):
            category = pattern.get("category")
            name = str(pattern.get("name") or key)
            for domain in pattern["domains"]:
                host = _host(domain)
                if host is not None and isinstance(category, str):
                    yield host, name, category


def _trackerdb_sqlite(path: Path) -> list[tuple[str, str, str | list[str]]]:
    """Ghostery's trackerdb.db: tracker_domains → trackers → categories."""
    query = ("SELECT d.domain, t.name, c.name FROM tracker_domains AS d JOIN trackers AS t ON t.id = d.tracker "
             "LEFT JOIN categories AS c ON c.id = t.category_id")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute(query).fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise ListError(f"is not a readable TrackerDB database ({exc}); expected Ghostery's trackerdb.db with the "
                        "tables tracker_domains, trackers and categories") from None
    rules: list[tuple[str, str, str | list[str]]] = []
    for domain, name, category in rows:
        host = _host(domain)
        if host is not None and isinstance(category, str):
            rules.append((host, str(name), category))
    return rules


def _tds(data: Any) -> _Rules:
    """DuckDuckGo's TDS: `trackers` → domain → {owner: {name, displayName}, categories, default}."""
    trackers = _table(_table(data, "top-level").get("trackers"), '"trackers"')
    for domain, tracker in trackers.items():
        host = _host(domain)
        if host is None or not isinstance(tracker, dict) or tracker.get("default", "block") != "block":
            continue
        owner = tracker.get("owner")
        name = domain
        if isinstance(owner, dict):
            name = owner.get("displayName") or owner.get("name") or domain
        categories = tracker.get("categories")
        yield host, str(name), [c for c in categories if isinstance(c, str)] if isinstance(categories, list) else []


def _disconnect(data: Any) -> _Rules:
    """Disconnect's services.json: `categories` → name → [{company: {url: [domains], flag: "true"}}]."""
    categories = _table(_table(data, "top-level").get("categories"), '"categories"')
    for category, entries in categories.items():
        for entry in entries if isinstance(entries, list) else ():
            for company, sites in entry.items() if isinstance(entry, dict) else ():
                for domains in sites.values() if isinstance(sites, dict) else ():
                    for domain in domains if isinstance(domains, list) else ():
                        host = _host(domain)
                        if host is not None:
                            yield host, str(company), category


_JSON_READERS = {"trackerdb": _trackerdb_json, "tds": _tds, "disconnect": _disconnect}


def _read_abp(data: bytes, path: Path, mapper: _Mapper) -> ListIndex:
    if data.startswith(_SQLITE_MAGIC):
        raise ListError("is an SQLite database, not a filter list; a Ghostery trackerdb.db takes "
                        "format = \"trackerdb\"")
    if b"\x00" in data:
        raise ListError("is a binary file, not a filter list (text, one rule a line)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ListError(f"is not UTF-8 text ({exc}); a filter list is text, one rule a line") from None
    start = text.lstrip()[:1]
    if start == "{" or (start == "[" and not text.lstrip()[:9].lower().startswith("[adblock")):
        raise ListError("looks like JSON, not a filter list; a TDS, Disconnect or TrackerDB JSON file takes "
                        "format = \"tds\", \"disconnect\" or \"trackerdb\"")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    title = path.name
    # the rules that are just a host, found in one pass (a list can hold a million): (host, options)
    candidates: list[tuple[str, str]] = _ABP_HOST_LINE.findall(text)
    network: list[str] = []
    excepted: set[str] = set()
    disabled: set[str] = set()
    for raw in _ABP_HOST_LINE.sub("", text).splitlines():
        line = raw.strip()
        if not line:
            continue
        first = line[0]
        if first == "!":
            if line[:8].lower() == "! title:":
                title = line[8:].strip() or title
            continue
        if first == "[" or ("#" in line and _ABP_COSMETIC.search(line)):
            continue
        if first == "@":
            found = _ABP_EXCEPTION_HOST.match(line)
            if found is not None:
                excepted.add(found.group(1).lower())
        elif "badfilter" in line:
            text_part, _, options = line.partition("$")
            disabled.add(f"{text_part}${_without_badfilter(options)}".rstrip("$").lower())
        network.append(line)
    match = mapper.match(title, "all")
    if match is None:
        return ListIndex()
    hosts = _host_rules(candidates, network, excepted, disabled)
    filters: tuple[UrlFilter, ...] = (AbpFilter(network, match),) if network else ()
    return ListIndex(dict.fromkeys(hosts, match), filters)


def _host_rules(candidates: list[tuple[str, str]], network: list[str], excepted: set[str],
                disabled: set[str]) -> list[str]:
    """The hosts of the rules that are just a host, whose options do not narrow what they block; the others
    join `network`. A host that an exception (`@@||host`) or a `$badfilter` touches stays with the filter
    engine too, which knows what those mean."""
    names = "\n".join(host for host, _ in candidates).lower().split("\n") if candidates else []
    disabled |= {f"||{host}^${_without_badfilter(options)}".rstrip("$")
                 for host, (_, options) in zip(names, candidates, strict=True) if "badfilter" in options.lower()}
    touched = {suffix for host in excepted for suffix in _suffixes(host)}
    hosts: list[str] = []
    for host, (_, options) in zip(names, candidates, strict=True):
        if ((options and not set(options.lower().split(",")) <= _ABP_BROAD_OPTIONS)
                or (disabled and f"||{host}^${options.lower()}".rstrip("$") in disabled)
                or (excepted and (host in touched or _under(host, excepted)))):
            network.append(f"||{host}^${options}".rstrip("$"))
        else:
            hosts.append(host)
    return hosts


def _under(host: str, domains: set[str]) -> bool:
    """Whether a parent domain of the host is one of `domains`."""
    dot = host.find(".")
    while dot >= 0:
        host = host[dot + 1:]
        if host in domains:
            return True
        dot = host.find(".")
    return False


def _without_badfilter(options: str) -> str:
    return ",".join(o for o in options.lower().split(",") if o != "badfilter")


def _suffixes(host: str) -> list[str]:
    """The host and each parent domain: a.b.c → a.b.c, b.c, c."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


class AbpFilter:
    """An ABP list's rules that are more than a host, in adblock-rust (without braveblock's bundled lists)."""

    def __init__(self, rules: list[str], match: Match) -> None:
        try:  # an optional dependency: wheels for CPython 3.11 only, and they carry EasyList copies we never use
            import braveblock
        except ImportError:
            raise ListError("its rules beyond bare hosts need the braveblock package (adblock-rust): install "
                            "consentproxy[abp], or keep only ||host^ rules in the list") from None
        self._engine = braveblock.Adblocker(rules=rules, include_easylist=False, include_easyprivacy=False)
        self._match = match

    def match(self, url: str, kind: Kind) -> Match | None:
        request_type = _REQUEST_TYPES.get(kind)
        if request_type is None:
            return None
        return self._match if self._engine.check_network_urls(url, _PAGE, request_type) else None
