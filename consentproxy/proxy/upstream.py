"""The per-worker aiohttp client: one session, one sized keep-alive pool.

Set so that aiohttp adds nothing of its own to what we forward (no
Accept-Encoding, User-Agent, Accept or Content-Type), never decompresses,
never stores cookies, and ignores HTTP_PROXY in the environment.
"""

from __future__ import annotations

import aiohttp

from consentproxy.config.model import ServerConfig


def create_session(server: ServerConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=server.upstream_connections,
        limit_per_host=0,
        keepalive_timeout=30,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        max_line_size=65536,
        max_field_size=65536,
        read_bufsize=2**16,
    )
