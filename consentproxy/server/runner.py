"""Starting the proxy: sockets, uvicorn, one worker or a supervisor of several."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from consentproxy.config.model import Config, Limits, ListenAddress, ServerConfig
from consentproxy.observability.accesslog import setup_access_log
from consentproxy.server.protocol import HardenedHttpToolsProtocol

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


def bind_socket(address: ListenAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def bind_all(config: Config) -> list[socket.socket]:
    addresses = list(config.server.listen)
    if config.server.admin_listen is not None:
        addresses.append(config.server.admin_listen)
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sockets.append(bind_socket(address))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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


def run_worker(config: Config, sockets: Sequence[socket.socket], log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests.

    uvicorn re-raises the signal that stopped it once it has drained; the
    handler installed here turns that into exit status 0 (an orderly stop),
    not 143 or a KeyboardInterrupt traceback.
    """
    from consentproxy.server.application import Application

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    setup_logging(log_level)
    server_config = config.server
    uconfig = uvicorn.Config(
        Application(config),
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
    uvicorn.Server(uconfig).run(sockets=list(sockets))


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
    from consentproxy.server.supervisor import Supervisor

    return Supervisor(config, sockets, log_level).run()
