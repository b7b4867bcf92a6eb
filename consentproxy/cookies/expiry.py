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
from collections.abc import Iterable

_EXPIRED = b"=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def domain_variants(host: str) -> list[str | None]:
    """None (host-only) plus the host and its parent domains with at least two labels."""
    variants: list[str | None] = [None]
    try:
        ipaddress.ip_address(host)
        return variants
    except ValueError:
        pass
    labels = host.split(".")
    variants += [".".join(labels[i:]) for i in range(len(labels) - 1)]
    return variants


def expiring_set_cookies(name: bytes, host: str, paths: Iterable[str], secure: bool) -> list[bytes]:
    """The Set-Cookie values that delete `name` in every domain/path variant."""
    text = name.decode("latin-1")
    if text.startswith("__Host-"):  # only ever host-only, Path=/, Secure
        return [name + _EXPIRED + b"; Path=/; Secure"]
    suffix = b"; Secure" if secure or text.startswith("__Secure-") else b""
    out = []
    for path in dict.fromkeys(["/", *paths]):
        for domain in domain_variants(host):
            header = name + _EXPIRED + b"; Path=" + path.encode("latin-1")
            if domain is not None:
                header += b"; Domain=" + domain.encode("latin-1")
            out.append(header + suffix)
    return out
