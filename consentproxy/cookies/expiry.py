"""Set-Cookie headers that delete a cookie in the browser.

A browser matches a cookie by name, domain and path; the proxy cannot see
which domain and path a cookie was set with (JavaScript trackers set theirs
on the parent domain), so it expires every plausible variant: host-only, the
host itself and each parent domain (`www.shop.nl` → `shop.nl`; browsers
ignore public suffixes such as `.nl`), for "/" and the paths seen in the
site's own Set-Cookie headers.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

_EXPIRED = b"=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


@lru_cache(maxsize=1024)
def domain_variants(host: str) -> tuple[str | None, ...]:
    """None (host-only) plus the host and its parent domains with at least two labels."""
    try:
        ipaddress.ip_address(host)
        return (None,)
    except ValueError:
        pass
    labels = host.split(".")
    return (None, *(".".join(labels[i:]) for i in range(len(labels) - 1)))


@lru_cache(maxsize=4096)
def expiring_set_cookies(name: bytes, host: str, paths: frozenset[str], secure: bool) -> tuple[bytes, ...]:
    """The Set-Cookie values that delete `name` in every domain/path variant (cached: they never vary)."""
    text = name.decode("latin-1")
    if text.startswith("__Host-"):  # only ever host-only, Path=/, Secure
        return (name + _EXPIRED + b"; Path=/; Secure",)
    suffix = b"; Secure" if secure or text.startswith("__Secure-") else b""
    out = []
    for path in dict.fromkeys(["/", *sorted(paths)]):
        for domain in domain_variants(host):
            header = name + _EXPIRED + b"; Path=" + path.encode("latin-1")
            if domain is not None:
                header += b"; Domain=" + domain.encode("latin-1")
            out.append(header + suffix)
    return tuple(out)
