"""The cookie inventory's hot-path side: every cookie the sites really set, as seen in Set-Cookie.

`record()` runs on the event loop for each Set-Cookie: it adds a sighting to
`buffer` (an `InventoryBuffer`, which the application merges into the consent
store every few seconds and at shutdown, so every worker and instance adds
to one stored inventory) and keeps, in memory, the two things the hot path
reads: each site's known cookie names (the banner's cookie list) and every
path a cookie was set with (to expire each variant). Both are loaded from the
store before serving (`load`), so a restarted worker knows what any worker
ever saw.

The inventory used to be `DATA_DIR/cookie-inventory.json`; `import_legacy`
moves such a file into the store once and renames it `*.imported`.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.header import Attributes
from consentproxy.inventory.model import InventoryBuffer, Sighting
from consentproxy.inventory.vendors import VendorBook

logger = logging.getLogger("consentproxy.cookies")

FILENAME = "cookie-inventory.json"


@dataclass(slots=True)
class InventoryEntry:
    """What the banner's cookie list needs of a cookie a site was seen setting."""

    site: str
    name: str
    lifetime_seconds: int | None  # None: a session cookie


def _lifetime(cookie: Attributes, now: float) -> int | None:
    if cookie.max_age is not None:
        return cookie.max_age
    if cookie.expires is not None:
        return int(cookie.expires - now)
    return None


