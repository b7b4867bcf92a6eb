"""GeoIP lookups against MaxMind's test databases, and the consent regime they select."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentproxy.geo.lookup import UNKNOWN, GeoError, GeoIP, Location
from consentproxy.geo.regimes import RegimeMap

GEOIP = Path(__file__).parent.parent / "config" / "geoip"


@pytest.fixture(scope="module", params=["GeoLite2-City-Test.mmdb", "GeoLite2-Country-Test.mmdb"])
def geoip(request: pytest.FixtureRequest) -> GeoIP:
    return GeoIP(GEOIP / request.param)


@pytest.mark.parametrize(("ip", "country"), [
    ("89.160.20.115", "SE"),
    ("216.160.83.58", "US"),
    ("2a02:e040::1", "NL"),
    ("::ffff:89.160.20.115", "SE"),  # IPv4-mapped, as a dual-stack socket reports it
    ("81.2.69.160", "GB"),
])
def test_known_addresses_give_their_country(geoip: GeoIP, ip: str, country: str) -> None:
    assert geoip.locate(ip).country == country
    assert geoip.locate(ip).country == country  # from the cache, the same


@pytest.mark.parametrize("ip", ["10.0.0.1", "127.0.0.1", "::1", "192.0.2.1", "8.8.8.8", "not an address", ""])
def test_private_malformed_and_unlisted_addresses_are_unknown(geoip: GeoIP, ip: str) -> None:
    assert geoip.locate(ip) == UNKNOWN


def test_a_city_database_also_gives_the_region() -> None:
    city = GeoIP(GEOIP / "GeoLite2-City-Test.mmdb")
    assert city.locate("216.160.83.58") == Location("US", "WA")
    assert city.locate("216.160.83.58").subdivision == "US-WA"


def test_a_missing_or_wrong_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GeoError, match=r"cannot open the GeoIP database .*missing\.mmdb"):
        GeoIP(tmp_path / "missing.mmdb")
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a maxmind database" * 100)
    with pytest.raises(GeoError, match="cannot open the GeoIP database"):
        GeoIP(broken)
    with pytest.raises(GeoError, match="Country or City database is needed"):
        GeoIP(Path(__file__).parent / "data" / "geoip" / "GeoIP2-Anonymous-IP-Test.mmdb")


def test_regimes_by_location(geoip: GeoIP) -> None:
    regimes = RegimeMap(opt_out=["US"], notice_only=["US-WA"])
    assert regimes.regime(geoip.locate("89.160.20.115")) == "opt-in"  # SE: EEA, always opt-in
    assert regimes.regime(geoip.locate("2a02:e040::1")) == "opt-in"  # NL
    assert regimes.regime(geoip.locate("81.2.69.160")) == "opt-in"  # GB
    us = geoip.locate("216.160.83.58")
    # The most specific place wins: WA is notice-only where the City database names the state.
    assert regimes.regime(us) == ("notice-only" if us.region == "WA" else "opt-out")
    assert regimes.regime(geoip.locate("10.0.0.1")) == "opt-in"  # unknown: the default
    assert RegimeMap().regime(us) == "opt-in"  # nothing configured: opt-in everywhere


def test_the_eea_cannot_be_configured_out_of_opt_in() -> None:
    with pytest.raises(ValueError, match="always opt-in"):
        RegimeMap(opt_out=["DE"])
    with pytest.raises(ValueError, match="always opt-in"):
        RegimeMap(notice_only=["GB-ENG"])
