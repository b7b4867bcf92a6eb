"""What goes into the anonymiser and what comes out: a hit, the site's policy, the visitor's state.

Pure data, so the endpoints (which read requests and forward) and the
anonymiser (which decides what may leave) meet at a small, testable surface.
"""

from __future__ import annotations

import functools
import json
import re
from codecs import escape_decode
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

from consentproxy.geo.lookup import Location

Mode = Literal["consented", "exempt", "drop"]
IPv4Mode = Literal["drop", "v4/24", "v4/16"]
IPv6Mode = Literal["drop", "v6/32", "v6/48"]
ReferrerMode = Literal["none", "origin"]
DropReason = Literal["not_consented", "malformed", "unsupported", "identify", "leak"]

MODES: tuple[Mode, ...] = ("consented", "exempt", "drop")
IPV4_MODES: tuple[IPv4Mode, ...] = ("drop", "v4/24", "v4/16")
IPV6_MODES: tuple[IPv6Mode, ...] = ("drop", "v6/32", "v6/48")
REFERRER_MODES: tuple[ReferrerMode, ...] = ("none", "origin")

#: campaign parameters kept in page URLs without consent: they name a campaign, not a person
DEFAULT_QUERY_ALLOW = frozenset({"utm_source", "utm_medium", "utm_campaign"})
#: event properties kept without consent (GA4 ep./epn., Matomo dimensions and custom variables,
#: Plausible props, Umami data): amounts and kinds, never order numbers or anything a shop can join
DEFAULT_PROPERTY_ALLOW = frozenset({
    "currency", "value", "tax", "shipping", "content_type", "content_group", "method", "percent_scrolled",
})
#: JSON keys the generic forwarder removes, compared without case, "-" or "_"
DEFAULT_ID_KEYS = frozenset({
    "user_id", "uid", "email", "e-mail", "mail", "ip", "ip_address", "client_id", "visitor_id", "session_id",
    "device_id", "anonymous_id", "distinct_id", "phone",
})

MIN_KEY_BYTES = 16


def normalise_key(name: str) -> str:
    """`userId`, `user-id` and `USER_ID` are one name to the generic forwarder."""
    return name.lower().replace("-", "").replace("_", "")


def parse_query(raw: str) -> tuple[tuple[str, str], ...]:
    """A query string as ordered pairs, duplicates and blank values kept (a dict would lose them).

    What `parse_qsl(raw, keep_blank_values=True, errors="replace")` returns, at
    a third of its cost: a GA4 hit has thirty parameters and most need no
    decoding, which `parse_qsl` does anyway, twice per pair.
    """
    pairs = []
    for piece in raw.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_decode(name), _decode(value)))
    return tuple(pairs)


def _decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return percent_decode(text) if "%" in text else text


def percent_decode(text: str) -> str:
    """What `urllib.parse.unquote(text)` returns (UTF-8, errors replaced), decoded in C.

    `unquote` runs a Python loop per escape; a GA4 hit's URLs hold dozens, in
    two or three layers. Written as "\\xHH" escapes, the same bytes come out of
    the codec behind bytes literals; anything that is no clean escape ("%zz",
    a trailing "%") is left to `unquote` itself.
    """
    if "%" not in text:
        return text
    try:
        raw = escape_decode(text.replace("\\", "\\\\").replace("%", "\\x").encode("utf-8"))[0]
    except (ValueError, UnicodeEncodeError):
        return unquote(text, errors="replace")
    return raw.decode("utf-8", "replace")


