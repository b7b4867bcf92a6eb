"""The notice version of a site: what visitors were shown, stored once per revision.

Every consent event points at one, so a record proves which texts, purposes,
recipients and cookies the visitor decided on. It holds no personal data and
is addressed by the SHA-256 of its content: the same configuration gives the
same id in every worker and instance.
"""

from __future__ import annotations

from typing import Any

from consentproxy.banner.cookielist import CookieList
from consentproxy.config.model import CATEGORY_IDS, LANGUAGES, SiteConfig
from consentproxy.consent.texts import BANNER_TEXTS, controller_name
from consentproxy.records.model import NoticeVersion

#: GDPR art. 6(1)(a) for everything optional; the necessary category rests on the
#: ePrivacy exemption for what is strictly necessary (art. 5(3), Telecommunicatiewet 11.7a)
LEGAL_BASIS = {"necessary": "strictly-necessary-exemption"} | {c: "consent" for c in CATEGORY_IDS[1:]}
DATA_CATEGORIES = ["pseudonymous consent id", "consent choices", "browser family and major version",
                   "cookies and similar identifiers of the services consented to"]


def site_notice(site: SiteConfig) -> NoticeVersion:
    consent = site.consent
    controller = consent.controller or site.name

    def shown(lang: str) -> str:  # the name the banner shows
        return controller_name(consent.controller, site.hosts, lang)

    listing = CookieList(site.name, consent, shown)  # configuration only: the same in every process

    def text(lang: str, key: str, **values: str) -> str:
        template = consent.texts.get(key, {}).get(lang) or BANNER_TEXTS[key][lang]
        return template.format(**values) if values else template

    texts = {}
    for lang in LANGUAGES:
        lines = [text(lang, "title"), text(lang, "text", controller=shown(lang))]
        lines += [f"{c.label[lang]}: {c.description[lang]}" for c in consent.categories]
        texts[lang] = "\n".join(lines)
    # Where a site asks differently by place, the first layer's other wordings were shown too.
    regime_texts = {regime: {lang: text(lang, key, controller=shown(lang)) for lang in LANGUAGES}
                    for regime, key, places in (("opt-out", "optout_text", site.opt_out),
                                                ("notice-only", "notice_text", site.notice_only)) if places}
    purposes: list[dict[str, Any]] = [
        {"id": c.id, "label": c.label, "description": c.description, "legal_basis": LEGAL_BASIS.get(c.id, "consent"),
         "services": [s.name for s in consent.services if s.category == c.id]}
        for c in consent.categories
    ]
    cookies = [{"category": category, "service": service["name"], **cookie}
               for category, services in listing.groups("en").items()
               for service in services for cookie in service["cookies"]]
    content = {
        "texts": texts,
        "purposes": purposes,
        "data_categories": DATA_CATEGORIES,
        "recipients": sorted({s.provider or s.name for s in consent.services}),
        "storage_location": consent.storage_location,
        "retention": f"P{consent.validity_days}D",
        "controller": {"name": controller, "privacy_url": consent.privacy_url},
        "jurisdiction": consent.jurisdiction,
        "cookies": cookies,
        "withdrawal": "the re-open control on every page, or any element marked data-consent-open",
        "validity": f"P{consent.validity_days}D",
        "languages": list(LANGUAGES),
        "site": site.name,
        "hosts": list(site.hosts),
    }
    if regime_texts:
        content["regimes"] = {"opt-out": list(site.opt_out), "notice-only": list(site.notice_only),
                              "texts": regime_texts}
    return NoticeVersion.create(site.name, consent.revision, content)
