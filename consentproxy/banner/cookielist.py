"""The services and cookies the settings layer and the cookie declaration list per category.

From the site's configuration (its services and cookie declarations), from
the vendors the proxy saw on the site (`inventory.vendors`: catalogued or
listed services whose elements it held) and from the cookie inventory (what
the site was really seen setting), so the visitor is informed of vendors and
cookies nobody declared. The notice version is made of the same listing.
Every purpose and lifetime is in the visitor's language (see
banner/wording.py): the site's own words, else the service's or the
catalogue's purpose, else one said from the cookie's category (the Open
Cookie Database's English description only where the site asks for it,
marked `lang`); a lifetime seen in a real Set-Cookie wins over any text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from consentproxy.banner.wording import (
    Purpose,
    catalogue_purpose,
    database_purpose,
    lifetime_text,
    lifetime_words,
)
from consentproxy.config.model import ConsentConfig, ServiceConfig
from consentproxy.consent.texts import CONSENT_COOKIE_PURPOSE, LIFETIME_WORDS
from consentproxy.cookies.classify import CookieClassifier, builtin_services, catalogued, reference
from consentproxy.cookies.inventory import CookieInventory, InventoryEntry

Service = dict[str, Any]


@functools.cache
def catalogue() -> dict[str, ServiceConfig]:
    """The built-in catalogue by service name."""
    return {service.name: service for service in builtin_services()}


class CookieList:
    """Per site; `groups(lang)` is recomputed only when the inventory learns a new cookie name."""

    def __init__(self, site: str, consent: ConsentConfig, controller: Callable[[str], str],
                 inventory: CookieInventory | None = None) -> None:
        self.site = site
        self.consent = consent
        self.controller = controller
        self.classifier = CookieClassifier(consent)
        self.inventory = inventory

    @property
    def version(self) -> int:
        """Changes whenever a new cookie name or vendor is learnt."""
        inventory = self.inventory
        return inventory.known_version + inventory.vendors.version if inventory is not None else 0

    def groups(self, lang: str, detailed: bool = False) -> dict[str, list[Service]]:
        """`detailed` (the cookie declaration): each cookie also says where it is set (`party`: "first" or
        "third") and whether its lifetime was seen in a real Set-Cookie (`observed`), each service its
        purpose in `lang`; the banner's settings layer does without."""
        seen = {e.name: e for e in self.inventory.known(self.site)} if self.inventory is not None else {}
        groups: dict[str, list[Service]] = {c: [] for c in self.consent.category_ids}
        listed: dict[str, Service] = {}  # by name: the vendors listed, where undeclared cookies of theirs go
        services = list(self.consent.services)
        declared = {service.name for service in services}
        vendors = self.inventory.vendors.seen(self.site) if self.inventory is not None else {}
        for name, category in sorted(vendors.items()):
            if name not in declared and category in groups:
                known = catalogue().get(name)
                services.append(known if known is not None and known.category == category
                                else ServiceConfig(name=name, category=category))
        for service in services:
            party = "third" if service.iframes else ""  # embedded content sets cookies on its own host
            cookies = [self._cookie(spec, service.category, Purpose(service.purpose.get(lang, "")), "", seen, lang,
                                    detailed, party) for spec in service.cookies]
            listed[service.name] = _service(service.name, service.provider, service.privacy_url, cookies,
                                            service.purpose.get(lang, "") if detailed else None)
            groups[service.category].append(listed[service.name])
        own: dict[str, list[dict[str, str]]] = {c: [] for c in self.consent.category_ids}
        for declaration in self.consent.cookies:
            spec = declaration.name or (declaration.prefix + "*" if declaration.prefix else declaration.pattern)
            own[declaration.category].append(self._cookie(spec, declaration.category, Purpose(declaration.purpose),
                                                          declaration.lifetime, seen, lang, detailed, "first"))
        undeclared: dict[tuple[str, str], list[dict[str, str]]] = {}
        for name in sorted(seen):
            found = self.classifier.classify(name)
            if name == self.consent.cookie_name or found.source == "declared" or found.category not in groups:
                continue  # listed above already; unknown cookies are blocked, nothing to consent to
            provider = found.service if found.source in ("database", "catalogue") else self.controller(lang)
            purpose = Purpose(catalogue_purpose(found.service, lang) if found.source == "catalogue" else "")
            vendor = listed.get(provider)
            if vendor is not None and any(vendor is s for s in groups[found.category]):
                if not any(c["name"] == name or (c["name"].endswith("*") and name.startswith(c["name"][:-1]))
                           for c in vendor["cookies"]):
                    vendor["cookies"].append(self._cookie(name, found.category, purpose, "", seen, lang, detailed))
                continue
            undeclared.setdefault((found.category, provider), []).append(
                self._cookie(name, found.category, purpose, "", seen, lang, detailed))
        # Our own cookie is necessary too, and the visitor should see it like any other.
        consent_cookie = {"name": self.consent.cookie_name, "purpose": CONSENT_COOKIE_PURPOSE[lang],
                          "lifetime": lifetime_words(self.consent.validity_days * 86400, lang)}
        if detailed:
            consent_cookie |= {"party": "first", "observed": ""}
        own["necessary"].insert(0, consent_cookie)
        for category in self.consent.category_ids:
            if own[category]:
                name = self.controller(lang)
                groups[category].insert(0, _service(name, name, self.consent.privacy_url[lang], own[category],
                                                    "" if detailed else None))
        for (category, provider), cookies in sorted(undeclared.items()):
            groups[category].append(_service(provider, provider, "", cookies,
                                             catalogue_purpose(provider, lang) if detailed else None))
        return groups

    def _cookie(self, spec: str, category: str, purpose: Purpose, lifetime: str, seen: dict[str, InventoryEntry],
                lang: str, detailed: bool = False, party: str = "") -> dict[str, str]:
        """`purpose`: the site's words or its service's in `lang` ("": none); `lifetime`: the site's words."""
        entry = seen.get(spec)
        known = reference(spec.rstrip("*"))
        if not purpose.text:
            in_catalogue = catalogued(spec)
            text = catalogue_purpose(in_catalogue.service, lang) if in_catalogue is not None else ""
            purpose = Purpose(text) if text else database_purpose(
                known, category, lang, self.consent.database_purposes == "original")
        if entry is not None:
            lifetime = lifetime_words(entry.lifetime_seconds, lang)
        elif lifetime:
            lifetime = lifetime_text(lifetime, lang, keep_unread=True)
        else:
            lifetime = lifetime_text(known.retention, lang) if known is not None else LIFETIME_WORDS["unknown"][lang]
        cookie = {"name": spec, "purpose": purpose.text, "lifetime": lifetime}
        if purpose.lang:
            cookie["lang"] = purpose.lang  # the purpose's language, where it is not the view's
        if detailed:
            # Seen set through the proxy: on the site's own host. Else what the site or the database says.
            if entry is not None:
                party = "first"
            elif not party:
                party = "third" if known is not None and "3rd party" in known.domain else "first"
            cookie |= {"party": party, "observed": "1" if entry is not None else ""}
        return cookie


def _service(name: str, provider: str, privacy_url: str, cookies: list[dict[str, str]],
             purpose: str | None = None) -> Service:
    """`purpose`: the service's own, in the visitor's language (the declaration's; None: left out)."""
    service: Service = {"name": name, "provider": provider, "privacy_url": privacy_url, "cookies": cookies}
    if purpose is not None:
        service["purpose"] = purpose
    return service

