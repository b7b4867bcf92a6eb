"""Umami `POST /api/send`: `{type, payload: {website, hostname, url, referrer, title, screen, language, name, data}}`.

Umami takes `payload.ip` and `payload.userAgent` as overrides, but a payload
ip switches off its location headers (`CF-IPCountry`), and an address it
deems local gets no location at all. Hence: with consent and a truncating
policy, `payload.ip` is the truncated address and Umami geolocates it; in
every other case there is no payload ip, `CF-Connecting-IP` carries a daily
pseudonym from 2001:db8::/32 (Umami's visitor hash needs a distinct address
per visitor) and `CF-IPCountry` the GeoIP country. Umami must not have
SKIP_LOCATION_HEADERS set, and nothing in front of it may overwrite those
headers. Without consent (exempt) `identify` calls (they tie an id to the
session) are dropped, `id` goes, `data` keeps allow-listed keys only.
"""

from __future__ import annotations

import json
from typing import Any

from consentproxy.analytics.model import Dropped, Hit, json_object
from consentproxy.analytics.useragent import primary_language
from consentproxy.analytics.work import Work

_EXEMPT_KEYS = frozenset({
    "website", "hostname", "url", "referrer", "title", "screen", "language", "name", "data", "tag", "timestamp",
    "lcp", "inp", "cls", "fcp", "ttfb",
})


def anonymise(work: Work) -> Hit | Dropped:
    hit = work.hit
    envelope = json_object(hit.body, "Umami body")
    if isinstance(envelope, Dropped):
        return envelope
    if not isinstance(envelope.get("payload"), dict):
        return Dropped("malformed", "Umami body has no payload")
    kind = envelope.get("type")
    if not isinstance(kind, str):
        return Dropped("malformed", "Umami body has no type")
    if work.exempt and kind == "identify":
        return Dropped("identify", "Umami identify without statistics consent")
    payload: dict[str, Any] = envelope["payload"]
    hostname = payload.get("hostname") if isinstance(payload.get("hostname"), str) else None

    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in ("ip", "userAgent"):
            continue  # set below; never the browser's word
        if work.exempt and key not in _EXEMPT_KEYS:
            continue
        if key == "url" and isinstance(value, str):
            cleaned: Any = work.urls.page(value)
        elif key == "referrer" and isinstance(value, str):
            cleaned = work.urls.referrer(value, hostname) or ""
        elif key == "data":
            cleaned = work.properties(value)
        elif key == "language" and work.exempt and isinstance(value, str):
            cleaned = primary_language(value)
        else:
            cleaned = work.json_value(value)
        if cleaned is not None:
            out[key] = cleaned

    agent = work.user_agent()
    if agent:
        out["userAgent"] = agent
    headers = [("Content-Type", "application/json")]
    if agent:
        headers.insert(0, ("User-Agent", agent))
    reduced = work.reduced_address()
    address = reduced
    if reduced:
        out["ip"] = reduced
    else:
        address = work.stand_in_address()
        if address:
            headers.append(("CF-Connecting-IP", address))
        country = work.country()
        if country:
            headers.append(("CF-IPCountry", country))
    rewritten: dict[str, Any] = {"type": kind, "payload": out}
    if not work.exempt:
        extras = {k: v for k, v in envelope.items() if k not in ("type", "payload")}
        rewritten.update(work.json_value(extras))
    body = json.dumps(rewritten, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Hit(hit.method, hit.path, (), tuple(headers), body, address or "", hit.received)
