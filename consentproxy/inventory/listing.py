"""The stored inventory as people read it: JSON items, filters and a text table (CLI and admin API share them)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from consentproxy.inventory.model import Sighting
from consentproxy.records.model import from_ms, iso_ms, to_ms


def item(sighting: Sighting) -> dict[str, Any]:
    """One item as JSON: the fields, times in ISO 8601 (null when never seen), and the details flattened
    (a cookie's domain, path, paths, lifetime_seconds, httponly, secure, samesite; a host's directives)."""
    return {
        **sighting.details,
        "site": sighting.site, "kind": sighting.kind, "name": sighting.name, "set_by": sighting.set_by,
        "category": sighting.category, "source": sighting.source, "service": sighting.service,
        "count": sighting.count, "before_consent": sighting.before_consent, "blocked": sighting.blocked,
        "first_seen": iso_ms(from_ms(sighting.first_seen_ms)) if sighting.first_seen_ms else None,
        "last_seen": iso_ms(from_ms(sighting.last_seen_ms)) if sighting.last_seen_ms else None,
    }


_FIELDS = ("site", "kind", "name", "set_by", "category", "source", "service", "count", "before_consent", "blocked")


def from_item(data: dict[str, Any]) -> Sighting:
    """The sighting an `item` shows (what a reader of the admin API, such as the console, works with)."""
    def ms(text: Any) -> int:
        return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00"))) if isinstance(text, str) else 0

    details = {k: v for k, v in data.items() if k not in (*_FIELDS, "first_seen", "last_seen")}
    return Sighting(site=data["site"], kind=data["kind"], name=data["name"], set_by=data["set_by"],
                    category=data["category"], source=data["source"], service=data["service"], count=data["count"],
                    before_consent=data["before_consent"], blocked=data["blocked"],
                    first_seen_ms=ms(data.get("first_seen")), last_seen_ms=ms(data.get("last_seen")), details=details)


def chosen(sightings: Iterable[Sighting], *, unknown: bool | None = None, before_consent: bool | None = None,
           category: str | None = None) -> list[Sighting]:
    """The items that pass the filters (None: either way), in the order given."""
    return [s for s in sightings
            if (unknown is None or (s.source == "unknown") == unknown)
            and (before_consent is None or (s.before_consent > 0) == before_consent)
            and (category is None or s.category == category)]


def _lifetime(seconds: Any) -> str:
    if not isinstance(seconds, int):
        return "session" if seconds is None else "-"
    if seconds <= 0:
        return "expired"
    days = seconds / 86400
    return f"{days:.0f} days" if days >= 1 else f"{seconds // 3600} h" if seconds >= 3600 else f"{seconds} s"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) if ms else "-"


def table(sightings: Sequence[Sighting]) -> str:
    """A text table: unknown and before-consent items first (what a cookie statement is missing)."""
    headers = ["site", "name", "kind", "set by", "category", "how classified", "service", "seen",
               "before consent", "blocked", "lifetime", "first seen (UTC)", "last seen (UTC)"]
    rows = [[s.site, s.name, s.kind, s.set_by, s.category, s.source, s.service or "-", str(s.count),
             str(s.before_consent), str(s.blocked),
             _lifetime(s.details.get("lifetime_seconds")) if s.kind == "cookie" else "-",
             _when(s.first_seen_ms), _when(s.last_seen_ms)] for s in sightings]
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)
