"""The notice version of a site: what visitors were shown, stored once per content.

Every consent event points at one, so a record proves which texts, purposes,
recipients and cookies the visitor decided on. It holds no personal data and
is addressed by the SHA-256 of its content: the same content gives the same id
in every worker and instance.

Its recipients are the site's declared services and every catalogued or
listed vendor the proxy has seen on the site (`inventory.vendors`, and cookies
the inventory classified to a vendor): the same listing the settings layer
shows (`CookieList.groups`), so what the visitor reads is what is proven. The
version an event points at is the one rendered to that visitor: their
language and first-layer variant (`shown`) and the vendor list of that moment.
When a vendor appears that the notice did not name, a new version is made,
logged, and stored; `stale` tells which of a visitor's granted categories now
name a vendor their consent never did (the cookie carries per granted
category short digests of the vendors named then: `told_of`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from consentproxy.banner.cookielist import CookieList, Service
from consentproxy.config.model import CATEGORY_IDS, LANGUAGES, SiteConfig
from consentproxy.consent.texts import BANNER_TEXTS, controller_name
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.records import RecordStore, RecordWriter, StoreError
from consentproxy.records.model import NoticeVersion

logger = logging.getLogger("consentproxy.consent")

#: GDPR art. 6(1)(a) for everything optional; the necessary category rests on the
#: ePrivacy exemption for what is strictly necessary (art. 5(3), Telecommunicatiewet 11.7a)
LEGAL_BASIS = {"necessary": "strictly-necessary-exemption"} | {c: "consent" for c in CATEGORY_IDS[1:]}
DATA_CATEGORIES = ["pseudonymous consent id", "consent choices", "browser family and major version",
                   "cookies and similar identifiers of the services consented to"]


#: bytes of SHA-256 per vendor name in the consent cookie: 1 in 16 million that a new vendor looks known
DIGEST_BYTES = 3
#: notice versions kept by id, for a decision sent from a page rendered a while ago
_RENDERED_LIMIT = 64


def vendor_digest(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8")).digest()[:DIGEST_BYTES]


def storing(records: RecordWriter) -> Callable[[list[NoticeVersion]], None]:
    """An `on_new` that stores new notice versions in the consent store, in the writer's thread (called on
    the event loop; without a running loop, e.g. in a test, they are stored when first decided on)."""
    tasks: set[asyncio.Task[None]] = set()

    def store(versions: list[NoticeVersion]) -> None:
        def put(db: RecordStore) -> None:
            for version in versions:
                db.put_notice(version)

        async def run() -> None:
            try:
                await records.call(put)
            except StoreError as exc:
                logger.warning("new notice versions not stored now (%s); each is stored when decided on", exc)

        try:
            task = asyncio.get_running_loop().create_task(run())
        except RuntimeError:
            return
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return store


def site_notice(site: SiteConfig, inventory: CookieInventory | None = None) -> NoticeVersion:
    """The notice in the site's default language and the opt-in variant (the configuration alone without
    `inventory`): what the admin API records a withdrawal made on a visitor's behalf under."""
    return SiteNotices(site, inventory).notice(site.consent.default_language, "opt-in")


