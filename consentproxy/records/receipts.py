"""Consent receipts in the shape of the Kantara Initiative Consent Receipt (v1.1).

A receipt is what a person or an auditor can read without knowing our schema:
who the controller is, under which jurisdiction and privacy statement, which
purposes were consented to, when. It is built only from a record and the
notice version it points at, deterministically, so a verifier holding both (the
export's manifest carries the notices) can rebuild every receipt byte for byte
and detect an edit of any field, not only of the chained ones.

Kantara v1.1 has no notion of refusal, withdrawal or per-purpose choices, so
`services[].purposes` lists the purposes the event grants, and the extension
object `consentproxy` carries the event type, method, every choice, the notice
version and the exported record itself (with its hash and chain fields).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consentproxy.records.model import ConsentEvent, NoticeVersion, to_ms

KANTARA_VERSION = "KI-CR-v1.1.0"
ERASED = "(erased)"

_COLLECTION = {
    "accept_all": "web consent banner: accept all",
    "reject_all": "web consent banner: reject all",
    "save_selection": "web consent banner: saved selection",
    "withdraw": "web consent banner: withdrawal",
    "gpc_signal": "Global Privacy Control signal sent by the browser",
    "expiry": "system: the consent's validity ended",
}


def receipt_language(notice: NoticeVersion | None) -> str:
    """English when the notice has it (the lingua franca of an audit), else its first language."""
    if notice is None:
        return "en"
    texts: Mapping[str, str] = notice.content.get("texts") or {}
    return "en" if "en" in texts else min(texts, default="en")


def recipients(notice: NoticeVersion | None) -> list[dict[str, str]]:
    """The recipients a notice named: name, provider, category, privacy URL (older notices name providers
    only, as plain strings)."""
    found = []
    for item in (notice.content.get("recipients") or ()) if notice is not None else ():
        if isinstance(item, Mapping):
            found.append({key: str(item.get(key) or "") for key in ("name", "provider", "category", "privacy_url")})
        else:
            found.append({"name": str(item), "provider": str(item), "category": "", "privacy_url": ""})
    return found


def recipient_line(notice: NoticeVersion | None) -> str:
    """`Google Analytics (statistics; Google Ireland Ltd.), …` for a verifier's report."""
    return ", ".join(f"{r['name']} ({'; '.join(x for x in (r['category'], r['provider']) if x and x != r['name'])})"
                     if r["category"] or r["provider"] != r["name"] else r["name"] for r in recipients(notice)) \
        or "none"


def _localised(value: Any, language: str) -> str:
    """A label given per language (a mapping) or once (a string)."""
    if isinstance(value, Mapping):
        chosen = value.get(language) or next(iter(value.values()), "")
        return str(chosen)
    return "" if value is None else str(value)


def _absolute(url: str, content: Mapping[str, Any]) -> str:
    """A site-relative privacy URL made absolute with the site's first plain host name."""
    if not url.startswith("/") or url.startswith("//"):
        return url
    hosts = [h for h in content.get("hosts") or () if isinstance(h, str) and "*" not in h]
    return f"https://{hosts[0]}{url}" if hosts else url


def receipt(event: ConsentEvent, notice: NoticeVersion | None, record: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt of one event; `record` is the event as exported (chain fields included)."""
    content: Mapping[str, Any] = notice.content if notice is not None else {}
    language = receipt_language(notice)
    controller: Mapping[str, Any] = content.get("controller") or {}
    policy = _absolute(_localised(controller.get("privacy_url", ""), language), content)
    validity = str(content.get("validity") or content.get("retention") or "")
    data_categories = [str(c) for c in content.get("data_categories") or ()]
    purposes = []
    described = {str(p.get("id")): p for p in content.get("purposes") or () if isinstance(p, Mapping)}
    order = {purpose_id: index for index, purpose_id in enumerate(described)}
    for purpose_id in sorted(event.granted, key=lambda p: (order.get(p, len(order)), p)):
        purpose = described.get(purpose_id, {})
        services = [str(s) for s in purpose.get("services") or ()]
        legal_basis = str(purpose.get("legal_basis", ""))
        # Only what rests on another basis than consent (the strictly necessary) is not a consent.
        exempt = purpose_id == "necessary" or legal_basis not in ("", "consent")
        purposes.append({
            "purpose": _localised(purpose.get("label"), language) or purpose_id,
            "purposeCategory": [purpose_id],
            "consentType": "NOT-REQUIRED" if exempt else "EXPLICIT",
            "piiCategory": data_categories,
            "primaryPurpose": purpose_id == "necessary",
            "termination": validity,
            "thirdPartyDisclosure": bool(services),
            "thirdPartyName": ", ".join(services),
            "legalBasis": legal_basis,
        })
    controllers = []
    if controller:
        controllers.append({
            "piiController": str(controller.get("name", "")), "onBehalf": False,
            "contact": str(controller.get("contact", "")), "address": str(controller.get("address", "")),
            "email": str(controller.get("email", "")), "phone": str(controller.get("phone", "")),
            "piiControllerUrl": policy,
        })
    return {
        "version": KANTARA_VERSION,
        "jurisdiction": str(content.get("jurisdiction", "")),
        "consentTimestamp": to_ms(event.time) // 1000,
        "collectionMethod": _COLLECTION.get(event.method, event.method),
        "consentReceiptID": event.record_id,
        "language": language,
        "piiPrincipalId": event.principal if event.principal is not None else ERASED,
        "piiControllers": controllers,
        "policyUrl": policy,
        "services": [{"service": str(content.get("site") or event.site), "purposes": purposes}],
        "sensitive": False,
        "spiCat": [],
        "consentproxy": {
            "event_type": event.event_type,
            "method": event.method,
            "choices": dict(event.choices),
            "expires_at": record["expires_at"],
            "notice": {
                "id": event.notice_id,
                "revision": notice.revision if notice is not None else None,
                "text_sha256": notice.text_digests if notice is not None else {},
                "shown": dict(notice.content.get("shown") or {}) if notice is not None else {},
                "recipients": recipients(notice),
            },
            "hash": event.hash,
            "record": dict(record),
        },
    }
