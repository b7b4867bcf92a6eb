"""IP address reduction: how much of a client address may travel or be kept.

One home for three users: the proxy truncates the X-Forwarded-For chain it sends upstream, and the
consent records keep an address not at all, truncated, or as a keyed hash. Truncation goes to /24
(IPv4) and /48 (IPv6); a keyed hash is pseudonymous (still personal data), but not reversible by brute
force as a plain SHA-256 of an IPv4 address is.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Literal

IpMode = Literal["none", "truncated", "keyed_hash"]
IP_MODES: tuple[str, ...] = ("none", "truncated", "keyed_hash")

IPV4_PREFIX = 24
IPV6_PREFIX = 48
MIN_KEY_BYTES = 16


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
