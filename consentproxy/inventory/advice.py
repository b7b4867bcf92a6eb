"""What to write in the configuration to declare an inventory item: the exact TOML, for the log and the console.

A site's unknown first-party cookie is blocked until the site declares it
(`unknown_cookies = "block"`, the default): a login or cart cookie nobody
declared would otherwise break silently. The advice is a `[[sites.NAME.cookies]]`
table for a cookie and a `[[sites.NAME.services]]` table for a host, with the
category already known or the likeliest one, to be checked by whoever pastes it.
"""

from __future__ import annotations

import json
import re

from consentproxy.inventory.model import Sighting

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CHOICES = "necessary, preferences, statistics or marketing"


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (\\uXXXX included), ASCII only."""
    return json.dumps(value)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def lifetime_text(seconds: int | None) -> str:
    """A cookie's lifetime as the declaration's `lifetime` words it: "session", "30 days", "2 hours"."""
    if seconds is None:
        return "session"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{max(seconds, 0)} seconds"


def declaration_toml(sighting: Sighting) -> str:
    """The TOML that declares this item for its site, ready to paste into the configuration file."""
    site = _key(sighting.site)
    known = sighting.category not in ("", "unknown")
    if sighting.kind == "cookie":
        category = sighting.category if known else "necessary"
        lines = [
            f"[[sites.{site}.cookies]]",
            f"name = {toml_string(sighting.name)}",
            f"category = {toml_string(category)}  # {_CHOICES}; necessary only if the site needs it to work "
            "(login, cart, session)",
            'purpose = ""  # what it does, shown in the banner\'s cookie list',
        ]
        if "lifetime_seconds" in sighting.details or sighting.set_by == "server":
            lines.append(f"lifetime = {toml_string(lifetime_text(sighting.details.get('lifetime_seconds')))}")
        if sighting.service:
            lines.append(f"provider = {toml_string(sighting.service)}")
        return "\n".join(lines)
    category = sighting.category if known else "marketing"
    name = sighting.service if sighting.service and known else sighting.name
    return "\n".join([
        f"[[sites.{site}.services]]",
        f"name = {toml_string(name)}",
        f"category = {toml_string(category)}  # {_CHOICES}",
        f"hosts = [{toml_string(sighting.name)}]",
        f"# or, for a host the site needs and chose (its CDN, maps, payment): functional_hosts = "
        f"[{toml_string(sighting.name)}] in [sites.{site}]",
    ])