class _CountedBuffer(InventoryBuffer):
    """An InventoryBuffer that counts its takes: a sighting buffered since the last take is still in it."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0

    def take(self) -> list[Sighting]:
        self.taken += 1
        return super().take()


class CookieInventory:
    def __init__(self, data_dir: Path | None = None) -> None:
        #: where an inventory of an earlier version may be, to import once
        self.legacy_path = data_dir / FILENAME if data_dir is not None else None
        #: sightings since the last flush to the store (other sources add to it too)
        self._counted = _CountedBuffer()
        self.buffer: InventoryBuffer = self._counted
        # Per (site, cookie name): the sighting this process buffered, with the buffer's take count then.
        self._live: dict[tuple[str, bytes], tuple[int, Sighting, InventoryEntry]] = {}
        self._paths: dict[tuple[str, bytes], frozenset[str]] = {}
        #: bumped whenever a new path is learnt, so callers may cache what they derive from paths
        self.paths_version = 0
        # One entry per site and cookie name, from the store and from what this process saw since.
        self._known: dict[tuple[str, str], InventoryEntry] = {}
        #: bumped whenever a cookie name is seen for the first time (the banner lists them)
        self.known_version = 0
        #: the vendors each site was seen using (its notice names them), learnt beside its cookies
        self.vendors = VendorBook()

    def load(self, sightings: Iterable[Sighting]) -> None:
        """Learn the stored inventory's cookies and vendors (before serving, on the event loop's thread)."""
        sightings = list(sightings)
        self.vendors.load(sightings)
        for sighting in sightings:
            if sighting.kind != "cookie":
                continue
            name = sighting.name.encode("latin-1", "replace")
            for path in sighting.details.get("paths", ()):
                self._add_path(sighting.site, name, str(path))
            known = self._known.get((sighting.site, sighting.name))
            if known is None or sighting.set_by == "server":  # a lifetime as really set wins over a script's
                lifetime = sighting.details.get("lifetime_seconds")
                self._known[(sighting.site, sighting.name)] = InventoryEntry(
                    sighting.site, sighting.name, lifetime if isinstance(lifetime, int) else None)
                self.known_version += 1

    def _add_path(self, site: str, name: bytes, path: str) -> None:
        known = self._paths.get((site, name), frozenset())
        if path not in known:
            self._paths[(site, name)] = known | {path}
            self.paths_version += 1

    def record(self, site: str, name: bytes, cookie: Attributes, classifier: CookieClassifier, blocked: bool,
               before_consent: bool = False) -> None:
        """Count one Set-Cookie (`before_consent`: the visitor had not decided yet).

        On the hot path: the cookie's sighting, once buffered, is updated in
        place (what `Sighting.merge` would make of it) until the buffer is
        taken, instead of a new sighting merged per header.
        """
        now = time.time()
        now_ms = int(now * 1000)
        lifetime = _lifetime(cookie, now)
        self._add_path(site, name, cookie.path)
        live = self._live.get((site, name))
        if live is not None and live[0] == self._counted.taken:
            sighting = live[1]
            sighting.count += 1
            sighting.blocked += blocked
            sighting.before_consent += before_consent
            sighting.last_seen_ms = now_ms
            details = sighting.details
            paths: list[str] = details["paths"]
            if cookie.path not in paths:
                paths.append(cookie.path)
                paths.sort()
            details["domain"], details["path"], details["lifetime_seconds"] = cookie.domain, cookie.path, lifetime
            details["httponly"], details["secure"], details["samesite"] = cookie.httponly, cookie.secure, \
                cookie.samesite
            live[2].lifetime_seconds = lifetime
            return
        text = name.decode("latin-1")
        entry = self._known.get((site, text))
        if entry is None:
            entry = self._known[(site, text)] = InventoryEntry(site, text, lifetime)
            self.known_version += 1
        else:
            entry.lifetime_seconds = lifetime
        classification = classifier.classify(text)  # cached by the classifier
        sighting = Sighting(
            site=site, kind="cookie", name=text, set_by="server", category=classification.category,
            source=classification.source, service=classification.service, count=1,
            before_consent=int(before_consent), blocked=int(blocked), first_seen_ms=now_ms, last_seen_ms=now_ms,
            details={"domain": cookie.domain, "path": cookie.path, "paths": [cookie.path],
                     "lifetime_seconds": lifetime, "httponly": cookie.httponly, "secure": cookie.secure,
                     "samesite": cookie.samesite})
        before = len(self.buffer)
        self.buffer.add(sighting)
        if len(self.buffer) > before:  # buffered as it is (not merged into another source's): ours to update
            self._live[(site, name)] = (self._counted.taken, sighting, entry)
        else:
            self._live.pop((site, name), None)

    def known(self, site: str) -> list[InventoryEntry]:
        """Every cookie name the site was seen setting, one entry each."""
        return [entry for (entry_site, _), entry in self._known.items() if entry_site == site]

    def paths(self, site: str, name: bytes) -> frozenset[str]:
        """Paths this cookie was seen set with, for expiring every variant."""
        return self._paths.get((site, name), frozenset())


def legacy_sightings(path: Path) -> list[Sighting]:
    """The entries of an earlier version's `cookie-inventory.json` as sightings; [] if unreadable."""
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    sightings = []
    for item in data.get("cookies", []):
        try:
            sightings.append(Sighting(
                site=str(item["site"]), kind="cookie", name=str(item["name"]), set_by="server",
                category=str(item["category"]), source=str(item["source"]), service=str(item.get("service", "")),
                count=int(item["count"]), blocked=int(item.get("blocked", 0)),
                first_seen_ms=int(float(item["first_seen"]) * 1000),
                last_seen_ms=int(float(item["last_seen"]) * 1000),
                details={"domain": item.get("domain", ""), "path": item.get("path", "/"),
                         "paths": [item.get("path", "/")], "lifetime_seconds": item.get("lifetime_seconds"),
                         "httponly": bool(item.get("httponly")), "secure": bool(item.get("secure")),
                         "samesite": item.get("samesite", "")}))
        except (KeyError, TypeError, ValueError):
            continue
    return sightings


def import_legacy(path: Path | None, merge: Callable[[Sequence[Sighting]], None]) -> int:
    """Merge an earlier version's inventory file into the store once (`merge`: the store's merge_inventory).

    Under the file's old lock, so two workers starting together import it
    once; renamed `*.imported` afterwards. Returns the entries imported.
    """
    if path is None or not path.exists():
        return 0
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():  # another worker imported it meanwhile
            return 0
        sightings = legacy_sightings(path)
        merge(sightings)
        path.rename(path.with_name(path.name + ".imported"))
    logger.info("imported %d cookie(s) of %s into the consent store; the file is now %s.imported",
                len(sightings), path, path.name)
    return len(sightings)
