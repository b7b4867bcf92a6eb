"""Turning reports into inventory sightings, classified with what the proxy knows of hosts and cookies.

A host: the site's services, the catalogue, the Open Cookie Database's hosts
and the operator's lists (the tracker matcher, which says which of them), then
the site's `functional_hosts` ("declared") and the built-in functional list
(CDNs, fonts, payment: "catalogue", necessary); anything else is unknown. A
cookie: the cookie classifier (declared, catalogue, Open Cookie Database,
unknown). The site's own hosts are no third party and make no sighting.
"""

from __future__ import annotations

from consentproxy.cookies.classify import CookieClassifier
from consentproxy.discovery.reports import Violation
from consentproxy.html.functional import ThirdParties
from consentproxy.html.trackers import Kind, TrackerMatcher
from consentproxy.inventory.model import Sighting, now_ms

#: the effective directive → the kind of element the matcher's rules are for
_KINDS: dict[str, Kind] = {"script-src-elem": "scripts", "script-src": "scripts", "script-src-attr": "scripts",
                           "worker-src": "scripts", "frame-src": "iframes", "child-src": "iframes",
                           "img-src": "pixels"}
_CACHE_LIMIT = 4096


class Classifier:
    """One site's classification of reported hosts and cookie names (cached: pages repeat them)."""

    def __init__(self, site: str, matcher: TrackerMatcher, parties: ThirdParties, cookies: CookieClassifier) -> None:
        self.site = site
        self.matcher = matcher
        self.parties = parties
        self.cookies = cookies
        self._hosts: dict[tuple[str, str], tuple[str, str, str]] = {}

    def own(self, host: str) -> bool:
        return self.parties.own(host)

    def host(self, violation: Violation, before: bool) -> Sighting | None:
        """The sighting of a reported host, or None when it is the site's own."""
        if self.parties.own(violation.host):
            return None
        kind = _KINDS.get(violation.directive, "hosts")
        key = (violation.url, kind)
        found = self._hosts.get(key)
        if found is None:
            found = self._classify(kind, violation.url)
            if len(self._hosts) >= _CACHE_LIMIT:
                self._hosts.clear()
            self._hosts[key] = found
        category, source, service = found
        now = now_ms()
        return Sighting(self.site, "host", violation.host, "page", category, source, service, count=1,
                        before_consent=int(before), first_seen_ms=now, last_seen_ms=now,
                        details={"directives": [violation.directive]})

    def _classify(self, kind: Kind, url: str) -> tuple[str, str, str]:
        found = self.matcher.source(kind, url)
        if found is None and kind != "hosts":
            found = self.matcher.source("hosts", url)
        if found is not None:
            match, source = found
            return match.category, source, match.service
        party = self.parties.party(url)
        if party.origin == "declared":
            return "necessary", "declared", party.label
        if party.origin == "functional":
            return "necessary", "catalogue", party.label
        return "unknown", "unknown", ""

    def cookie(self, name: str, before: bool) -> Sighting:
        """A cookie a script set (seen in document.cookie: present, so not blocked)."""
        classification = self.cookies.classify(name)
        now = now_ms()
        return Sighting(self.site, "cookie", name, "script", classification.category, classification.source,
                        classification.service, count=1, before_consent=int(before), first_seen_ms=now,
                        last_seen_ms=now)
