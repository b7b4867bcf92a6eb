#!/usr/bin/env python3
"""consentproxy with another service catalogue in place of the bundled one: a benchmark's baseline.

    python load_tests/catalogue_proxy.py CATALOGUE.toml serve -c consentproxy.toml

Every site's tracker matcher gets the site's services, then CATALOGUE.toml's
(a services.toml of another revision, e.g. `git show REV:consentproxy/data/services.toml`),
and no Open Cookie Database host rules (`use_catalogue=False`); the operator's
lists, if configured, still come last. Everything else is the installed
consentproxy, unchanged.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from consentproxy import runtime
from consentproxy.config.model import ServiceConfig
from consentproxy.html.trackers import ListIndex, TrackerMatcher


def catalogue(text: str) -> tuple[ServiceConfig, ...]:
    """A services.toml's `[[service]]` tables, read as consentproxy reads its own."""
    return tuple(
        ServiceConfig(name=item["name"], category=item["category"], provider=item.get("provider", ""),
                      privacy_url=item.get("privacy_url", ""), cookies=tuple(item.get("cookies", ())),
                      scripts=tuple(item.get("scripts", ())), iframes=tuple(item.get("iframes", ())),
                      pixels=tuple(item.get("pixels", ())), hosts=tuple(item.get("hosts", ())),
                      inline=tuple(item.get("inline", ())), purpose=dict(item.get("purpose", {})))
        for item in tomllib.loads(text)["service"])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    services = catalogue(Path(argv[0]).read_text(encoding="utf-8"))

    def matcher(site_services: tuple[ServiceConfig, ...], lists: ListIndex | None = None,
                **_: Any) -> TrackerMatcher:
        return TrackerMatcher(site_services + services, use_catalogue=False, lists=lists)

    runtime.TrackerMatcher = matcher  # type: ignore[misc,assignment]
    from consentproxy.cli import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
