"""Google Analytics 4: `/g/collect` (query string, batched hits in the body) and the Measurement Protocol.

With consent the hit goes on as sent, except e-mails and the visitor's
address anywhere, `_uip` (the truncated address, or 0.0.0.0: GA4 has no
country override, it can only geolocate `_uip`) and the consent fields.
Without consent (exempt) only known measurement parameters pass: the client
id and session id become keyed hashes of the day, the session count goes to
1 (it tells how often the visitor came before), `uid`, user properties and
client hints go, URLs are cleaned. `gcs`, `gcd` and `npa` always state the
visitor's real choice; note that GA4 treats a hit with analytics denied as a
cookieless ping and models it rather than counting it as a user.
"""

from __future__ import annotations

import json
import re
from typing import Any

from consentproxy.analytics.model import Dropped, Hit, encode_query, first, json_object, parse_query
from consentproxy.analytics.urls import host_of
from consentproxy.analytics.work import NEUTRAL_IPV4, Work

Pairs = list[tuple[str, str]]

CONSENT_FIELDS = frozenset({"gcs", "gcd", "npa"})
#: enhanced-conversion user data (hashed e-mail, phone): advertising, only with marketing consent
AD_USER_DATA = frozenset({"em", "ecid"})
#: what an exempt hit may carry besides events and items; everything unknown goes
EXEMPT_PARAMS = frozenset({
    "v", "tid", "gtm", "_p", "_gaz", "_z", "tfd", "frm", "_eu", "_ee", "_et", "_s", "_ss", "_fv", "_nsi", "seg",
    "sct", "sid", "cid", "en", "dl", "dr", "dt", "ul", "sr", "cu", "dma", "dma_cps", "pscdl", "gcu", "gcut", "are",
    "_c", "ir", "_dbg", "ngs", "_tu",
})
_ITEM = re.compile(r"pr\d{1,3}")
_GCD = re.compile(r"(\d+)([a-z])(\d+)([a-z])(\d+)([a-z])(\d+)([a-z])(\d+)")
# gcd letters: how a signal was set (default, update) and its final state
_GCD_GRANTED = frozenset("trnv")
_GCD_DENIED = frozenset("pqmu")
# structural Measurement Protocol event parameters, kept without consent (cleaned)
_MP_PAGE = {"page_location", "page_referrer", "page_title"}


def anonymise(work: Work) -> Hit | Dropped:
    if work.hit.path.rstrip("/").endswith("/mp/collect"):
        return _measurement_protocol(work)
    return _collect(work)


# --- /g/collect --------------------------------------------------------------------------------------

