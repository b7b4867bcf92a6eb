"""Data minimisation for consent events: what little of the IP and user agent may be kept.

A consent record needs neither the full user agent (which fingerprints) nor the
IP address; by default neither is kept. The operator may keep a truncated IP or
a keyed hash of it (pseudonymous: still personal data, but not reversible by
brute force as a plain SHA-256 of an IPv4 address is), and the browser family
with its major version, which is enough to show which banner build was seen.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Literal

IpMode = Literal["none", "truncated", "keyed_hash"]
IP_MODES: tuple[str, ...] = ("none", "truncated", "keyed_hash")

IPV4_PREFIX = 24
IPV6_PREFIX = 48
MIN_KEY_BYTES = 16

# Most specific first: Edge, Opera and Samsung Internet also say "Chrome/", Chrome also says "Safari/".
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\b(?:Edg|EdgA|EdgiOS|Edge)/(\d+)")),
    ("Opera", re.compile(r"\b(?:OPR|OPT|OPiOS)/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/(\d+)")),
)
_SAFARI_VERSION = re.compile(r"\bVersion/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")
OTHER = "other"


def ua_family(user_agent: str | None) -> str:
    """`Chrome 131`, `Firefox 133`, `Safari 18` … or `other`; nothing else of the user agent survives."""
    if not user_agent:
        return OTHER
    text = user_agent[:512]
    for family, pattern in _FAMILIES:
        match = pattern.search(text)
        if match:
            return f"{family} {int(match.group(1))}"
    if "Android" not in text:  # the old Android browser also says Version/4.0 … Safari/
        match = _SAFARI_VERSION.search(text)
        if match:
            return f"Safari {int(match.group(1))}"
    return OTHER


def reduce_ip(ip: str | None, mode: IpMode = "none", key: bytes | None = None) -> str | None:
    """The IP as the operator chose to keep it: not at all, truncated (/24, /48), or keyed hash.

    `key` (keyed_hash only) should rotate, so hashes from different periods cannot
    be linked; the caller owns the rotation. An address that does not parse is
    not kept. An IPv4-mapped IPv6 address is treated as the IPv4 address.
    """
    if mode == "none" or ip is None:
        return None
    if mode not in IP_MODES:
        raise ValueError(f"unknown IP mode {mode!r}; use one of {', '.join(IP_MODES)}")
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if mode == "truncated":
        prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    if key is None or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"keyed_hash needs a key of at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, address.packed, hashlib.sha256).hexdigest()
