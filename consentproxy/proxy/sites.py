"""Choosing the site for a request from its Host header.

Exact host names win over wildcards (`*.example.nl`, longest suffix first),
and a site listing `*` takes every other host. A wildcard matches whole
labels only (`*.example.nl` takes `a.example.nl` and `a.b.example.nl`, never
`example.nl` or `badexample.nl`). A Host that matches nothing gets 421 from
the caller and the request goes nowhere; an invalid Host never gets here
(the protocol answers it with 400), and `route` gives None for it anyway.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from consentproxy.config.model import SiteConfig
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Step

_CACHE_LIMIT = 4096
#: a DNS host name as configured hosts are (loader's `_HOST_RE`), with the port split off: labels of
#: letters, digits, `_` and inner `-`, at most 63 bytes each, none empty; one trailing dot allowed
_HOST_NAME = re.compile(
    rb"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?"
)
_MAX_HOST_NAME = 254  # 253 and the trailing dot


@dataclass(slots=True)
class Site:
    """A configured site with everything the hot path needs precomputed."""

    config: SiteConfig
    name: str
    upstream_base: str
    upstream_ws_base: str
    upstream_authority: str
    fixed_host: str | None
    timeout: aiohttp.ClientTimeout
    #: this site's child of the upstream latency histogram (labels() takes a lock)
    latency: metrics.Observer
    steps: tuple[Step, ...] = ()
    #: the Matomo token the steps were built with (a reload reuses the site only while it is the same)
    matomo: str | None = field(default=None, repr=False)
    #: the steps with a response hook or a body filter, in order (the others would be no-op calls)
    response_steps: tuple[Step, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.response_steps = tuple(step for step in self.steps
                                    if type(step).on_response is not Step.on_response or step.filters_body)

    @classmethod
    def build(cls, config: SiteConfig, steps: tuple[Step, ...] = (), matomo: str | None = None) -> Site:
        parts = urlsplit(config.upstream)
        base_path = parts.path.rstrip("/")
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        fixed: str | None = None
        if config.upstream_host == "upstream":
            fixed = parts.netloc.rpartition("@")[2]
        elif config.upstream_host == "fixed":
            fixed = config.upstream_host_value
        return cls(
            config=config,
            name=config.name,
            upstream_base=f"{parts.scheme}://{parts.netloc}{base_path}",
            upstream_ws_base=f"{ws_scheme}://{parts.netloc}{base_path}",
            upstream_authority=parts.netloc,
            fixed_host=fixed,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
            ),
            steps=steps,
            matomo=matomo,
            latency=metrics.later_observer(metrics.UPSTREAM_LATENCY, config.name),
        )


def normalise_host(value: bytes) -> bytes | None:
    """The Host header in its one normal form, or None when it is no valid `uri-host [":" port]`.

    RFC 9110 §7.2 and RFC 3986 §3.2.2: a host name or an IP literal, an optional port of 1 to 65535.
    Stricter than RFC 3986's reg-name, whose sub-delims (`!$&'()*+,;=`) and percent-encodings no DNS
    name holds: what is left cannot smuggle a userinfo, path, query, fragment or space into links a site
    builds from its Host. The normal form is lower-case, without the trailing dot of a fully qualified
    name (`Example.NL.:0443` → `example.nl:443`; `[0:0::1]` → `[::1]`), so routing sees one spelling
    and the upstream gets the one it is configured for (virtual hosts are named without the dot).
    """
    text = value.strip(b" \t").lower()
    if text[:1] == b"[":
        end = text.find(b"]")
        if end < 0:
            return None
        literal, rest = text[1:end], text[end + 1 :]
        if not literal or literal[:1] == b"v" or b"%" in literal:
            return None  # IPvFuture, or a zone ID (RFC 6874): nothing another host could route
        try:
            address = ipaddress.IPv6Address(literal.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return None
        name = b"[" + address.compressed.encode("ascii") + b"]"
    else:
        name, colon, port = text.partition(b":")
        rest = colon + port
        if len(name) > _MAX_HOST_NAME or not _HOST_NAME.fullmatch(name):
            return None
        name = name.rstrip(b".")
    if not rest:
        return name
    port = rest[1:]
    if rest[:1] != b":" or not port.isdigit():  # isdigit: ASCII digits only, for bytes
        return None if port or rest != b":" else name  # an empty port is no port (RFC 3986 §6.2.3)
    number = int(port)
    if not 1 <= number <= 65535:
        return None
    return b"%s:%d" % (name, number)


def host_name(host_header: bytes) -> str:
    """`Example.NL:8080` → `example.nl`; `[::1]:80` → `::1`."""
    text = host_header.strip().decode("latin-1").lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    name, _, port = text.rpartition(":")
    if name and port.isdigit():
        text = name
    return text.rstrip(".")


class SiteRouter:
    def __init__(self, sites: Iterable[Site]) -> None:
        self.sites = tuple(sites)
        self._exact: dict[str, Site] = {}
        #: `*.example.nl` under "example.nl": a name's parent domains are looked up, the longest first
        self._wildcards: dict[str, Site] = {}
        self._default: Site | None = None
        for site in self.sites:
            for host in site.config.hosts:
                if host == "*":
                    self._default = site
                elif host.startswith("*."):
                    self._wildcards.setdefault(host[2:], site)
                else:
                    self._exact[host] = site
        self._cache: dict[bytes, Site | None] = {}

    def route(self, host_header: bytes) -> Site | None:
        """The site for a Host header; None for an invalid one, which the protocol refuses before this."""
        try:
            return self._cache[host_header]
        except KeyError:
            pass
        normal = normalise_host(host_header)
        site = self._lookup(host_name(normal)) if normal is not None else None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host_header] = site
        return site

    def _lookup(self, name: str) -> Site | None:
        """A few dict look-ups whatever the number of sites: the name, then its parent domains by label."""
        site = self._exact.get(name)
        if site is not None:
            return site
        wildcards = self._wildcards
        if wildcards:
            dot = name.find(".")
            while dot >= 0:
                name = name[dot + 1:]
                site = wildcards.get(name)
                if site is not None:
                    return site
                dot = name.find(".")
        return self._default
