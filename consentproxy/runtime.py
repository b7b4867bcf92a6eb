"""Everything derived from one configuration that requests need, built once.

A reload builds a new Runtime and swaps it in; requests in flight keep the
one they started with, so a reload never changes a request half-way.
"""

from __future__ import annotations

from dataclasses import dataclass

from consentproxy.config.loader import Problem
from consentproxy.config.model import Config
from consentproxy.config.secrets import SecretError, parse_consent_keys, read_secret
from consentproxy.proxy.forwarded import TrustedProxies
from consentproxy.proxy.sites import Site, SiteRouter


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    router: SiteRouter
    trusted: TrustedProxies
    admin_port: int | None

    @classmethod
    def build(cls, config: Config) -> Runtime:
        sites = [Site.build(site) for site in config.sites]
        admin = config.server.admin_listen
        return cls(
            config=config,
            router=SiteRouter(sites),
            trusted=TrustedProxies(config.server.trusted_proxies),
            admin_port=admin.port if admin else None,
        )


def check_secrets(config: Config) -> list[Problem]:
    """Resolve every configured secret now, so a bad reference fails at start, not at first use."""
    file = str(config.source) if config.source else "(command line)"
    problems: list[Problem] = []
    refs = {"consent_keys": config.secrets.consent_keys, "admin_token": config.secrets.admin_token,
            "export_key": config.secrets.export_key}
    for name, ref in refs.items():
        if ref is None:
            continue
        try:
            text = read_secret(ref)
            if name == "consent_keys":
                parse_consent_keys(text, ref)
        except SecretError as exc:
            problems.append(Problem(file, f"secrets.{name}", str(exc)))
    return problems
