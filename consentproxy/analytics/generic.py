"""The generic JSON forwarder: any JSON object, for backends this proxy does not know.

Without knowing the format, only what is recognisable can be removed: keys
named like identifiers (the site's list), e-mail addresses and the visitor's
address in any value, and URLs, cleaned like page URLs when they are the
site's and like referrers when not. Everything else reaches the backend, so
a site using it without consent must send nothing else that identifies.
The country, where known, goes in an `X-Country-Code` header.
"""

from __future__ import annotations

import json

from consentproxy.analytics.model import Dropped, Hit, json_object, normalise_key
from consentproxy.analytics.work import Work

COUNTRY_HEADER = "X-Country-Code"


def anonymise(work: Work) -> Hit | Dropped:
    hit = work.hit
    payload = json_object(hit.body, "body")
    if isinstance(payload, Dropped):
        return payload
    cleaned = work.json_value(work.without_id_keys(payload))
    body = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = work.base_headers("application/json")
    country = work.country()
    if country:
        headers.append((COUNTRY_HEADER, country))
    query: list[tuple[str, str]] = []
    for name, value in hit.query:
        if normalise_key(name) in work.policy.id_keys or work.scrubber.is_dirty(name):
            continue
        text = work.text(value)
        if text is not None:
            query.append((name, text))
    return Hit(hit.method, hit.path, tuple(query), tuple(headers), body, "", hit.received)
