"""One hit being anonymised: the decisions every backend shares, made once and the same way.

The backend modules only know their wire format; what an address becomes,
how an id is hashed, how a URL or a user agent is cleaned, is decided here.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, date, datetime
from itertools import chain
from typing import Any

from consentproxy.analytics.keys import keyed, pseudonym_address
from consentproxy.analytics.model import Context, Hit, Policy, normalise_key
from consentproxy.analytics.scrub import REDACTED, Address, Scrubber, parse_address
from consentproxy.analytics.urls import UrlCleaner, is_absolute_url, remembering_cleaner
from consentproxy.analytics.useragent import generalise, primary_language

#: what GA4 is told instead of an address: it counts visitors by client id and needs none
NEUTRAL_IPV4 = "0.0.0.0"
_PREFIXES = {"v4/24": 24, "v4/16": 16, "v6/32": 32, "v6/48": 48}


@functools.lru_cache(maxsize=8192)
def _truncate(address: Address, prefix: int) -> str | None:
    bits = address.max_prefixlen
    network = int(address) >> (bits - prefix) << (bits - prefix)
    if network == int(address):
        return None
    return str(ipaddress.IPv4Address(network) if bits == 32 else ipaddress.IPv6Address(network))


@functools.lru_cache(maxsize=8)
def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class Work:
    """The hit, the site's policy and the visitor's context, with the helpers every backend uses."""

    def __init__(self, hit: Hit, policy: Policy, context: Context) -> None:
        self.hit = hit
        self.policy = policy
        self.context = context
        self.exempt = context.mode == "exempt"
        self.client: Address | None = parse_address(hit.client_ip)
        self.scrubber = Scrubber(self.client)
        # Most hits hold neither an "@" nor the visitor's address: one look at the whole input spares
        # the per-value search (URLs are still cleaned as URLs, and the last check still runs). A JSON
        # "\u" escape can spell either ("jane\u0040example.com"), so a body with one is read value by value.
        body = hit.body.decode("utf-8", "replace")
        raw = "\n".join([*chain.from_iterable(hit.query), body])
        self.input_dirty = "\\u" in body or self.scrubber.is_dirty(raw)
        if self.input_dirty:
            self.urls = UrlCleaner(self.scrubber, exempt=self.exempt, marketing=context.marketing,
                                   query_allow=policy.query_allow, referrer=policy.referrer,
                                   own_hosts=policy.own_hosts)
        else:  # nothing of this visitor's to find: the URLs clean as anyone's would
            self.urls = remembering_cleaner(exempt=self.exempt, marketing=context.marketing,
                                            query_allow=policy.query_allow, referrer=policy.referrer,
                                            own_hosts=policy.own_hosts)

    # --- the address -------------------------------------------------------------------------------

    def reduced_address(self) -> str | None:
        """The truncated address with consent and a truncating policy; None otherwise.

        An address whose host part is already zero would come out unchanged, so
        it is treated as dropped: the visitor's own address never leaves.
        """
        if self.exempt or self.client is None:
            return None
        mode = self.policy.ipv4 if self.client.version == 4 else self.policy.ipv6
        if mode == "drop":
            return None
        return _truncate(self.client, _PREFIXES[mode])

    def stand_in_address(self) -> str | None:
        """For backends that count visitors by address: the reduced address, else today's pseudonym."""
        reduced = self.reduced_address()
        if reduced is not None:
            return reduced
        if self.client is None:
            return None
        return pseudonym_address(self.context.day_key, self.client)

    def country(self) -> str | None:
        """The GeoIP country, where the mode allows one (exempt: coarse location computed here is fine)."""
        location = self.context.location
        if location is None or location.country is None:
            return None
        if self.exempt and not self.policy.country_when_exempt:
            return None
        return location.country

    # --- identifiers ---------------------------------------------------------------------------------

    def digest(self, kind: str, value: str) -> bytes:
        return keyed(self.context.day_key, kind, value)

    def day_start(self) -> int:
        """Unix time of the hit's UTC midnight: what a minted GA client id may tell about its age."""
        received = self.hit.received
        received = received.astimezone(UTC) if received.tzinfo else received.replace(tzinfo=UTC)
        return _midnight(received.date())

    # --- text ----------------------------------------------------------------------------------------

    def text(self, value: str) -> str | None:
        """A free-text value, cleaned; a URL is cleaned as a URL. None when nothing is left."""
        if value[:1] in ("h", "H") and is_absolute_url(value):
            return self.urls.link(value)
        if not self.input_dirty:
            return value
        cleaned = self.scrubber.text(value)
        if cleaned is value:
            return value
        return None if cleaned.strip() in ("", REDACTED) and value.strip() else cleaned

    def json_value(self, value: Any) -> Any:
        """A JSON value with every string cleaned, recursively; None for what must go."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str) or self.scrubber.is_dirty(key):
                    continue
                cleaned = self.json_value(item)
                if cleaned is None and item is not None:
                    continue
                if cleaned in ({}, []) and item:  # emptied by cleaning: nothing meaningful left
                    continue
                out[key] = cleaned
            return out
        if isinstance(value, list):  # positions matter (Matomo items are [sku, name, category, price, qty])
            return [self._list_item(item) for item in value]
        return value

    def _list_item(self, item: Any) -> Any:
        cleaned = self.json_value(item)
        return "" if cleaned is None and isinstance(item, str) else cleaned

    def properties(self, value: Any) -> dict[str, Any] | None:
        """Custom event properties (Plausible props, Umami data): without consent only allow-listed names;
        identifier keys dropped at any depth and every value cleaned. None when nothing is left."""
        if not isinstance(value, dict):
            return None
        if self.exempt:
            value = {k: v for k, v in value.items() if k in self.policy.property_allow}
        cleaned = self.json_value(self.without_id_keys(value))
        return cleaned or None

    def without_id_keys(self, value: Any) -> Any:
        """A JSON value with every key named like an identifier removed, at any depth."""
        if isinstance(value, dict):
            return {k: self.without_id_keys(v) for k, v in value.items()
                    if not (isinstance(k, str) and normalise_key(k) in self.policy.id_keys)}
        if isinstance(value, list):
            return [self.without_id_keys(v) for v in value]
        return value

    # --- headers -------------------------------------------------------------------------------------

    def user_agent(self) -> str | None:
        """With consent the browser's own user agent (cleaned); without, the generalised one."""
        original = self.hit.header("user-agent")
        if self.exempt:
            return generalise(original)
        return (self.scrubber.text(original) or None) if original else None

    def language(self) -> str | None:
        header = self.hit.header("accept-language")
        if self.exempt:
            return primary_language(header)
        return self.scrubber.text(header) if header else None

    def base_headers(self, content_type: str | None) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        agent = self.user_agent()
        if agent:
            headers.append(("User-Agent", agent))
        if content_type:
            headers.append(("Content-Type", content_type))
        return headers
