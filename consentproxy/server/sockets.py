"""The listening sockets, bound once before any worker starts (and by the checks that a port is free).

Kept apart from the server so that binding imports nothing heavy: `serve` checks
its ports before it knows whether prometheus_client may be imported yet.
"""

from __future__ import annotations

import socket

from consentproxy.config.model import Config, ListenAddress


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
