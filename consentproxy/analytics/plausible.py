"""Plausible `POST /api/event`: `{name, url, domain, referrer, props, revenue}` (or the script's n/u/d/r/p/$).

Plausible counts a visitor as a daily hash of address + user agent and
geolocates the address; it has no country field. So the address header
decides both: with consent and a truncating policy, `X-Forwarded-For` is the
truncated address (Plausible finds the country, but everyone in that /24 with
the same browser counts as one visitor); otherwise it is a daily pseudonym
from the documentation prefix 2001:db8::/32 (visitors count right, the
country is unknown). Plausible drops hits from data-centre addresses, never
from the documentation prefix. Without consent (exempt) URLs and the referrer
are cleaned, props are kept only for allow-listed keys, and the user agent is
generalised.
"""

from __future__ import annotations

import json
from typing import Any

from consentproxy.analytics.model import Dropped, Hit, json_object
from consentproxy.analytics.urls import host_of
from consentproxy.analytics.work import Work

_ALIASES = {"n": "name", "u": "url", "d": "domain", "r": "referrer", "p": "props", "m": "props", "meta": "props",
            "$": "revenue", "h": "hashMode", "i": "interactive"}
_EXEMPT_KEYS = frozenset({"name", "url", "domain", "referrer", "props", "revenue", "hashMode", "interactive"})


def anonymise(work: Work) -> Hit | Dropped:
    hit = work.hit
    payload = json_object(hit.body, "Plausible body")
    if isinstance(payload, Dropped):
        return payload
    fields: dict[str, Any] = {_ALIASES.get(str(key), str(key)): value for key, value in payload.items()}
    url = fields.get("url")
    if not isinstance(url, str):
        return Dropped("malformed", "Plausible event has no url")
    page_host = host_of(url)
    hash_mode = fields.get("hashMode") in (1, True, "1")

    out: dict[str, Any] = {}
    for key, value in fields.items():
        if work.exempt and key not in _EXEMPT_KEYS:
            continue
        if key == "url":
            cleaned: Any = work.urls.page(value, fragment="route" if hash_mode else None)
        elif key == "referrer":
            cleaned = work.urls.referrer(value, page_host) if isinstance(value, str) else None
        elif key == "props":
            cleaned = _props(work, value)
        elif key == "domain":
            cleaned = value if isinstance(value, str) and not work.scrubber.is_dirty(value) else None
        else:
            cleaned = work.json_value(value)
        if cleaned is not None:
            out[key] = cleaned
    if "url" not in out:
        return Dropped("malformed", "nothing is left of the Plausible url")

    body = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = work.base_headers("application/json")
    address = work.stand_in_address()
    if address:
        headers.append(("X-Forwarded-For", address))
    return Hit(hit.method, hit.path, (), tuple(headers), body, address or "", hit.received)


def _props(work: Work, value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):  # the script may send props as a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return work.properties(value)
