"""The site's cookie declaration: its categories, services and cookies as accessible HTML tables.

What a privacy statement promises ("the cookies we use"), written by the proxy
from the same data as the banner's settings layer (consentproxy/banner/cookielist.py:
the site's declarations, the catalogue, and the lifetimes the inventory saw in
real Set-Cookie headers), so it never drifts from what the site does. A page
gets it inside any element with `data-consent-declaration` (the HTML rewriter
puts it right after that element's start tag); `/_consent/declaration` serves
it as a page of its own. Rendered once per language and kept until the
inventory learns a new cookie name; a configuration reload builds a new one.
Every text is escaped and ASCII (non-ASCII as character references), so it is
correct in any page charset; no script, no inline style.
"""

from __future__ import annotations

import functools

from consentproxy.banner.cookielist import CookieList, Service
from consentproxy.banner.markup import ascii_html
from consentproxy.config.model import SiteConfig
from consentproxy.consent.texts import BANNER_TEXTS, controller_name
from consentproxy.cookies.inventory import CookieInventory

#: the declaration's own words (the column labels it shares with the settings layer come from BANNER_TEXTS,
#: where a site may override them)
DECLARATION_TEXTS: dict[str, dict[str, str]] = {
    "title": {"nl": "Cookieverklaring", "en": "Cookie declaration", "de": "Cookie-Erklärung",
              "fr": "Déclaration relative aux cookies"},
    "intro": {
        "nl": "{controller} gebruikt de volgende cookies. De bewaartermijn is de termijn waarmee de cookie echt "
              "wordt geplaatst, zodra die is waargenomen.",
        "en": "{controller} uses the following cookies. The lifetime is the one the cookie is really set with, "
              "once it has been observed.",
        "de": "{controller} verwendet die folgenden Cookies. Die Speicherdauer ist die, mit der das Cookie "
              "tatsächlich gesetzt wird, sobald dies beobachtet wurde.",
        "fr": "{controller} utilise les cookies suivants. La durée est celle avec laquelle le cookie est "
              "réellement déposé, dès qu'elle a été observée.",
    },
    "party": {"nl": "Soort", "en": "Type", "de": "Art", "fr": "Type"},
    "first": {"nl": "Eigen cookie (first-party)", "en": "First-party", "de": "Erstanbieter",
              "fr": "Interne (first-party)"},
    "third": {"nl": "Cookie van derden (third-party)", "en": "Third-party", "de": "Drittanbieter",
              "fr": "Tierce partie (third-party)"},
    "unknown": {"nl": "onbekend", "en": "unknown", "de": "unbekannt", "fr": "inconnue"},
    "none": {"nl": "Geen cookies in deze categorie.", "en": "No cookies in this category.",
             "de": "Keine Cookies in dieser Kategorie.", "fr": "Aucun cookie dans cette catégorie."},
}
_STANDALONE_CSS = ("body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;"
                   "color:#1a1a1a;background:#fff}table{border-collapse:collapse;width:100%;margin:0 0 1.5rem}"
                   "caption{text-align:left;padding:.5rem 0}th,td{border:1px solid #767676;padding:.35rem .5rem;"
                   "text-align:left;vertical-align:top}.cp-declaration-name{display:block;font-weight:700;"
                   "font-size:1.15rem}.cp-declaration-description{display:block}")