class SiteNotices:
    """A site's notice versions, per shown language and variant, rebuilt when a vendor or cookie is learnt.

    Reads no database: the vendors and cookies come from the process's inventory. `on_new` is called with
    each new set of versions when a vendor appears that the previous ones did not name (to store them).
    """

    def __init__(self, site: SiteConfig, inventory: CookieInventory | None = None,
                 on_new: Callable[[list[NoticeVersion]], None] | None = None) -> None:
        self.site = site
        self.on_new = on_new
        # not the bound method: no reference cycle, so an old configuration is freed without the collector
        self.cookie_list = CookieList(site.name, site.consent,
                                      functools.partial(controller_name, site.consent.controller, site.hosts),
                                      inventory)
        self._version = -1
        self._groups: dict[str, dict[str, list[Service]]] = {}
        self._notices: dict[tuple[str, str], NoticeVersion] = {}
        #: the vendors named per category, and their digests (what a consent cookie is compared to)
        self._vendors: dict[str, frozenset[str]] = {}
        self._digests: dict[str, frozenset[bytes]] = {}
        self._stale: dict[tuple[frozenset[str], tuple[tuple[str, str], ...]], frozenset[str]] = {}
        #: versions rendered lately, by id: a decision names the one its page showed
        self.rendered: dict[str, NoticeVersion] = {}

    def controller(self, lang: str) -> str:
        return controller_name(self.site.consent.controller, self.site.hosts, lang)

    @property
    def version(self) -> int:
        return self.cookie_list.version

    def _refresh(self) -> None:
        if self._version == self.version:
            return
        self._version = self.version
        self._groups.clear()
        self._notices.clear()
        self._stale.clear()
        own = {self.controller(lang) for lang in LANGUAGES}
        vendors = {category: frozenset(s["name"] for s in services if s["name"] not in own)
                   for category, services in self.groups("en").items()}
        new = sorted(f"{name} ({category})" for category, names in vendors.items()
                     for name in names - self._vendors.get(category, frozenset()))
        first = not self._vendors
        self._vendors = vendors
        self._digests = {c: frozenset(vendor_digest(n) for n in names) for c, names in vendors.items()}
        if new and not first:
            versions = [self.notice(lang, regime) for lang in LANGUAGES for regime in self.regimes()]
            default = self.notice(self.site.consent.default_language, "opt-in")
            logger.info("site %s: its notice now names %s, seen on the site; new notice version %s (%s, opt-in; "
                        "%d versions in all, per language and variant)", self.site.name, ", ".join(new),
                        default.id[:12], self.site.consent.default_language, len(versions))
            if self.on_new is not None:
                self.on_new(versions)

    def regimes(self) -> tuple[str, ...]:
        site = self.site
        return ("opt-in", *(["opt-out"] if site.opt_out else []), *(["notice-only"] if site.notice_only else []))

    def groups(self, lang: str, detailed: bool = False) -> dict[str, list[Service]]:
        """What the settings layer lists (and, `detailed`, the notice's recipients and cookies)."""
        if detailed:
            return self.cookie_list.groups(lang, True)
        self._refresh()
        found = self._groups.get(lang)
        if found is None:
            found = self._groups[lang] = self.cookie_list.groups(lang)
        return found

    def vendors(self) -> dict[str, frozenset[str]]:
        """The vendors the current notice names, per category (the site's own cookies left out)."""
        self._refresh()
        return self._vendors

    def stale(self, granted: frozenset[str], told: tuple[tuple[str, str], ...]) -> frozenset[str]:
        """The granted categories that now name a vendor the visitor was not told of (`told`: from their
        cookie, per category the digests of the vendors named then). Cached per cookie content."""
        self._refresh()
        key = (granted, told)
        found = self._stale.get(key)
        if found is None:
            digests = dict(told)
            found = frozenset(c for c in granted
                              if not self._digests.get(c, frozenset()) <= _digests(digests.get(c, "")))
            if len(self._stale) >= 4096:
                self._stale.clear()
            self._stale[key] = found
        return found

    def notice(self, lang: str, regime: str) -> NoticeVersion:
        """The version rendered to a visitor reading `lang` under `regime`'s first layer."""
        self._refresh()
        found = self._notices.get((lang, regime))
        if found is None:
            found = self._notices[(lang, regime)] = _notice(self.site, self.controller, self.cookie_list, lang,
                                                             regime)
            if len(self.rendered) >= _RENDERED_LIMIT:
                self.rendered.pop(next(iter(self.rendered)))
            self.rendered[found.id] = found
        return found


def told_of(notice: NoticeVersion, granted: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """What a consent cookie carries of a notice: per granted category, the digests of the vendors it named
    (an empty text for none: a category granted under no vendor is asked again when one comes)."""
    named: dict[str, set[bytes]] = {category: set() for category in granted}
    for recipient in notice.content.get("recipients", ()):
        if isinstance(recipient, dict) and recipient.get("category") in granted:
            named.setdefault(recipient["category"], set()).add(vendor_digest(str(recipient.get("name", ""))))
    return tuple((c, base64.urlsafe_b64encode(b"".join(sorted(d))).rstrip(b"=").decode("ascii"))
                 for c, d in sorted(named.items()))


def _digests(text: str) -> frozenset[bytes]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return frozenset()
    return frozenset(raw[i:i + DIGEST_BYTES] for i in range(0, len(raw) - DIGEST_BYTES + 1, DIGEST_BYTES))


def _notice(site: SiteConfig, shown: Callable[[str], str], listing: CookieList, lang: str,
            regime: str) -> NoticeVersion:
    consent = site.consent
    controller = consent.controller or site.name
    own = {shown(code) for code in LANGUAGES}

    def text(code: str, key: str, **values: str) -> str:
        template = consent.texts.get(key, {}).get(code) or BANNER_TEXTS[key][code]
        return template.format(**values) if values else template

    texts = {}
    for code in LANGUAGES:
        lines = [text(code, "title"), text(code, "text", controller=shown(code))]
        lines += [f"{c.label[code]}: {c.description[code]}" for c in consent.categories]
        texts[code] = "\n".join(lines)
    # Where a site asks differently by place, the first layer's other wordings were shown too.
    regime_texts = {variant: {code: text(code, key, controller=shown(code)) for code in LANGUAGES}
                    for variant, key, places in (("opt-out", "optout_text", site.opt_out),
                                                ("notice-only", "notice_text", site.notice_only)) if places}
    groups = listing.groups(lang, detailed=True)
    purposes: list[dict[str, Any]] = [
        {"id": c.id, "label": c.label, "description": c.description, "legal_basis": LEGAL_BASIS.get(c.id, "consent"),
         "services": [s["name"] for s in groups[c.id] if s["name"] not in own]}
        for c in consent.categories
    ]
    cookies = [{"category": category, "service": service["name"], **cookie}
               for category, services in groups.items()
               for service in services for cookie in service["cookies"]]
    recipients = [{"name": s["name"], "provider": s["provider"] or s["name"], "category": category,
                   "purpose": s.get("purpose", ""), "privacy_url": s["privacy_url"],
                   "cookies": [{"name": c["name"], "lifetime": c["lifetime"], "purpose": c["purpose"]}
                               for c in s["cookies"]]}
                  for category, services in groups.items() for s in services if s["name"] not in own]
    content = {
        "texts": texts,
        "purposes": purposes,
        "data_categories": DATA_CATEGORIES,
        "recipients": recipients,
        "shown": {"language": lang, "regime": regime},
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
