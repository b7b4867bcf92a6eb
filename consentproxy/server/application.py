"""The ASGI application one worker serves: lifespan, reload, and dispatch.

Requests on the admin port go to the admin app; everything else to the
proxy. SIGHUP re-reads the configuration file: a valid one is swapped in for
new requests (open connections stay), an invalid one is refused with a log
line and the running configuration stays. The file is read, checked and built
in a thread, so the event loop keeps serving (10,000 sites take seconds); only
the swap, one assignment, happens on the loop. Requests in flight keep the
`Site` they were routed to, so they finish on the configuration they started
with; the old one is freed when the last of them ends (nothing in a runtime
holds a reference cycle, so this needs no full collection: see
tests/test_reload_scale.py). With several workers the supervisor builds the
application before forking them and reloads it there (`reload`, see
consentproxy/server/supervisor.py); a worker reloads itself only on a SIGHUP
sent to it alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from consentproxy.admin.api import AdminStore
from consentproxy.admin.app import build_admin_app
from consentproxy.banner.endpoints import ConsentEndpoints
from consentproxy.collector import collector_paused
from consentproxy.config.loader import ConfigError, load_config
from consentproxy.config.model import Config, SiteConfig
from consentproxy.consent.revocations import REVOCATIONS, RevocationPoller
from consentproxy.cookies.inventory import CookieInventory, import_legacy
from consentproxy.inventory.model import Sighting
from consentproxy.proxy.app import ProxyApp
from consentproxy.proxy.upstream import create_session
from consentproxy.records import RecordStore, RecordWriter, StoreError, open_store
from consentproxy.records.maintenance import upkeep
from consentproxy.runtime import (
    Runtime,
    check_references,
    export_signing_key,
    store_url,
    with_default_keys,
)

logger = logging.getLogger("consentproxy.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

INVENTORY_FLUSH_SECONDS = 10.0
#: how long a starting worker waits for the stored inventory (the cookies' known paths) before serving anyway
INVENTORY_FIRST_LOAD_SECONDS = 30.0
#: the first upkeep of the consent log comes soon after start, then every [store] upkeep_interval
UPKEEP_FIRST_SECONDS = 60.0
#: how long a starting worker waits for its first read of the revocations before serving anyway
REVOCATIONS_FIRST_LOAD_SECONDS = 10.0

#: the GIL switch interval while a reload builds in its thread (see `_build`)
BUILD_SWITCH_INTERVAL = 0.0005

# Changing these needs a restart: they shape sockets and processes, not requests.
_RESTART_ONLY = ("listen", "admin_listen", "workers", "limits", "upstream_connections")


class Application:
    def __init__(self, config: Config) -> None:
        self.inventory = CookieInventory(config.server.data_dir)
        self.store_url = store_url(config)
        self.records = RecordWriter.for_url(self.store_url)
        # What start-up left in cycles is collected while the heap is small; the configuration built next
        # (a million objects at 10,000 sites, and no cycles) is frozen at once, so neither the collector's
        # first passes nor the full collection before serving scan it again.
        gc.collect()
        with collector_paused():
            self.runtime = Runtime.build(config, self.inventory, self.records)
            gc.freeze()
        self.proxy: ProxyApp | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._upkeeper: asyncio.Task[None] | None = None
        # Erasures and withdrawals made on any worker or instance end that consent here within seconds.
        self.revocation_poller = RevocationPoller(REVOCATIONS, self.records)
        self._revocation_poll: asyncio.Task[None] | None = None
        self.ready = False
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self._reload_at_start = False
        #: called once the worker serves (a supervisor that forked it waits for this before retiring the old ones)
        self.on_ready: Callable[[], None] | None = None
        # Long admin reads (exports, verification) get connections of their own, never the writer's.
        admin_store = AdminStore(self.records, lambda: open_store(self.store_url, migrate=False), self._site_config,
                                 REVOCATIONS)
        self.admin = build_admin_app(lambda: self.ready, self._describe, lambda: self.runtime.admin, admin_store)

    def _site_config(self, name: str) -> SiteConfig | None:
        return next((site for site in self.runtime.config.sites if site.name == name), None)

    def _describe(self) -> dict[str, object]:
        return {"pid": os.getpid(), "sites": [site.name for site in self.runtime.router.sites]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        proxy = self.proxy
        if kind == "http":
            server = scope.get("server")
            if server is not None and server[1] == self.runtime.admin_port:
                await self.admin(scope, receive, send)
            elif proxy is not None:
                await proxy.http(scope, receive, send)
        elif kind == "websocket":
            server = scope.get("server")
            if proxy is not None and (server is None or server[1] != self.runtime.admin_port):
                await proxy.websocket(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = create_session(self.runtime.config.server)
                self.proxy = ProxyApp(self.runtime, session)
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
                if self._reload_at_start:
                    self.request_reload()
                # Move everything allocated at start-up out of the collector's reach:
                # full collections then scan only live request objects, which keeps
                # their pauses (and so the latency tail) short.
                gc.collect()
                gc.freeze()
                self._flusher = asyncio.ensure_future(self._flush_periodically())
                self._upkeeper = asyncio.ensure_future(self._upkeep_periodically())
                await self._load_revocations()
                await self._load_inventory()
                self._revocation_poll = asyncio.ensure_future(self.revocation_poller.run())
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                for task in (self._flusher, self._upkeeper, self._revocation_poll):
                    if task is not None:
                        task.cancel()
                await self.flush_inventory()
                await self.records.close()  # commits what is queued
                for site in self.runtime.router.sites:
                    for step in site.steps:
                        if isinstance(step, ConsentEndpoints) and step.analytics is not None:
                            await step.analytics.close()
                if self.proxy is not None:
                    await self.proxy.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _load_revocations(self) -> None:
        """Read every revocation before serving, so a restarted worker never honours an erased consent."""
        try:
            await asyncio.wait_for(self.revocation_poller.poll(), REVOCATIONS_FIRST_LOAD_SECONDS)
        except (StoreError, TimeoutError) as exc:
            logger.warning("revocations not loaded at start (%s); the background poll keeps trying",
                           exc or "timed out")

    async def _upkeep_periodically(self) -> None:
        delay = min(UPKEEP_FIRST_SECONDS, self.runtime.config.store.upkeep_interval)
        while True:
            await asyncio.sleep(delay)
            delay = self.runtime.config.store.upkeep_interval
            await self.upkeep()

    async def upkeep(self) -> None:
        """Sign each site's head and apply retention (one worker of this host at a time)."""
        runtime = self.runtime
        try:
            key = export_signing_key(runtime.config)
        except ConfigError as exc:
            logger.error("consent log upkeep skipped: %s", exc)
            return
        if key is None:
            return
        sites = runtime.config.sites
        lock = runtime.config.server.data_dir / "upkeep.lock"
        now = dt.datetime.now(dt.UTC)
        try:
            await self.records.call(lambda store: upkeep(store, sites, key, now, lock))
        except StoreError as exc:
            logger.warning("consent log upkeep failed, tried again at the next round: %s", exc)

    async def _load_inventory(self) -> None:
        """Learn every cookie path and name, and every vendor, any worker stored, importing an old inventory file
        once."""
        legacy = self.inventory.legacy_path

        def read(store: RecordStore) -> list[Sighting]:
            import_legacy(legacy, store.merge_inventory)
            return store.inventory(kind="cookie") + store.inventory(kind="host")

        try:
            sightings = await asyncio.wait_for(self.records.call(read), INVENTORY_FIRST_LOAD_SECONDS)
        except (StoreError, OSError, TimeoutError) as exc:
            logger.warning("the stored cookie inventory was not loaded at start (%s); cookies are learnt anew",
                           exc or "timed out")
            return
        self.inventory.load(sightings)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(INVENTORY_FLUSH_SECONDS)
            await self.flush_inventory()

    async def flush_inventory(self) -> None:
        """Merge what the inventory buffered into the consent store (kept for the next round if it fails), and
        learn the vendors other workers and instances saw (the sites' notices name them)."""
        buffer = self.inventory.buffer
        pending = buffer.take()
        if pending:
            try:
                await self.records.call(lambda store: store.merge_inventory(pending))
            except StoreError as exc:
                logger.warning("inventory not stored (%d item(s)), tried again at the next flush: %s", len(pending),
                               exc)
                for sighting in pending:
                    buffer.add(sighting)
                return
        try:
            hosts = await self.records.call(lambda store: store.inventory(kind="host"))
        except StoreError:
            return  # learnt at the next flush
        self.inventory.vendors.load(hosts)

    def reload_when_started(self) -> None:
        """A SIGHUP before the event loop took the signal over (a worker just forked): reload once it serves."""
        self._reload_at_start = True

    def request_reload(self) -> None:
        """SIGHUP: reload in the background; one that comes during a reload makes one more after it (the file
        may have changed again), never two builds at once."""
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.ensure_future(self._reload_in_background())

    async def _reload_in_background(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self.reload_async()
            except Exception:  # a bug must not end reloading for the life of the worker
                logger.exception("configuration reload failed, keeping the running one")
            if not self._reload_again:
                return

    async def reload_async(self) -> bool:
        """Re-read the configuration file in a thread, then swap it in; True if the new one is in force."""
        started = self.runtime
        built = await asyncio.to_thread(self._build, started)
        if built is None:
            return False
        if self.runtime is not started:  # another reload swapped meanwhile (the synchronous one, in tests)
            logger.warning("configuration reload dropped: another one finished first")
            return False
        self._swap(built)
        return True

    def reload(self) -> bool:
        """Re-read the configuration file and swap it in, blocking: for callers without an event loop."""
        built = self._build(self.runtime)
        if built is None:
            return False
        self._swap(built)
        return True

    def restore(self, runtime: Runtime) -> None:
        """Put back a configuration in force before (a supervisor whose new workers did not start)."""
        self.runtime = runtime
        if self.proxy is not None:
            self.proxy.runtime = runtime

    def _build(self, previous: Runtime) -> Runtime | None:
        """The new runtime, or None (logged) when the file is refused; runs in a thread, touching nothing
        the event loop uses but what is read-only (the previous runtime's shared parts and sites)."""
        path = previous.config.source
        if path is None:
            logger.warning("SIGHUP ignored: this proxy was started without a configuration file")
            return None
        started = time.perf_counter()
        interval = sys.getswitchinterval()
        # The build holds the GIL for seconds: the event loop, waiting for it after each poll, should get it
        # within a millisecond, not the default 5 ms (its requests wait on every step of the way).
        sys.setswitchinterval(min(interval, BUILD_SWITCH_INTERVAL))
        try:
            with collector_paused():
                config = with_default_keys(load_config(path))
                problems = check_references(config)
                if problems:
                    raise ConfigError(problems)
                runtime = Runtime.build(config, self.inventory, self.records, previous)
        except ConfigError as exc:
            logger.error("configuration reload refused, keeping the running one:\n%s", exc)
            return None
        finally:
            sys.setswitchinterval(interval)
        reused = len({id(site) for site in runtime.router.sites} & {id(site) for site in previous.router.sites})
        logger.info("configuration built from %s in %.2f s: %d site(s), %d unchanged and reused", path,
                    time.perf_counter() - started, len(config.sites), reused)
        return runtime

    def _swap(self, runtime: Runtime) -> None:
        """Put a built runtime in force (on the event loop: one assignment each, no await in between)."""
        config = runtime.config
        path = config.source
        if store_url(config) != self.store_url:
            logger.warning("reload: [store] url changed; it takes effect only after a restart")
        old = self.runtime.config.server
        for name in _RESTART_ONLY:
            if getattr(old, name) != getattr(config.server, name):
                logger.warning("reload: server.%s changed; it takes effect only after a restart", name)
        if runtime.admin_port != self.runtime.admin_port:
            runtime = dataclasses.replace(runtime, admin_port=self.runtime.admin_port)
        self.runtime = runtime
        if self.proxy is not None:
            self.proxy.runtime = runtime
            self.proxy.handler.access_log = config.server.access_log
        # The new runtime was made after start-up's freeze: keep the collector's full passes off it too (the
        # young generations first, so little of what requests left behind is frozen with it).
        gc.collect(1)
        gc.freeze()
        logger.info("configuration reloaded from %s: %d site(s)", path, len(config.sites))