def first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of a parameter."""
    return next((value for key, value in pairs if key == name), None)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-")
# One string per byte, so encoding a value is a C-level map instead of quote()'s loop per byte.
_ESCAPES = tuple(chr(byte) if byte in _SAFE_BYTES else f"%{byte:02X}" for byte in range(256))
_ESCAPES_PLUS = tuple("+" if byte == 0x20 else escape for byte, escape in enumerate(_ESCAPES))


def encode_component(text: str, *, plus: bool = False) -> str:
    """Percent-encoding as `quote(text, safe="")` (or `quote_plus`) writes it, UTF-8, at a fraction of its cost."""
    if text.isascii() and (text.isalnum() or _UNRESERVED.fullmatch(text)):
        return text
    if len(text) > _CACHED_LENGTH:
        return _escape(text, plus)
    return _escape_cached(text, plus)


#: values worth remembering: page URLs, titles and event names repeat from hit to hit, ids do not (and are safe)
_CACHED_LENGTH = 512


def _escape(text: str, plus: bool) -> str:
    return "".join(map((_ESCAPES_PLUS if plus else _ESCAPES).__getitem__, text.encode("utf-8")))


# Only anonymised values are encoded, so the cache (in memory only) holds what the backends get, plus the
# rare value of a hit the last leak check then drops.
_escape_cached = functools.lru_cache(maxsize=4096)(_escape)


_SAFE_PAIR = re.compile(r"[A-Za-z0-9_.~-]*=[A-Za-z0-9_.~-]*")


def encode_query(pairs: Iterable[tuple[str, str]], *, plus: bool = False) -> str:
    """Pairs as a query string, spaces as %20 (or "+" with `plus`, as forms and search engines write them).

    Most pairs need no escape at all; one look at "name=value" tells (a second
    "=" in either fails it), so only the others are encoded part by part.
    """
    out = []
    for name, value in pairs:
        pair = f"{name}={value}"
        if _SAFE_PAIR.fullmatch(pair) is None:
            pair = f"{encode_component(name, plus=plus)}={encode_component(value, plus=plus)}"
        out.append(pair)
    return "&".join(out)


@dataclass(frozen=True, slots=True)
class Hit:
    """One analytics request, as received or as it is to be forwarded.

    Headers of a forwarded hit are the complete list to send: the forwarder adds
    none of the visitor's (no Cookie, Referer, X-Forwarded-For of its own).
    `client_ip` of a forwarded hit is what the backend is told about the
    address (reduced, pseudonym, or empty), never the visitor's address.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    client_ip: str = ""
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    _encoded: str | None = field(default=None, init=False, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first header of that name, case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def query_string(self) -> str:
        """Encoded once: the anonymiser's last check and the forwarder share the work."""
        if self._encoded is None:
            object.__setattr__(self, "_encoded", encode_query(self.query))
        assert self._encoded is not None
        return self._encoded


@dataclass(frozen=True, slots=True)
class Dropped:
    """The hit is not forwarded; `reason` is a small fixed set so it can label a metric."""

    reason: DropReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A site's anonymisation settings, built once from its configuration."""

    ipv4: IPv4Mode = "drop"
    ipv6: IPv6Mode = "drop"
    query_allow: frozenset[str] = DEFAULT_QUERY_ALLOW
    property_allow: frozenset[str] = DEFAULT_PROPERTY_ALLOW
    referrer: ReferrerMode = "none"
    own_hosts: frozenset[str] = frozenset()
    id_keys: frozenset[str] = DEFAULT_ID_KEYS
    matomo_token_auth: str | None = None
    ga4_api_secret: str | None = None
    country_when_exempt: bool = True

    def __post_init__(self) -> None:
        if self.ipv4 not in IPV4_MODES:
            raise ValueError(f"ipv4 must be one of {', '.join(IPV4_MODES)}, not {self.ipv4!r}")
        if self.ipv6 not in IPV6_MODES:
            raise ValueError(f"ipv6 must be one of {', '.join(IPV6_MODES)}, not {self.ipv6!r}")
        if self.referrer not in REFERRER_MODES:
            raise ValueError(f"referrer must be one of {', '.join(REFERRER_MODES)}, not {self.referrer!r}")
        # Compared as the anonymiser compares them: hosts without case or a leading "www.",
        # URL parameters without case, id keys without case or separators.
        object.__setattr__(self, "own_hosts", frozenset(_bare_host(h) for h in self.own_hosts if h.strip()))
        object.__setattr__(self, "query_allow", frozenset(n.lower() for n in self.query_allow))
        object.__setattr__(self, "id_keys", frozenset(normalise_key(k) for k in self.id_keys))


@dataclass(frozen=True, slots=True)
class Context:
    """What the caller knows about this hit: the visitor's real consent, where they are, today's key.

    `mode` is the caller's decision (consented when statistics is granted,
    exempt when it is not but the site declares exempt measurement, drop
    otherwise); `statistics` and `marketing` are the visitor's real state,
    which the consent fields sent on always follow, whatever the mode.
    """

    mode: Mode
    day_key: bytes
    statistics: bool = False
    marketing: bool = False
    location: Location | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "consented" and not self.statistics:
            raise ValueError("consented mode needs statistics consent")
        if len(self.day_key) < MIN_KEY_BYTES:
            raise ValueError(f"the day key needs at least {MIN_KEY_BYTES} bytes")


def _bare_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def json_object(body: bytes, what: str) -> dict[str, Any] | Dropped:
    """A JSON body that must be an object, or why the hit goes no further (`what` names it in the reason)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Dropped("malformed", f"{what} is not JSON")
    if not isinstance(payload, dict):
        return Dropped("malformed", f"{what} is not a JSON object")
    return payload
