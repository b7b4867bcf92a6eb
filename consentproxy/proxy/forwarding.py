"""What the upstream is told about a request: its end-to-end headers, the Host, and who asked.

One place for plain requests and WebSocket handshakes alike, so a site's `forward_client_ip` and
`pass_client_headers` hold for both (the visitor's full address must not reach a site that asked for none
through a WebSocket). Header values go out as the bytes they came as (`header_text`).
"""

from __future__ import annotations

from collections.abc import Collection

from consentproxy.proxy.forwarded import truncated_chain
from consentproxy.proxy.headers import header_names
from consentproxy.proxy.pipeline import Exchange
from consentproxy.proxy.upstream import header_text


def upstream_request_headers(exchange: Exchange, content_length: int | None = None,
                             skip: Collection[bytes] = ()) -> list[tuple[str, str]]:
    """The request headers to send upstream: the client's end-to-end ones (but `skip`), the Host, the
    framing, and the forwarding headers the site's policy allows."""
    site = exchange.site
    owned = exchange.owned_headers
    out = [(name.decode("latin-1"), header_text(value)) for name, value in exchange.request_headers
           if name not in skip]
    out.append(("Host", site.fixed_host if site.fixed_host is not None else header_text(exchange.host)))
    if content_length is not None:
        out.append(("Content-Length", str(content_length)))
    peer = exchange.peer
    trusted = exchange.trusted_peer
    ip_policy = site.config.forward_client_ip
    if ip_policy != "none":
        previous = owned.get(b"x-forwarded-for") if trusted else None
        forwarded_for = f"{header_text(previous)}, {peer}" if previous else peer
        out.append(("X-Forwarded-For", forwarded_for if ip_policy == "full" else truncated_chain(forwarded_for)))
    proto = owned.get(b"x-forwarded-proto") if trusted else None
    scheme = "https" if exchange.scheme in ("https", "wss") else "http"
    out.append(("X-Forwarded-Proto", header_text(proto) if proto else scheme))
    fwd_host = owned.get(b"x-forwarded-host") if trusted else None
    out.append(("X-Forwarded-Host", header_text(fwd_host or exchange.host)))
    if trusted and ip_policy == "full":
        if b"forwarded" in owned:
            out.append(("Forwarded", header_text(owned[b"forwarded"])))
        passing = site.config.pass_client_headers
        if passing:  # the loader allows it only where the site sees full addresses
            out += [(name.decode("latin-1"), header_text(owned[name]))
                    for name in header_names(passing) if name in owned]
    via = owned.get(b"via")
    out.append(("Via", f"{header_text(via)}, 1.1 consentproxy" if via else "1.1 consentproxy"))
    return out
