"""Country and region of an IP address from a MaxMind database (GeoLite2/GeoIP2 Country or City).

Only the coarse location is ever read, so the raw address need not travel
any further. Lookups are cached: a visitor sends many requests from one
address. A database that cannot be opened is an error at start, never a
silent "unknown" for every visitor.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

_CACHE_LIMIT = 65_536


class GeoError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Location:
    country: str | None  # ISO 3166-1 alpha-2, e.g. "NL"
    region: str | None  # ISO 3166-2 subdivision code without the country, e.g. "CA" (City databases only)

    @property
    def subdivision(self) -> str | None:
        """`US-CA`: how regimes name a state or province."""
        return f"{self.country}-{self.region}" if self.country and self.region else None


UNKNOWN = Location(None, None)


class GeoIP:
    def __init__(self, path: Path) -> None:
        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoError(f"cannot open the GeoIP database {path}: {exc}") from None
        kind = self._reader.metadata().database_type
        if "Country" not in kind and "City" not in kind:
            self._reader.close()
            raise GeoError(f"{path} is a {kind} database; a Country or City database is needed")
        self.path = path
        self.database_type = kind
        self._cache: dict[str, Location] = {}

    def locate(self, ip: str) -> Location:
        """The location of an address; UNKNOWN for private, malformed or unlisted ones."""
        found = self._cache.get(ip)
        if found is not None:
            return found
        found = self._lookup(ip)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[ip] = found
        return found

    def _lookup(self, ip: str) -> Location:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return UNKNOWN
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return UNKNOWN
        record: Any = self._reader.get(address)
        if not isinstance(record, dict):
            return UNKNOWN
        country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        subdivisions = record.get("subdivisions") or []
        region = subdivisions[0].get("iso_code") if subdivisions else None
        return Location(country if isinstance(country, str) else None, region if isinstance(region, str) else None)

    def close(self) -> None:
        self._reader.close()
