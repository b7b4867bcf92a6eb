"""Matomo `matomo.php` / `piwik.php`: GET query, POST form, or the bulk JSON `{"requests": ["?…", …]}`.

Matomo takes an address (`cip`) and a country only from a request carrying
the site's `token_auth`, so both are set only when a token is configured, and
the request then travels as a POST so the token stays out of access logs.
Without a token Matomo records the proxy's own address and geolocates the
proxy: disable its geolocation, or configure the token. `cip` is the reduced
address with consent, otherwise a daily pseudonym (Matomo also matches visits
by a fingerprint that includes the address; one shared placeholder would merge
different visitors into one visit). Without consent (exempt) the visitor id
(`_id`, `cid`) becomes a 16-hex keyed hash of the day, `uid` and the
cross-visit fields (`_idts`, `_viewts`, `_idvc`, stored campaign and referrer)
go, plugin flags and client hints go, URLs are cleaned, `ua` is generalised.
Browser-sent `token_auth`, `cip`, location and timestamp overrides are never
forwarded: with the site's token they would be trusted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from consentproxy.analytics.model import Dropped, Hit, encode_query, first, json_object, parse_query
from consentproxy.analytics.urls import host_of
from consentproxy.analytics.useragent import generalise, primary_language
from consentproxy.analytics.work import Work

Pairs = list[tuple[str, str]]

#: needs a token_auth to be honoured: only the proxy sets these
TRUSTED_ONLY = frozenset({"token_auth", "cip", "country", "region", "city", "lat", "long", "cdt", "bots"})
EXEMPT_PARAMS = frozenset({
    "idsite", "rec", "apiv", "r", "rand", "action_name", "url", "urlref", "_id", "cid", "_idn", "h", "m", "s", "res",
    "send_image", "ping", "pv_id", "gt_ms", "pf_net", "pf_srv", "pf_tfr", "pf_dm1", "pf_dm2", "pf_onl", "lang", "ua",
    "e_c", "e_a", "e_n", "e_v", "search", "search_cat", "search_count", "link", "download", "c_n", "c_p", "c_t",
    "c_i", "idgoal", "revenue", "ec_st", "ec_tx", "ec_sh", "ec_dt", "ec_items", "ca", "new_visit", "_cvar", "cvar",
})
_DIMENSION = re.compile(r"dimension\d{1,4}")
_FORM = "application/x-www-form-urlencoded"


def anonymise(work: Work) -> Hit | Dropped:
    hit = work.hit
    token = work.policy.matomo_token_auth
    body = hit.body.strip()
    if body.startswith(b"{"):
        return _bulk(work, body, token)
    try:
        form = list(parse_query(body.decode("utf-8"))) if body else []
    except UnicodeDecodeError:
        return Dropped("malformed", "Matomo body is not UTF-8")
    page_host = host_of(first(form, "url") or first(list(hit.query), "url"))
    query = _params(work, list(hit.query), page_host)
    form = _params(work, form, page_host)
    method = hit.method
    if token:  # the token and what it unlocks go in a POST body, never in a URL
        form = query + form + _trusted(work, token)
        query, method = [], "POST"
    encoded = encode_query(form).encode("ascii") if form else b""
    headers = _headers(work, _FORM if encoded else None)
    return Hit(method, hit.path, tuple(query), tuple(headers), encoded, _cip(work, token), hit.received)


def _bulk(work: Work, body: bytes, token: str | None) -> Hit | Dropped:
    payload = json_object(body, "Matomo bulk body")
    if isinstance(payload, Dropped):
        return payload
    requests = payload.get("requests")
    if not isinstance(requests, list) or not all(isinstance(r, str) for r in requests):
        return Dropped("malformed", "Matomo bulk body has no list of requests")
    rewritten = []
    for request in requests:
        prefix, _, raw = request.partition("?")
        pairs = list(parse_query(raw))
        params = _params(work, pairs, host_of(first(pairs, "url")))
        if token:
            params += _trusted(work, None)
        rewritten.append(f"{prefix}?{encode_query(params)}")
    out: dict[str, Any] = {"requests": rewritten}
    if token:
        out["token_auth"] = token
    encoded = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = _headers(work, "application/json")
    return Hit("POST", work.hit.path, (), tuple(headers), encoded, _cip(work, token), work.hit.received)


def _params(work: Work, pairs: Pairs, page_host: str | None) -> Pairs:
    out: Pairs = []
    for name, value in pairs:
        if name in TRUSTED_ONLY:
            continue
        cleaned = _exempt(work, name, value, page_host) if work.exempt else _consented(work, name, value, page_host)
        if cleaned is not None:
            out.append((name, cleaned))
    return out


def _consented(work: Work, name: str, value: str, page_host: str | None) -> str | None:
    if name == "url":
        return work.urls.page(value)
    if name in ("urlref", "_ref"):
        return work.urls.referrer(value, page_host)
    if name in ("link", "download"):
        return work.urls.link(value, page_host)
    if name in ("_cvar", "cvar"):
        return _custom_variables(work, value)
    if name in ("ec_items", "uadata"):
        return _json_param(work, value)
    return work.text(value)


def _exempt(work: Work, name: str, value: str, page_host: str | None) -> str | None:
    if _DIMENSION.fullmatch(name):
        return work.text(value) if name in work.policy.property_allow else None
    if name not in EXEMPT_PARAMS:
        return None  # uid, _idts, _viewts, _idvc, _ref, _rcn, _rck, _refts, plugin flags, uadata, ec_id …
    if name in ("_id", "cid"):
        return visitor_id(work, value)
    if name == "url":
        return work.urls.page(value)
    if name == "urlref":
        return work.urls.referrer(value, page_host)
    if name in ("link", "download"):
        return work.urls.link(value, page_host)
    if name == "ua":
        return generalise(value)
    if name == "lang":
        return primary_language(value)
    if name in ("_cvar", "cvar"):
        return _custom_variables(work, value)
    if name == "ec_items":
        return _json_param(work, value)
    return work.text(value)


def visitor_id(work: Work, original: str) -> str:
    """Matomo's visitor id format: 16 hex digits."""
    return work.digest("matomo-visitor", original)[:8].hex()


def _json_param(work: Work, value: str) -> str | None:
    """A JSON-valued parameter (item lists, client hints), cleaned."""
    try:
        cleaned = work.json_value(json.loads(value))
    except ValueError:
        return None
    if cleaned in (None, {}, []):
        return None
    return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))


def _custom_variables(work: Work, value: str) -> str | None:
    """`{"1": ["name", "value"]}`: a variable whose value had to go goes whole; when exempt, only allowed names."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    kept = {}
    for slot, pair in parsed.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            continue
        if work.exempt and pair[0] not in work.policy.property_allow:
            continue
        name, text = work.text(pair[0]), work.text(pair[1])
        if name and text:
            kept[slot] = [name, text]
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")) if kept else None


def _trusted(work: Work, token: str | None) -> Pairs:
    """What only the proxy may tell Matomo: the address to record and the country."""
    pairs: Pairs = []
    if token:
        pairs.append(("token_auth", token))
    address = work.stand_in_address()
    if address:
        pairs.append(("cip", address))
    country = work.country()
    if country:
        pairs.append(("country", country.lower()))
    return pairs


def _cip(work: Work, token: str | None) -> str:
    return (work.stand_in_address() or "") if token else ""


def _headers(work: Work, content_type: str | None) -> list[tuple[str, str]]:
    headers = work.base_headers(content_type)
    language = work.language()
    if language:
        headers.append(("Accept-Language", language))
    return headers
