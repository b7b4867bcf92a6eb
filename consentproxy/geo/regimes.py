"""Which consent regime applies to a visitor, by where they are.

- opt-in: nothing optional before a positive action. Always for the EEA, the
  UK and Switzerland (GDPR, UK GDPR, nFADP with the ePrivacy rules), and the
  default everywhere a site has not chosen otherwise, unknown locations
  included: the strictest rule is the safe one.
- opt-out: trackers run until the visitor objects ("Do not sell or share my
  personal information"); `Sec-GPC: 1` is such an objection (CCPA/CPRA and
  other US state laws). Only where a site configures it.
- notice-only: the visitor is informed, nothing is asked. Only where configured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from consentproxy.geo.lookup import GeoIP, Location

Regime = Literal["opt-in", "opt-out", "notice-only"]
REGIMES: tuple[Regime, ...] = ("opt-in", "opt-out", "notice-only")

#: EU member states, the other EEA countries, the UK and Switzerland: always opt-in
ALWAYS_OPT_IN = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
    "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO", "GB", "CH",
})


class RegimeMap:
    """A site's places (country `US` or subdivision `US-CA`) per regime; the most specific place wins."""

    def __init__(self, opt_out: Iterable[str] = (), notice_only: Iterable[str] = ()) -> None:
        self._places: dict[str, Regime] = {}
        for regime, places in (("opt-out", opt_out), ("notice-only", notice_only)):
            for place in places:
                if place.split("-", 1)[0] in ALWAYS_OPT_IN:
                    raise ValueError(f"{place} is in the EEA, the UK or Switzerland: consent there is always opt-in")
                self._places[place] = regime  # type: ignore[assignment]

    def regime(self, location: Location) -> Regime:
        if location.country is None or location.country in ALWAYS_OPT_IN:
            return "opt-in"
        subdivision = location.subdivision
        if subdivision is not None and subdivision in self._places:
            return self._places[subdivision]
        return self._places.get(location.country, "opt-in")


class SiteLocator:
    """Per site: the visitor's country and regime from their address (one cached lookup per address)."""

    def __init__(self, geoip: GeoIP, opt_out: Iterable[str] = (), notice_only: Iterable[str] = ()) -> None:
        self.geoip = geoip
        self.regimes = RegimeMap(opt_out, notice_only)

    def locate(self, client: str) -> tuple[Regime, str | None]:
        location = self.geoip.locate(client)
        return self.regimes.regime(location), location.country