def _collect(work: Work) -> Hit | Dropped:
    hit = work.hit
    try:
        lines = [parse_query(line) for line in hit.body.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        return Dropped("malformed", "GA4 body is not UTF-8")
    shared = list(hit.query)
    shared_cid = first(shared, "cid")
    page_host = host_of(first(shared, "dl") or next((v for line in lines if (v := first(line, "dl"))), None))

    query = _params(work, shared, shared_cid, page_host)
    gcd = first(shared, "gcd")
    query += [("gcs", gcs(work)), ("gcd", consent_gcd(work, gcd)), ("npa", _npa(work))]
    reduced = work.reduced_address()
    query.append(("_uip", reduced or NEUTRAL_IPV4))

    body_lines = []
    for line in lines:
        pairs = list(line)
        params = _params(work, pairs, first(pairs, "cid") or shared_cid, page_host)
        if any(name in CONSENT_FIELDS for name, _ in pairs):  # a line's own consent fields override the URL's
            params += [("gcs", gcs(work)), ("gcd", consent_gcd(work, first(pairs, "gcd") or gcd)),
                       ("npa", _npa(work))]
        body_lines.append(encode_query(params))
    body = "\n".join(body_lines).encode("utf-8")
    headers = work.base_headers("text/plain;charset=UTF-8" if body else None)
    return Hit(hit.method, hit.path, tuple(query), tuple(headers), body, reduced or "", hit.received)


def _params(work: Work, pairs: Pairs, cid: str | None, page_host: str | None) -> Pairs:
    out: Pairs = []
    for name, value in pairs:
        if name in CONSENT_FIELDS or name == "_uip":
            continue  # set from the real state and the policy, never taken from the browser
        if work.exempt:
            cleaned = _exempt_param(work, name, value, cid, page_host)
        else:
            cleaned = _consented_param(work, name, value, page_host)
        if cleaned is not None:
            out.append((name, cleaned))
    return out


def _consented_param(work: Work, name: str, value: str, page_host: str | None) -> str | None:
    if name in AD_USER_DATA and not work.context.marketing:
        return None
    if name == "dl":
        return work.urls.page(value)
    if name == "dr":
        return work.urls.referrer(value, page_host)
    return work.text(value)


def _exempt_param(work: Work, name: str, value: str, cid: str | None, page_host: str | None) -> str | None:
    if name not in EXEMPT_PARAMS:
        if name.startswith(("ep.", "epn.")):
            return work.text(value) if name.split(".", 1)[1] in work.policy.property_allow else None
        if _ITEM.fullmatch(name):
            return work.text(value)
        return None  # uid, up.*/upn.*, client hints, anything new or unknown
    if name == "cid":
        return client_id(work, value)
    if name == "sid":
        return session_id(work, cid, value)
    if name == "sct":
        return "1"
    if name == "dl":
        return work.urls.page(value)
    if name == "dr":
        return work.urls.referrer(value, page_host)
    return work.text(value)


def client_id(work: Work, original: str) -> str:
    """A GA-shaped client id ("random.timestamp") from the original id and today's key."""
    number = int.from_bytes(work.digest("ga4-cid", original)[:8], "big") % 9_000_000_000 + 1_000_000_000
    return f"{number}.{work.day_start()}"


def session_id(work: Work, cid: str | None, original: str) -> str:
    """The same session id for every hit of a session, keyed by client: no one else's session collides."""
    number = int.from_bytes(work.digest("ga4-sid", f"{cid or ''}.{original}")[:8], "big")
    return str(number % 9_000_000_000 + 1_000_000_000)


def gcs(work: Work) -> str:
    """G1 + ad_storage + analytics_storage."""
    return f"G1{int(work.context.marketing)}{int(work.context.statistics)}"


def consent_gcd(work: Work, incoming: str | None) -> str:
    """Consent mode v2: the browser's gcd with each signal's letter corrected to the real state.

    Letters whose final state is already right are kept (they also say how the
    state was reached); a wrong or unset one becomes "granted/denied by update".
    """
    truth = (work.context.marketing, work.context.statistics, work.context.marketing, work.context.marketing)
    match = _GCD.fullmatch(incoming or "")
    if match is None:
        letters = ["n" if granted else "m" for granted in truth]
        return f"11{letters[0]}1{letters[1]}1{letters[2]}1{letters[3]}5"
    parts = list(match.groups())
    for slot, granted in zip((1, 3, 5, 7), truth, strict=True):
        letter = parts[slot]
        if not ((granted and letter in _GCD_GRANTED) or (not granted and letter in _GCD_DENIED)):
            parts[slot] = "n" if granted else "m"
    return "".join(parts)


def _npa(work: Work) -> str:
    return "0" if work.context.marketing else "1"



# --- Measurement Protocol ----------------------------------------------------------------------------

def _measurement_protocol(work: Work) -> Hit | Dropped:
    hit = work.hit
    payload = json_object(hit.body, "Measurement Protocol body")
    if isinstance(payload, Dropped):
        return payload
    if not isinstance(payload.get("events"), list):
        return Dropped("malformed", "Measurement Protocol body has no events")
    query: Pairs = []
    for name, value in hit.query:
        if name == "api_secret" and work.policy.ga4_api_secret:
            value = work.policy.ga4_api_secret
        elif name not in ("measurement_id", "api_secret", "firebase_app_id"):
            continue
        query.append((name, value))

    original_cid = payload.get("client_id") if isinstance(payload.get("client_id"), str) else None
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in ("consent", "non_personalized_ads", "ip_override", "user_location", "events"):
            continue  # set below from the real state, the policy and GeoIP
        if key == "user_data" and (work.exempt or not work.context.marketing):
            continue  # hashed e-mail and phone for ads
        if work.exempt:
            if key in ("client_id", "app_instance_id") and isinstance(value, str):
                out[key] = client_id(work, value)
            elif key in ("timestamp_micros", "validation_behavior"):
                out[key] = value
            continue  # user_id, user_properties, device, user_agent and anything unknown
        cleaned = work.json_value(value)
        if cleaned is not None:
            out[key] = cleaned
    out["events"] = [event for event in (_mp_event(work, e, original_cid) for e in payload["events"]) if event]
    out["consent"] = {
        "ad_user_data": "GRANTED" if work.context.marketing else "DENIED",
        "ad_personalization": "GRANTED" if work.context.marketing else "DENIED",
    }
    out["non_personalized_ads"] = not work.context.marketing
    reduced = work.reduced_address()
    if reduced:
        out["ip_override"] = reduced
    country = work.country()
    if country:
        out["user_location"] = {"country_id": country}
    body = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = [("Content-Type", "application/json")]
    return Hit(hit.method, hit.path, tuple(query), tuple(headers), body, reduced or "", hit.received)


def _mp_event(work: Work, event: Any, cid: str | None) -> dict[str, Any] | None:
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        return None
    params = event.get("params") if isinstance(event.get("params"), dict) else {}
    assert isinstance(params, dict)
    kept: dict[str, Any] = {}
    for key, value in params.items():
        if key == "page_location" and isinstance(value, str):
            cleaned: Any = work.urls.page(value)
        elif key == "page_referrer" and isinstance(value, str):
            cleaned = work.urls.referrer(value, host_of(params.get("page_location")))
        elif work.exempt and key == "session_id":
            cleaned = session_id(work, cid, str(value))
        elif work.exempt and key not in _MP_PAGE | {"engagement_time_msec", "items"} | work.policy.property_allow:
            continue
        else:
            cleaned = work.json_value(value)
        if cleaned is not None:
            kept[key] = cleaned
    name = work.text(event["name"])
    return {"name": name, "params": kept} if name else None
