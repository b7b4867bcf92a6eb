"""Which category a cookie belongs to, and how we know.

Order (GUIDE §4): the site's own declarations (exact name, prefix, pattern,
and the cookies of the site's services), then our built-in service catalogue,
then the Open Cookie Database, then "unknown". Results are cached per name:
a site uses a few dozen names, each request only looks them up.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from consentproxy.config.model import ConsentConfig, ServiceConfig

Source = Literal["declared", "catalogue", "database", "unknown"]

# Open Cookie Database category → consent category (GUIDE §4).
OCD_CATEGORIES = {
    "Functional": "necessary", "Security": "necessary", "Necessary": "necessary",
    "Personalization": "preferences", "Analytics": "statistics", "Marketing": "marketing",
}
# Wildcard rows shorter than this ("_s", "SR", "CT", "tp") match far too much as prefixes.
MIN_WILDCARD_PREFIX = 4
_STRICTNESS = {"necessary": 0, "preferences": 1, "statistics": 2, "marketing": 3}
_CACHE_LIMIT = 10_000


def _strictness(category: str) -> int:
    """A site's own category ranks with marketing: a clash keeps it held."""
    return _STRICTNESS.get(category, 3)


@dataclass(frozen=True, slots=True)
class Classification:
    category: str  # a consent category, or "unknown"
    source: Source
    service: str = ""  # the declaring service or database platform, when known
    purpose: str = ""
    retention: str = ""  # as the Open Cookie Database words it ("2 years"), in English
    domain: str = ""  # where the Open Cookie Database says it is set ("youtube.com (3rd party)")


UNKNOWN = Classification("unknown", "unknown")


class _Table:
    """Exact names and prefixes (longest first) to a classification."""

    def __init__(self) -> None:
        self.exact: dict[str, Classification] = {}
        self.prefixes: list[tuple[str, Classification]] = []
        self.patterns: list[tuple[re.Pattern[str], Classification]] = []

    def add(self, spec: str, classification: Classification, prefer_strict: bool = False) -> None:
        """`name`, or `prefix*`; with `prefer_strict` a clash keeps the stricter category."""
        if spec.endswith("*"):
            self.prefixes.append((spec[:-1], classification))
            return
        current = self.exact.get(spec)
        if current is None or (prefer_strict and _strictness(classification.category) > _strictness(current.category)):
            self.exact[spec] = classification

    def finish(self) -> None:
        self.prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def lookup(self, name: str) -> Classification | None:
        found = self.exact.get(name)
        if found is not None:
            return found
        for prefix, classification in self.prefixes:
            if name.startswith(prefix):
                return classification
        for pattern, classification in self.patterns:
            if pattern.search(name):
                return classification
        return None


#: what a site that declares nothing looks up first (never added to)
_EMPTY = _Table()


def _services_table(services: tuple[ServiceConfig, ...], source: Source) -> _Table:
    table = _Table()
    for service in services:
        for spec in service.cookies:
            table.add(spec, Classification(service.category, source, service.name))
    table.finish()
    return table


@cache
def builtin_services() -> tuple[ServiceConfig, ...]:
    """The catalogue in `consentproxy/data/services.toml`."""
    text = resources.files("consentproxy.data").joinpath("services.toml").read_text("utf-8")
    return tuple(
        ServiceConfig(
            name=item["name"], category=item["category"], provider=item.get("provider", ""),
            privacy_url=item.get("privacy_url", ""), cookies=tuple(item.get("cookies", ())),
            scripts=tuple(item.get("scripts", ())), iframes=tuple(item.get("iframes", ())),
            pixels=tuple(item.get("pixels", ())), hosts=tuple(item.get("hosts", ())),
            inline=tuple(item.get("inline", ())), purpose=dict(item.get("purpose", {})),
        )
        for item in tomllib.loads(text)["service"]
    )


@cache
def _catalogue_table() -> _Table:
    return _services_table(builtin_services(), "catalogue")


@cache
def _database_table() -> _Table:
    """The bundled Open Cookie Database (Apache-2.0; see data/LICENSE-open-cookie-database)."""
    table = _Table()
    with resources.files("consentproxy.data").joinpath("open-cookie-database.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category = OCD_CATEGORIES.get(row["Category"])
            name = row["Cookie / Data Key name"].strip()
            if category is None or not name:
                continue
            classification = Classification(category, "database", row["Platform"], row["Description"][:300],
                                            row["Retention period"][:60], row["Domain"][:100])
            wildcard = row["Wildcard match"] == "1" and len(name) >= MIN_WILDCARD_PREFIX
            table.add(name + "*" if wildcard else name, classification, prefer_strict=True)
    table.finish()
    return table


class CookieClassifier:
    """Per-site classifier; `classify(name)` is a dict lookup after the first time."""

    def __init__(self, consent: ConsentConfig) -> None:
        services = _services_table(consent.services, "declared") if consent.services else _EMPTY
        if not consent.cookies:  # most sites declare nothing: they share the empty tables
            self._tables: tuple[_Table, ...] = (services, _catalogue_table(), _database_table())
            self._cache: dict[str, Classification] = {}
            return
        declared = _Table()
        for declaration in consent.cookies:
            classification = Classification(declaration.category, "declared", declaration.provider,
                                            declaration.purpose)
            if declaration.name:
                declared.add(declaration.name, classification)
            elif declaration.prefix:
                declared.add(declaration.prefix + "*", classification)
            else:
                declared.patterns.append((re.compile(declaration.pattern), classification))
        declared.finish()
        self._tables = (declared, services, _catalogue_table(), _database_table())
        self._cache = {}

    def classify(self, name: str) -> Classification:
        found = self._cache.get(name)
        if found is not None:
            return found
        found = UNKNOWN
        for table in self._tables:
            hit = table.lookup(name)
            if hit is not None:
                found = hit
                break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = found
        return found


def catalogued(name: str) -> Classification | None:
    """The catalogue service a cookie name belongs to, whoever classifies it for a site."""
    return _catalogue_table().lookup(name)


def reference(name: str) -> Classification | None:
    """What the Open Cookie Database says about a name (purpose, retention), whoever classifies it."""
    return _database_table().lookup(name)