class SiteDeclaration:
    """A site's cookie declaration per language; `fragment(lang)` is a dict lookup unless the inventory learnt
    a new cookie name since it was rendered."""

    def __init__(self, site: SiteConfig, inventory: CookieInventory | None = None,
                 cookie_list: CookieList | None = None) -> None:
        """`cookie_list`: the site's listing when the caller has one (the notices'): one classifier per site."""
        self.site = site
        # not the bound method: no reference cycle, so an old configuration is freed without the collector
        self.cookie_list = cookie_list if cookie_list is not None else CookieList(
            site.name, site.consent, functools.partial(controller_name, site.consent.controller, site.hosts),
            inventory)
        self._version = -1
        self._fragments: dict[str, str] = {}
        self._pages: dict[str, bytes] = {}

    def controller(self, lang: str) -> str:
        return controller_name(self.site.consent.controller, self.site.hosts, lang)

    def text(self, lang: str, key: str, **values: str) -> str:
        if key in DECLARATION_TEXTS:
            template = DECLARATION_TEXTS[key][lang]
        else:  # the labels the settings layer shows too: the site's own words for them where it has some
            template = self.site.consent.texts.get(key, {}).get(lang) or BANNER_TEXTS[key][lang]
        return template.format(**values) if values else template

    def _fresh(self) -> None:
        version = self.cookie_list.version
        if version != self._version:
            self._version = version
            self._fragments = {}
            self._pages = {}

    def fragment(self, lang: str) -> str:
        """What goes inside a page's `data-consent-declaration` element."""
        self._fresh()
        found = self._fragments.get(lang)
        if found is None:
            found = self._fragments[lang] = self.render(lang, settings=True)
        return found

    def page(self, lang: str) -> bytes:
        """`/_consent/declaration`: the declaration as a page of its own (no banner there: no settings button)."""
        self._fresh()
        found = self._pages.get(lang)
        if found is None:
            e = ascii_html
            title = e(self.text(lang, "title"))
            found = self._pages[lang] = (
                f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{title} - {e(self.controller(lang))}</title><style>{_STANDALONE_CSS}</style></head>"
                f"<body><main><h1>{title}</h1>{self.render(lang, settings=False)}</main></body></html>"
            ).encode("ascii")
        return found

    def render(self, lang: str, settings: bool) -> str:
        e = ascii_html
        groups = self.cookie_list.groups(lang, detailed=True)
        columns = [self.text(lang, key) for key in ("cookie_name", "provider", "purpose", "lifetime", "party")]
        head = "".join(f'<th scope="col">{e(label)}</th>' for label in columns)
        parts = [f'<div class="cp-declaration" lang="{lang}">',
                 f'<p class="cp-declaration-intro">{e(self.text(lang, "intro", controller=self.controller(lang)))}'
                 "</p>"]
        for category in self.site.consent.categories:
            services = groups.get(category.id, [])
            parts.append(f'<div class="cp-declaration-category" data-cp-category="{e(category.id)}">'
                         '<table class="cp-declaration-table"><caption>'
                         f'<span class="cp-declaration-name">{e(category.label[lang])}</span> '
                         f'<span class="cp-declaration-description">{e(category.description[lang])}</span>'
                         f"</caption><thead><tr>{head}</tr></thead><tbody>")
            rows = [self._row(service, cookie, lang) for service in services for cookie in service["cookies"]]
            parts += rows or [f'<tr><td colspan="5">{e(self.text(lang, "none"))}</td></tr>']
            parts.append("</tbody></table>")
            listed = [service for service in services if service["name"] != self.controller(lang)]
            if listed:
                parts.append(f'<p class="cp-declaration-services">{e(self.text(lang, "services"))}: '
                             + ", ".join(self._service(service) for service in listed) + "</p>")
            parts.append("</div>")
        if settings:
            parts.append('<p class="cp-declaration-actions"><button type="button" class="cp-declaration-settings" '
                         f'data-consent-open>{e(self.text(lang, "reopen"))}</button></p>')
        parts.append("</div>")
        return "".join(parts)

    def _row(self, service: Service, cookie: dict[str, str], lang: str) -> str:
        e = ascii_html
        provider = service["name"]
        if service["provider"] and service["provider"] != provider:
            provider += f" ({service['provider']})"
        purpose = cookie["purpose"] or service.get("purpose", "") or self.text(lang, "unknown")
        # a purpose in another language (a database original the site asked for) says which
        marked = f' lang="{e(cookie["lang"])}"' if cookie["purpose"] and cookie.get("lang") else ""
        lifetime = cookie["lifetime"] or self.text(lang, "unknown")
        return (f'<tr><th scope="row">{e(cookie["name"])}</th><td>{e(provider)}</td><td{marked}>{e(purpose)}</td>'
                f'<td>{e(lifetime)}</td><td>{e(self.text(lang, cookie.get("party") or "first"))}</td></tr>')

    @staticmethod
    def _service(service: Service) -> str:
        e = ascii_html
        name = e(service["name"])
        url: str = service["privacy_url"]
        if url.startswith(("https://", "http://", "/")) and not url.startswith("//"):
            name = f'<a href="{e(url)}">{name}</a>'
        provider = service["provider"]
        return name + (f" ({e(provider)})" if provider and provider != service["name"] else "")
