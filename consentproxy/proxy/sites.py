"""Choosing the site for a request from its Host header.

Exact host names win over wildcards (`*.example.nl`, longest suffix first),
and a site listing `*` takes every other host. A Host that matches nothing
gets 421 from the caller and the request goes nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from consentproxy.config.model import SiteConfig
from consentproxy.observability import metrics
from consentproxy.proxy.pipeline import Step

_CACHE_LIMIT = 4096


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
    #: the steps with a response hook or a body filter, in order (the others would be no-op calls)
    response_steps: tuple[Step, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.response_steps = tuple(step for step in self.steps
                                    if type(step).on_response is not Step.on_response or step.filters_body)

    @classmethod
    def build(cls, config: SiteConfig, steps: tuple[Step, ...] = ()) -> Site:
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
            latency=metrics.observer(metrics.UPSTREAM_LATENCY, config.name),
        )


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
        self._suffixes: list[tuple[str, Site]] = []
        self._default: Site | None = None
        for site in self.sites:
            for host in site.config.hosts:
                if host == "*":
                    self._default = site
                elif host.startswith("*."):
                    self._suffixes.append((host[1:], site))
                else:
                    self._exact[host] = site
        self._suffixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._cache: dict[bytes, Site | None] = {}

    def route(self, host_header: bytes) -> Site | None:
        try:
            return self._cache[host_header]
        except KeyError:
            pass
        site = self._lookup(host_name(host_header))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host_header] = site
        return site

    def _lookup(self, name: str) -> Site | None:
        site = self._exact.get(name)
        if site is not None:
            return site
        for suffix, candidate in self._suffixes:
            if name.endswith(suffix):
                return candidate
        return self._default
