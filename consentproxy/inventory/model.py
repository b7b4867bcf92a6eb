"""What the inventory counts, and the per-process buffer that collects it between flushes to the store.

Every source of sightings (Set-Cookie on the hot path, CSP reports and the
banner's cookie-name reports at `/_consent/report`) adds to one
`InventoryBuffer` in memory — a dict update, no I/O — and the application
merges what was buffered into the consent store now and then, so every
worker and every instance behind a balancer shares one picture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from consentproxy.inventory.alerts import Alerts

#: a vendor item: a catalogued service seen only in an inline script (no host to name)
Kind = Literal["cookie", "host", "vendor"]
#: who put the item on the page: a Set-Cookie header, a script (document.cookie), or the page (a host it loaded)
SetBy = Literal["server", "script", "page"]
#: how an item was classified, most trusted last: what the report shows first is what needs a look
SOURCES = ("unknown", "database", "operator", "catalogue", "declared")
#: details that merge as the union of both sides: a host's CSP directives, every path a cookie was set with
UNION_DETAILS = ("directives", "paths")


def _process_alerts() -> Alerts:
    from consentproxy.inventory.alerts import ALERTS  # it imports this module

    return ALERTS


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Sighting:
    """One inventory item of one site, with counts since the last flush (or in total, read from the store).

    `details` holds what only one kind has: for a cookie `domain`, `path`,
    `lifetime_seconds` (None: a session cookie), `httponly`, `secure`,
    `samesite`, `third_party`, `paths` (every path it was set with); for a host the CSP `directives` it was seen
    under ("script-src", "img-src", …). Never a cookie value, never an
    address.
    """

    site: str
    kind: Kind
    name: str  # a cookie name, or a host name in lower case
    set_by: SetBy
    category: str
    source: str  # one of SOURCES
    service: str = ""
    count: int = 0
    before_consent: int = 0  # of `count`, seen while the visitor had not decided yet
    blocked: int = 0  # of `count`, removed or held by the proxy
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str, str, str]:
        return self.site, self.kind, self.name, self.set_by

    def merge(self, other: Sighting) -> None:
        """Add `other` (same key) into this one: counts add, first/last seen widen, the newer wins the rest."""
        self.count += other.count
        self.before_consent += other.before_consent
        self.blocked += other.blocked
        unions = {name: sorted(set(self.details.get(name, ())) | set(other.details.get(name, ())))
                  for name in UNION_DETAILS}
        if other.last_seen_ms >= self.last_seen_ms:
            self.category, self.source, self.service = other.category, other.source, other.service
            self.details = {**self.details, **other.details}
        self.details.update((name, values) for name, values in unions.items() if values)
        self.first_seen_ms = min(self.first_seen_ms, other.first_seen_ms) if self.first_seen_ms else other.first_seen_ms
        self.last_seen_ms = max(self.last_seen_ms, other.last_seen_ms)


class InventoryBuffer:
    """Sightings since the last flush, merged by key. Used on the event loop's thread only."""

    def __init__(self, alerts: Alerts | None = None) -> None:
        self._pending: dict[tuple[str, str, str, str], Sighting] = {}
        self._alerts = alerts if alerts is not None else _process_alerts()

    def add(self, sighting: Sighting) -> None:
        """Buffer a sighting; one that needs a look (unknown and blocked, before consent) is logged and counted."""
        self._alerts.check(sighting)
        old = self._pending.get(sighting.key())
        if old is None:
            self._pending[sighting.key()] = sighting
        else:
            old.merge(sighting)

    def take(self) -> list[Sighting]:
        """Everything buffered, emptying the buffer (hand the list to a thread that writes the store)."""
        pending, self._pending = self._pending, {}
        return list(pending.values())

    def __len__(self) -> int:
        return len(self._pending)
