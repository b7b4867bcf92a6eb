"""Who the client really is, given the configured trusted proxies.

X-Forwarded-For is only believed when the connection comes from a trusted
proxy, and then walked from the right: the first address that is not a
trusted proxy is the client. Anything else a client writes there is ignored,
so a visitor cannot pose as another address (or another country).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from consentproxy.config.model import IPNetwork
from consentproxy.privacy.ip import reduce_ip

_CACHE_LIMIT = 4096


class TrustedProxies:
    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def is_trusted(self, address: str) -> bool:
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            trusted = False
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            trusted = any(ip in net for net in self.networks)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[address] = trusted
        return trusted

    def client_address(self, peer: str, forwarded_for: bytes | None) -> str:
        """The client's address: the peer, or from X-Forwarded-For behind trusted proxies."""
        if forwarded_for is None or not self.networks or not self.is_trusted(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(b",")):
            address = _clean(hop)
            if address is None:
                break
            client = address
            if not self.is_trusted(address):
                break
        return client


@functools.lru_cache(maxsize=4096)  # a visitor's page brings a dozen requests; ip_address() is the costly part
def _clean(hop: bytes) -> str | None:
    """One X-Forwarded-For entry as a canonical IP text, or None if it is not an address."""
    text = hop.strip().decode("latin-1")
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def truncated_chain(chain: str) -> str:
    """An X-Forwarded-For chain with every address cut to its network (IPv4 /24, IPv6 /48).

    For sites whose privacy statement promises anonymised visit data: their
    access logs then hold no full visitor address. Entries that are not
    addresses (`unknown`, obfuscated names) are left out.
    """
    kept = [reduced for entry in chain.split(",") if (reduced := reduce_ip(entry.strip(), "truncated"))]
    return ", ".join(kept)
