"""The cookie inventory: every cookie the sites really set, as seen in Set-Cookie.

Counted in memory on the hot path (a dict update), merged into
`DATA_DIR/cookie-inventory.json` periodically and at shutdown. Several
workers merge into the same file under an exclusive lock, each adding what
it counted since its last flush. The report lists unknown and undeclared
cookies first: what a site owner must look at to write an honest cookie
statement.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from consentproxy.cookies.classify import CookieClassifier
from consentproxy.cookies.header import Attributes
from consentproxy.inventory.model import InventoryBuffer

FILENAME = "cookie-inventory.json"
_SOURCE_ORDER = {"unknown": 0, "database": 1, "catalogue": 2, "declared": 3}


@dataclass(slots=True)
class InventoryEntry:
    site: str
    name: str
    domain: str
    path: str
    lifetime_seconds: int | None  # None: a session cookie
    httponly: bool
    secure: bool
    samesite: str
    category: str
    source: str
    service: str
    count: int
    blocked: int
    first_seen: float
    last_seen: float

    def key(self) -> tuple[str, str, str, str]:
        return self.site, self.name, self.domain, self.path


def _lifetime(cookie: Attributes, now: float) -> int | None:
    if cookie.max_age is not None:
        return cookie.max_age
    if cookie.expires is not None:
        return int(cookie.expires - now)
    return None


class CookieInventory:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILENAME
        self.buffer = InventoryBuffer()
        self._pending: dict[tuple[str, bytes, str, str], InventoryEntry] = {}
        self._paths: dict[tuple[str, bytes], frozenset[str]] = {}
        #: bumped whenever a new path is learnt, so callers may cache what they derive from paths
        self.paths_version = 0
        # One entry per site and cookie name, from the file and from what this process saw since.
        self._known: dict[tuple[str, str], InventoryEntry] = {}
        #: bumped whenever a cookie name is seen for the first time (the banner lists them)
        self.known_version = 0
        for entry in load_inventory(self.path):
            self._add_path(entry.site, entry.name.encode("latin-1"), entry.path)
            self._known[(entry.site, entry.name)] = entry

    def _add_path(self, site: str, name: bytes, path: str) -> None:
        known = self._paths.get((site, name), frozenset())
        if path not in known:
            self._paths[(site, name)] = known | {path}
            self.paths_version += 1

    def record(self, site: str, name: bytes, cookie: Attributes, classifier: CookieClassifier, blocked: bool) -> None:
        """Count one Set-Cookie; the classification is looked up only for a new entry (it is cached anyway)."""
        now = time.time()
        key = (site, name, cookie.domain, cookie.path)
        entry = self._pending.get(key)
        if entry is None:
            text = name.decode("latin-1")
            classification = classifier.classify(text)
            entry = self._pending[key] = InventoryEntry(
                site, text, cookie.domain, cookie.path, None, False, False, "", classification.category,
                classification.source, classification.service, 0, 0, now, now)
            self._add_path(site, name, cookie.path)
            if (site, text) not in self._known:
                self._known[(site, text)] = entry
                self.known_version += 1
        entry.lifetime_seconds = _lifetime(cookie, now)
        entry.httponly, entry.secure, entry.samesite = cookie.httponly, cookie.secure, cookie.samesite
        entry.count += 1
        entry.blocked += blocked
        entry.last_seen = now

    def known(self, site: str) -> list[InventoryEntry]:
        """Every cookie name the site was seen setting, one entry each."""
        return [entry for (entry_site, _), entry in self._known.items() if entry_site == site]

    def paths(self, site: str, name: bytes) -> frozenset[str]:
        """Paths this cookie was seen set with, for expiring every variant."""
        return self._paths.get((site, name), frozenset())

    def take_pending(self) -> dict[tuple[str, bytes, str, str], InventoryEntry]:
        """What was counted since the last call (on the event loop's thread, like `record`)."""
        pending, self._pending = self._pending, {}
        return pending

    def flush(self) -> int:
        return self.write(self.take_pending())

    def write(self, pending: dict[tuple[str, bytes, str, str], InventoryEntry]) -> int:
        """Merge counts into the file under an exclusive lock (safe in a worker thread); entries in the file."""
        if not pending:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = {entry.key(): entry for entry in load_inventory(self.path)}
            for new in pending.values():
                key = new.key()
                old = merged.get(key)
                if old is not None:
                    new.count += old.count
                    new.blocked += old.blocked
                    new.first_seen = min(new.first_seen, old.first_seen)
                merged[key] = new
            temporary = self.path.with_suffix(".tmp")
            temporary.write_bytes(orjson.dumps({"version": 1, "cookies": [asdict(e) for e in merged.values()]},
                                               option=orjson.OPT_INDENT_2))
            os.replace(temporary, self.path)
        return len(merged)


def load_inventory(path: Path) -> list[InventoryEntry]:
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, orjson.JSONDecodeError):
        return []
    return [InventoryEntry(**item) for item in data.get("cookies", [])]


def report(entries: list[InventoryEntry], site: str | None = None) -> list[InventoryEntry]:
    """Unknown first, then undeclared (database, catalogue), then declared; most seen first within."""
    chosen = [e for e in entries if site is None or e.site == site]
    return sorted(chosen, key=lambda e: (_SOURCE_ORDER.get(e.source, 0), e.site, -e.count, e.name))
