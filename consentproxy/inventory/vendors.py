"""Which catalogued or listed vendors each site was really seen using: what its notice must name.

Learnt on the event loop, in memory (a dict look-up per blocked element),
from the elements the page rewriter held and matched to a service, and from
the stored inventory at start and after each flush (its host sightings with
a service; cookies classified to a vendor are read from the cookie side).
A vendor learnt here for the first time is buffered once as a host sighting
(a "vendor" one when only an inline script showed it), so every worker and
instance sharing the store comes to know it.
"""

from __future__ import annotations

from collections.abc import Iterable

from consentproxy.html.functional import UNKNOWN_SERVICE
from consentproxy.inventory.model import InventoryBuffer, Sighting, now_ms

#: sources of a classification that name a vendor the visitor must be told about
VENDOR_SOURCES = frozenset({"catalogue", "database", "operator", "declared"})
_NOT_VENDORS = ("unclassified", "")


def is_vendor(service: str) -> bool:
    """A service the matcher named: not an unknown host held by policy, not an oversize element."""
    return service not in _NOT_VENDORS and not service.startswith(UNKNOWN_SERVICE)


class VendorBook:
    """site → vendor name → category, for every vendor seen; `version` grows with each new one."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, str]] = {}
        self.version = 0

    def seen(self, site: str) -> dict[str, str]:
        return self._seen.get(site, {})

    def learn(self, site: str, service: str, category: str) -> bool:
        """Note a vendor seen on a site; True the first time (the caller then buffers it for the store)."""
        known = self._seen.setdefault(site, {})
        if service in known or not is_vendor(service):
            return False
        known[service] = category
        self.version += 1
        return True

    def load(self, sightings: Iterable[Sighting]) -> None:
        """Learn the vendors of the stored inventory's host sightings (at start, after each flush)."""
        for sighting in sightings:
            if sighting.kind != "cookie" and sighting.service and sighting.source in VENDOR_SOURCES:
                self.learn(sighting.site, sighting.service, sighting.category)

    def element(self, site: str, service: str, category: str, host: str, kind: str, source: str,
                buffer: InventoryBuffer) -> None:
        """An element of `service` the rewriter held: learnt, and buffered for the store the first time."""
        if self.learn(site, service, category):
            moment = now_ms()
            # an inline script matched by its content has no host: the vendor itself is the item then
            buffer.add(Sighting(site, "host" if host else "vendor", host or service, "page", category, source,
                                service, count=1, blocked=1, first_seen_ms=moment, last_seen_ms=moment,
                                details={"elements": [kind]}))
