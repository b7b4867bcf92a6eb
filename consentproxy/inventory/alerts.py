"""Telling the operator the day an inventory item needs a look: one log line per site and name per hour, and
a metric for every sighting.

An item needs a look when it is unknown and the proxy blocked it (a site's own
login cookie nobody declared breaks silently otherwise), or when it was seen
before the visitor decided and was not blocked (a tracker that got through:
what the consent is about). Necessary items before consent are expected.
Never a value: the line names the site, the kind and the name, and for an
item to declare the TOML that declares it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consentproxy.inventory.advice import declaration_toml
from consentproxy.inventory.model import Sighting
from consentproxy.observability import metrics

logger = logging.getLogger("consentproxy.inventory")

INTERVAL = 3600.0
_LIMIT = 10_000


def reason(sighting: Sighting) -> str | None:
    """"unknown_blocked", "before_consent", or None when the item needs no look."""
    if sighting.source == "unknown" and sighting.blocked:
        return "unknown_blocked"
    if sighting.before_consent and sighting.blocked < sighting.count and sighting.category != "necessary":
        return "before_consent"
    return None


def _indent(toml: str) -> str:
    return "\n    " + toml.replace("\n", "\n    ")


class Alerts:
    """The line and metric for items that need a look; the line at most once per `interval` per site and name."""

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}

    def check(self, sighting: Sighting) -> None:
        why = reason(sighting)
        if why is None:
            return
        amount = sighting.blocked if why == "unknown_blocked" else sighting.before_consent - sighting.blocked
        metrics.inc(metrics.INVENTORY_ALERTS, sighting.site, sighting.kind, why, amount=max(amount, 1))
        key = (sighting.site, sighting.kind, sighting.name)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return
        if len(self._last) >= _LIMIT:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= _LIMIT:
                self._last.clear()
        self._last[key] = now
        self._log(sighting, why)

    @staticmethod
    def _log(s: Sighting, why: str) -> None:
        toml = _indent(declaration_toml(s))
        if s.kind == "cookie" and s.set_by == "server" and why == "unknown_blocked" \
                and not s.details.get("third_party"):
            logger.warning("site %s: the site's own cookie %r is unknown and blocked (unknown_cookies = \"block\"), "
                           "before and after consent; if the site needs it (a login, cart or session cookie), "
                           "declare it:%s", s.site, s.name, toml)
            return
        what = "cookie" if s.kind == "cookie" else "third-party host"
        how = {"server": "set by the site", "script": "set by a script", "page": "loaded by a page"}[s.set_by]
        known = "unknown" if s.source == "unknown" else f"{s.category}, {s.source}"
        if why == "unknown_blocked":
            logger.warning("site %s: %s %r (%s) is unknown and blocked; declare it if the site needs it:%s",
                           s.site, what, s.name, how, toml)
        else:
            logger.warning("site %s: %s %r (%s; %s) was seen before the visitor's consent; remove it from the "
                           "pages before consent, or declare it:%s", s.site, what, s.name, how, known, toml)


#: the process's alerts, shared by every buffer (one line per hour per site and name, whatever reloads)
ALERTS = Alerts()
