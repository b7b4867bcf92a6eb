"""The request headers that name a visitor's address: what a client must not be believed in.

Its own module because both the configuration (which of them a site may pass
on) and the proxy (which it removes) read it, and reading a configuration
must not import the proxy.
"""

from __future__ import annotations

#: Request headers in which front proxies and CDNs name the visitor's address (or how it reached them).
#: From a client they are lies a site would log, rate-limit or geolocate by, so they never pass as they
#: came: the proxy keeps them with the owned ones, and only a site's `pass_client_headers` lets one go on
#: (from a trusted proxy). X-Forwarded-For, Forwarded, -Proto and -Host are the proxy's own to write.
CLIENT_ADDRESS_HEADERS: frozenset[bytes] = frozenset({
    b"x-real-ip", b"true-client-ip", b"cf-connecting-ip", b"cf-connecting-ipv6", b"x-client-ip",
    b"x-cluster-client-ip", b"client-ip", b"fastly-client-ip", b"x-original-forwarded-for", b"x-forwarded",
    b"forwarded-for", b"x-forwarded-port", b"x-forwarded-server", b"x-forwarded-scheme", b"x-forwarded-ssl",
    b"x-originating-ip", b"x-remote-ip", b"x-remote-addr", b"x-proxyuser-ip", b"x-envoy-external-address",
    b"x-azure-clientip", b"akamai-client-ip", b"x-original-host",
})
