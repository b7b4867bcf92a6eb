"""Small HTML pages for the answers the proxy gives itself (421, 502, 504...).

They name no internal host or port: a visitor learns that the site is
unreachable, not where it lives.
"""

from __future__ import annotations

import html
from functools import lru_cache
from http import HTTPStatus

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{status} {phrase}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2328}}
h1{{font-size:1.4rem}}p{{color:#57606a}}</style></head>
<body><h1>{status} {phrase}</h1><p>{detail}</p></body></html>
"""

DETAILS = {
    400: "The request could not be understood.",
    404: "Nothing here.",
    405: "This method is not allowed here.",
    408: "The request did not arrive in time.",
    413: "The request body is larger than this site accepts.",
    421: "This server does not serve the requested site.",
    429: "Too many requests from your address at once. Please try again in a moment.",
    501: "The request uses a feature this server does not implement.",
    502: "The website behind this server could not be reached. Please try again in a moment.",
    503: "The service is temporarily unavailable. Please try again in a moment.",
    504: "The website behind this server did not answer in time. Please try again in a moment.",
}


@lru_cache(maxsize=64)
def error_page(status: int, detail: str | None = None) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Response headers and body for an error page; cached, as they never vary."""
    phrase = HTTPStatus(status).phrase
    text = detail if detail is not None else DETAILS.get(status, phrase)
    body = _TEMPLATE.format(status=status, phrase=html.escape(phrase), detail=html.escape(text)).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    return headers, body
