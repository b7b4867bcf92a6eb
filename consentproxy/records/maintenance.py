"""The consent log's periodic upkeep: signed checkpoints, and retention.

Run by the server about once an hour (and by `consentproxy purge` on demand):
a checkpoint signs each site's head, so later tampering with what came
before is evident even to someone who rewrites every hash; events past the
site's retention are deleted behind a signed cut, so the rest still verifies.
Several workers of one host take turns through a lock file; several hosts
sharing a PostgreSQL log may both run it — an unchanged head keeps its
checkpoint and a purge finds nothing left to do.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentproxy.config.model import SiteConfig
from consentproxy.records.export import purge_expired
from consentproxy.records.store import RecordStore

logger = logging.getLogger("consentproxy.records")


@dataclass(frozen=True, slots=True)
class Upkeep:
    site: str
    checkpoint_seq: int | None  # the head signed, None for a site without events
    purged: int


def upkeep(store: RecordStore, sites: Iterable[SiteConfig], key: Ed25519PrivateKey, now: datetime,
           lock: Path | None = None) -> list[Upkeep]:
    """Purge and checkpoint every site; [] when another worker of this host holds the lock."""
    handle = None
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return []
    try:
        done = []
        for site in sites:
            purged = purge_expired(store, site, key, now)
            checkpoint = store.add_checkpoint(site.name, key)
            done.append(Upkeep(site.name, checkpoint.seq if checkpoint else None, purged))
            if purged:
                logger.info("site %s: %d consent event(s) past retention deleted behind a signed cut",
                            site.name, purged)
        return done
    finally:
        if handle is not None:
            handle.close()
