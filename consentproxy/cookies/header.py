"""Cookie and Set-Cookie headers on raw bytes, the way browsers read them.

Never through `http.cookies.SimpleCookie` or a dict: SimpleCookie drops a
whole header on one bad value and swallows cookies named like attributes;
a dict loses duplicates and order. A Cookie header is filtered piece by
piece, so what remains is byte-identical and in its original order.

Set-Cookie parsing follows RFC 6265 §5.2 (the algorithm browsers implement):
the name is what precedes the first "=" of the part before the first ";",
trimmed of white space; a header without "=" there, or with an empty name,
sets no cookie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache

# Browsers refuse a cookie whose name and value together exceed 4096 bytes (RFC 6265bis §5.6).
MAX_NAME_VALUE_BYTES = 4096
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_WS = b" \t"


def join_pieces(pieces: list[bytes]) -> bytes:
    """Re-join kept pieces: original bytes, with the first one's leading white space dropped."""
    return b";".join(pieces).lstrip(_WS)


@dataclass(frozen=True, slots=True)
class Attributes:
    """The Set-Cookie attributes we report on (RFC 6265 §5.2.2-5.2.6); shared by equal attribute strings."""

    domain: str
    path: str
    max_age: int | None
    expires: float | None
    secure: bool
    httponly: bool
    samesite: str

    @property
    def session(self) -> bool:
        return self.max_age is None and self.expires is None


def set_cookie_name(header: bytes) -> bytes | None:
    """The cookie name a browser would store for this Set-Cookie, or None if it stores nothing."""
    return _pair_name(header.partition(b";")[0])


def _pair_name(pair: bytes) -> bytes | None:
    name, equals, value = pair.partition(b"=")
    name = name.strip(_WS)
    if not equals or not name or len(name) + len(value.strip(_WS)) > MAX_NAME_VALUE_BYTES:
        return None
    return name


def parse_set_cookie(header: bytes) -> tuple[bytes, Attributes] | None:
    """Name and attributes (RFC 6265 §5.2); None when no browser would store it as sent:
    control bytes, no "=", an empty name, or name and value over 4096 bytes."""
    if _CONTROL.search(header):
        return None
    pair, _, attributes = header.partition(b";")
    name = _pair_name(pair)
    if name is None:
        return None
    return name, parse_attributes(attributes)


@lru_cache(maxsize=4096)
def parse_attributes(attributes: bytes) -> Attributes:
    """Parsed attributes; cached, since a site sends the same attribute string to every visitor."""
    domain = path = samesite = ""
    max_age: int | None = None
    expires: float | None = None
    secure = httponly = False
    for raw in attributes.split(b";"):
        key, _, value = raw.partition(b"=")
        attribute = key.strip(_WS).lower()
        text = value.strip(_WS).decode("latin-1")
        if attribute == b"domain":
            domain = text.lstrip(".").lower()
        elif attribute == b"path":
            path = text if text.startswith("/") else ""
        elif attribute == b"max-age":
            if (text[:1] == "-" and text[1:].isdigit()) or text.isdigit():
                max_age = int(text)
        elif attribute == b"expires":
            expires = _http_date(text)
        elif attribute == b"secure":
            secure = True
        elif attribute == b"httponly":
            httponly = True
        elif attribute == b"samesite":
            samesite = text.capitalize() if text.lower() in ("lax", "strict", "none") else ""
    return Attributes(domain, path or "/", max_age, expires, secure, httponly, samesite)


def _http_date(text: str) -> float | None:
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
