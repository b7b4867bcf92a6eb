"""Starting the proxy: sockets, uvicorn, one worker or a supervisor of several."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from consentproxy.config.model import Config, Limits, ServerConfig
from consentproxy.observability.accesslog import setup_access_log
from consentproxy.server.acceptor import FairAcceptor
from consentproxy.server.protocol import HardenedHttpToolsProtocol, is_busy
from consentproxy.server.sockets import bind_all

if TYPE_CHECKING:
    from consentproxy.server.application import Application

logger = logging.getLogger("consentproxy.server")


class _QuietUpstreamAborts(logging.Filter):
    """uvicorn logs a traceback for any exception after a response started.

    An upstream that breaks off mid-body is already logged by the proxy in one
    line; the traceback would only be noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from consentproxy.proxy.handler import UpstreamAborted

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, UpstreamAborted)


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietUpstreamAborts())
    setup_access_log()


def protocol_class(limits: Limits, server: ServerConfig | None = None) -> type[HardenedHttpToolsProtocol]:
    """The protocol with this configuration; `server`'s trusted proxies and admin port skip the per-address limit."""
    attributes: dict[str, object] = {"limits": limits}
    if server is not None:
        attributes["trusted_proxies"] = server.trusted_proxies
        if server.admin_listen is not None:
            attributes["unlimited_ports"] = frozenset({server.admin_listen.port})
    return type("ConfiguredHttpProtocol", (HardenedHttpToolsProtocol,), attributes)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class _Server(uvicorn.Server):
    """uvicorn's server, accepting with `FairAcceptor`s and telling `on_draining` once it accepts no more
    connections (a reload waits for it). `shared`: other workers accept on the same sockets."""

    def __init__(self, config: uvicorn.Config, on_draining: Callable[[], None] | None, shared: bool) -> None:
        super().__init__(config)
        self.on_draining = on_draining
        self.shared = shared

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """As uvicorn's, but the connections on `sockets` are accepted by `FairAcceptor`s: one address that
        opens many connections at once does not hold up everyone else's (see `server.acceptor`)."""
        await super().startup(sockets=[] if sockets is not None else None)
        if sockets is None or not self.started:
            return
        config = self.config
        loop = asyncio.get_running_loop()
        protocol: type[HardenedHttpToolsProtocol] = config.http_protocol_class  # type: ignore[assignment]

        def create_protocol() -> asyncio.Protocol:
            return protocol(config=config, server_state=self.server_state,
                            app_state=self.lifespan.state, _loop=loop)

        for sock in sockets:
            port = sock.getsockname()[1]
            busy = None if port in protocol.unlimited_ports else is_busy
            acceptor = FairAcceptor(loop, sock, create_protocol, busy, greedy=not self.shared)
            self.servers.append(acceptor)  # type: ignore[arg-type]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # what uvicorn does first; closing again there is harmless
        if self.on_draining is not None:
            self.on_draining()
        await super().shutdown(sockets)


def run_worker(config: Config, sockets: Sequence[socket.socket], log_level: str = "info",
               application: Application | None = None, on_draining: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests.

    uvicorn re-raises the signal that stopped it once it has drained; the
    handler installed here turns that into exit status 0 (an orderly stop),
    not 143 or a KeyboardInterrupt traceback. Logging is `serve`'s, set up
    once (a forked worker has it too). `application`: one the
    supervisor built before forking this worker; else it is built here.
    `config` shapes the server (sockets, limits) whatever the application
    has reloaded since: those change only at a restart. `on_draining`: told
    when the worker has stopped accepting connections.
    """
    from consentproxy.server.application import Application

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    server_config = config.server
    uconfig = uvicorn.Config(
        application if application is not None else Application(config),
        http=protocol_class(server_config.limits, server_config),
        ws="websockets-sansio",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        timeout_keep_alive=int(max(1, server_config.limits.keepalive_timeout)),
        timeout_graceful_shutdown=int(max(1, server_config.graceful_timeout)),
        log_level=log_level,
        log_config=None,
    )
    _Server(uconfig, on_draining, shared=server_config.workers > 1).run(sockets=list(sockets))


def serve(config: Config, log_level: str = "info") -> int:
    setup_logging(log_level)
    # The consent log is opened (and its schema migrated) once, here, before any worker:
    # a store that cannot be opened stops the start instead of failing visitors' clicks.
    from consentproxy.runtime import check_store

    for problem in check_store(config):
        logger.error("%s", problem)
        return 2
    try:
        sockets = bind_all(config)
    except OSError as exc:
        logger.error("%s", exc.strerror or exc)
        return 1
    listen = ", ".join(f"http://{address}" for address in config.server.listen)
    admin = f"; admin on http://{config.server.admin_listen}" if config.server.admin_listen else ""
    logger.info("consentproxy listening on %s%s; %d site(s), %d worker(s)", listen, admin, len(config.sites),
                config.server.workers)
    if config.server.workers == 1:
        run_worker(config, sockets, log_level)
        return 0
    return _supervise(config, sockets, log_level)


def _supervise(config: Config, sockets: list[socket.socket], log_level: str) -> int:
    """Several workers, forked from one configuration built here: they share its pages (see supervisor.py)."""
    from consentproxy.server.application import Application
    from consentproxy.server.supervisor import Supervisor

    return Supervisor(config, sockets, log_level, Application(config)).run()
