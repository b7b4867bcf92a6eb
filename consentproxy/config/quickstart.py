"""A configuration built from command-line flags, for `serve --upstream`.

It fronts one site for any Host and keeps generated keys in the data
directory, so a first run needs no file at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from consentproxy.config.loader import parse_listen, parse_network, parse_upstream
from consentproxy.config.model import Config, SecretsConfig, ServerConfig, SiteConfig
from consentproxy.config.secrets import generate_keys


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/consentproxy`, else `~/.local/share/consentproxy`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "consentproxy"


def quickstart_config(
    upstream: str,
    listen: list[str],
    data_dir: Path,
    admin_listen: str | None = None,
    workers: int = 1,
    trusted_proxies: tuple[str, ...] = (),
    access_log: bool = False,
) -> Config:
    """Raises ValueError with a readable reason for a bad flag."""
    data_dir = data_dir.expanduser().resolve()
    keys = generate_keys(data_dir / "secrets")
    server = ServerConfig(
        listen=tuple(parse_listen(item) for item in listen),
        admin_listen=parse_listen(admin_listen) if admin_listen else None,
        workers=workers,
        trusted_proxies=tuple(parse_network(item) for item in trusted_proxies),
        data_dir=data_dir,
        access_log=access_log,
    )
    site = SiteConfig(name="default", hosts=("*",), upstream=parse_upstream(upstream))
    secrets = SecretsConfig(**{name: f"file:{path}" for name, path in keys.items()})
    return Config(server=server, sites=(site,), secrets=secrets)
