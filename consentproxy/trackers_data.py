"""Host rules from the bundled Open Cookie Database: the domains of its Marketing and Analytics rows.

The database (Apache-2.0, `consentproxy/data/open-cookie-database.csv`) names, for many cookies, the
domain that sets them. For the vendors that our catalogue (`services.toml`) does not know yet, those
domains are usable as host rules. The column is free text, so only real host names are kept: no
empty cells, wildcards or placeholders ("ads-[account].adhese.com"), no descriptions, and no domains of
platforms whose own site or content is what a page embeds (a rule for "shopify.com" would block every
Shopify shop's own files).
"""

from __future__ import annotations

import csv
import re
from functools import cache
from importlib import resources

from consentproxy.cookies.classify import OCD_CATEGORIES, builtin_services

_HOST_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
#: the Open Cookie Database marks cookies set by a third party's domain so
_THIRD_PARTY = re.compile(r"\(3rd party\)", re.IGNORECASE)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"))
#: domains that serve a platform's own pages, content, logins or shop files as well as its tracking:
#: as host rules they would block far more than a tracker (these belong in the catalogue, with paths)
PLATFORM_DOMAINS = frozenset({
    "google.com", "developers.google.com", "news.google.com", "gstatic.com", "microsoft.com", "bing.com",
    "facebook.com", "instagram.com", "linkedin.com", "twitter.com", "t.co", "pinterest.com", "reddit.com",
    "tiktok.com", "snapchat.com", "youtube.com", "vimeo.com", "yahoo.com", "github.com", "wix.com",
    "shopify.com", "salesforce.com", "hubspot.com", "hotjar.com", "trustpilot.com", "typeform.com",
    "onetrust.com", "issuu.com", "indeed.com", "funda.nl", "mercadolibre.com", "wikimedia.org", "bit.ly",
    "disqus.com", "amplitude.com", "teads.com", "gigya.com", "yandex.ru", "live.streamtheworld.com",
})
#: cells that look like host names but are wrong: "207.net" is Adobe's "2o7.net" typed with a zero
_MISTYPED = frozenset({"207.net"})


def _hosts_in(cell: str) -> list[str]:
    """The host names in one `Domain` cell: ".example.com", "example.com (3rd party)", "a.com or b.net"."""
    text = _THIRD_PARTY.sub(" ", cell.translate(_INVISIBLE)).lower()
    hosts = []
    for part in re.split(r"\s+or\s+|[\s,;]+", text):
        host = part.strip().strip(".")
        if _HOST_RE.match(host):
            hosts.append(host)
    return hosts


def _covered(host: str, known: frozenset[str]) -> bool:
    """Whether the host or one of its parent domains is a catalogue host."""
    labels = host.split(".")
    return any(".".join(labels[i:]) in known for i in range(len(labels) - 1))


@cache
def open_cookie_database_hosts(catalogue_wins: bool = True) -> tuple[tuple[str, str, str], ...]:
    """`(host, platform, category)` for each domain of the Open Cookie Database's Marketing and Analytics rows.

    `category` is a consent category ("marketing" or "statistics"); a host filed under both keeps
    "marketing", and the platform of its first row. With `catalogue_wins` (the default), hosts that the
    catalogue already covers (the host or a parent domain is a catalogue host) are left out, so the
    catalogue's service and category apply to them. Sorted by host.
    """
    services = builtin_services() if catalogue_wins else ()
    known = frozenset(host for service in services for host in service.hosts)
    found: dict[str, tuple[str, str]] = {}
    with resources.files("consentproxy.data").joinpath("open-cookie-database.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category = OCD_CATEGORIES.get(row["Category"])
            if category not in ("statistics", "marketing"):
                continue
            for host in _hosts_in(row["Domain"]):
                if host in PLATFORM_DOMAINS or host in _MISTYPED or _covered(host, known):
                    continue
                platform, current = found.get(host, (row["Platform"].strip(), category))
                found[host] = (platform, "marketing" if "marketing" in (current, category) else category)
    return tuple((host, platform, category) for host, (platform, category) in sorted(found.items()))
