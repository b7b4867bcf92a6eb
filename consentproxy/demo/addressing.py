"""Which address a browser used, and which address to show a person.

The demo must work whether it is opened as localhost, 127.0.0.1 or a LAN
address, so URLs that the pages hand to the browser are built from the Host
header the browser sent, never from a fixed name. The tracker stand-ins get
host names of their own, so that a browser sees them as the third parties they
stand for.
"""

from __future__ import annotations

import re

from aiohttp import web

_HOST_HEADER_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$")


def display_host(host: str) -> str:
    """A listen address as it goes into a URL: wildcards become loopback, IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def request_host(request: web.Request) -> tuple[str, str]:
    """(hostname, hostname[:port]) from the Host header; the socket's address if it is missing or odd.

    Only a plain name or IP literal passes, so the result is safe to put into a URL.
    """
    match = _HOST_HEADER_RE.match(request.headers.get("Host", ""))
    if match:
        return match.group(1), match.group(0)
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    address, port = (str(sockname[0]), int(sockname[1])) if sockname else ("127.0.0.1", 80)
    hostname = display_host(address)
    return hostname, f"{hostname}:{port}"


#: the stand-ins' host names per template placeholder: the real vendors' names, under `.localhost`
TRACKER_HOSTS: dict[str, str] = {
    "ga": "www.googletagmanager.com.localhost",
    "facebook": "connect.facebook.net.localhost",
    "hotjar": "static.hotjar.com.localhost",
    "youtube": "www.youtube.com.localhost",
}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def tracker_origins(request: web.Request, port: int) -> dict[str, str]:
    """The stand-ins' origin per placeholder: `.localhost` names for a visitor on this machine, else the host
    name the visitor used (another device cannot reach this machine's loopback)."""
    hostname, _ = request_host(request)
    local = hostname in _LOOPBACK_NAMES or hostname.endswith(".localhost")
    return {key: f"http://{name if local else hostname}:{port}" for key, name in TRACKER_HOSTS.items()}
