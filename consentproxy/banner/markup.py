"""The markup the proxy writes into pages: banner, re-open control, Consent Mode default, embed placeholders.

Rendered on the server, so the banner is there with the first paint: no
flicker, and as a fixed overlay no layout shift. Every configured text is
escaped; everything we write is ASCII (non-ASCII as character references,
`\\u` escapes in JSON) so it is correct in any ASCII-compatible page charset.
Static parts are rendered once per site and language, the banner once per
visitor state; per request only the stamp and the principal are filled in (and
a page's CSP nonce, which changes with every response).
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.cookielist import CookieList
from consentproxy.banner.guard import SiteGuard, build_guard
from consentproxy.banner.stubs import vendor_stubs
from consentproxy.banner.theme import theme_css, theme_name
from consentproxy.config.model import BUILTIN_CONSENT_MODE, CATEGORY_IDS, LANGUAGES, AnalyticsConfig, SiteConfig
from consentproxy.consent.decision import Decision
from consentproxy.consent.notice import SiteNotices
from consentproxy.consent.texts import BANNER_TEXTS, controller_name
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.html.csp import NoncePlan
from consentproxy.html.rewriter import Injection
from consentproxy.html.trackers import TrackerMatcher

if TYPE_CHECKING:
    from consentproxy.banner.declaration import SiteDeclaration  # which renders with ascii_html

#: Google Consent Mode v2 signals per built-in consent category (a site's own say theirs: `consent_mode`)
CONSENT_MODE_SIGNALS: dict[str, tuple[str, ...]] = {c: s for c, s in BUILTIN_CONSENT_MODE.items() if s}
_DEFAULTS = ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage", "functionality_storage",
             "personalization_storage")
#: the order of the signals in the update after a decision
_UPDATE = ("analytics_storage", "ad_storage", "ad_user_data", "ad_personalization", "functionality_storage",
           "personalization_storage")
_NONCE = "\x00nonce\x00"
_STYLE_NONCE = "\x00style-nonce\x00"
_STATE = "\x00state\x00"
_STAMP = "\x00stamp\x00"
#: on the banner script when the site has discovery on: the share of page views on which it reports the names of
#: the cookies scripts set. The script draws itself, so a page's bytes never depend on a draw of the proxy's
#: (identical requests get identical pages; the Report-Only policy header is drawn by `discovery.csp`)
_REPORT = ' data-cp-report="{share}"'
_PRINCIPAL = "__cp_principal__"
_ACCEPT_CACHE_LIMIT = 1024
_BUNDLE_CACHE_LIMIT = 256
#: texts rendered into the first layer or placeholders on the server, never needed by the script
_FIRST_LAYER_ONLY = ("text", "embed_text", "embed_load", "optout_text", "notice_text", "do_not_sell", "ok")
#: the first layer per regime: its text and its buttons (action, text key); no banner for a GPC refusal
_VARIANTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "opt-in": ("text", (("accept_all", "accept_all"), ("reject_all", "reject_all"), ("settings", "settings"))),
    "opt-out": ("optout_text", (("reject_all", "do_not_sell"), ("settings", "settings"), ("accept_all", "ok"))),
    "notice-only": ("notice_text", (("accept_all", "ok"), ("settings", "settings"))),
}


def ascii_html(text: str) -> str:
    """Escaped for HTML text and attribute values, non-ASCII as character references."""
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def script_json(value: Any) -> str:
    """JSON safe inside a `<script>` element: ASCII only, and no `<`, `>` or `&` to end it early."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def analytics_bootstrap(analytics: AnalyticsConfig) -> str:
    """Code that points a site's analytics at the proxy's own endpoints, whose anonymiser decides what goes on.

    Google tags take `transport_url`. Matomo's snippet queues `setTrackerUrl` in `_paq` before its
    script loads; the queue is ours first, so its tracker URL is rewritten as it is queued.
    """
    code = ""
    if analytics.ga4:
        code += "g('set',{transport_url:location.origin+'/_consent/a',first_party_collection:true});"
    if analytics.matomo:
        code += ("var q=window._paq=window._paq||[],p=q.push;q.push=function(){for(var i=0;i<arguments.length;i++)"
                 "{var c=arguments[i];if(c&&c[0]==='setTrackerUrl')c[1]=location.origin+'/_consent/a/matomo.php';}"
                 "return p.apply(q,arguments);};")
    return code


def granted_signals(granted: frozenset[str], mapping: dict[str, tuple[str, ...]] | None = None) -> set[str]:
    """The Consent Mode signals a grant grants: each signal of any granted category (`mapping`: the site's,
    `ConsentConfig.consent_mode`; default the built-in categories')."""
    mapping = CONSENT_MODE_SIGNALS if mapping is None else mapping
    return {signal for category, signals in mapping.items() if category in granted for signal in signals}


def consent_mode_code(granted: frozenset[str] | None, bootstrap: str = "",
                      mapping: dict[str, tuple[str, ...]] | None = None) -> str:
    """The Consent Mode v2 default (all denied but security_storage) and, after a decision, the update.

    `bootstrap` (see analytics_bootstrap) runs in the same script, before any of the page's, and so do the
    stubs of the vendors that stay held (see stubs.vendor_stubs). `mapping`: category → its signals.
    """
    defaults = ",".join(f"{name}:'denied'" for name in _DEFAULTS)
    code = ("window.dataLayer=window.dataLayer||[];(function(){function g(){dataLayer.push(arguments);}"
            f"g('consent','default',{{{defaults},security_storage:'granted',wait_for_update:500}});") + bootstrap
    signals = granted_signals(granted, mapping) if granted is not None else set()
    if "ad_storage" not in signals:
        code += "g('set','ads_data_redaction',true);"
    if granted is not None:
        update = ",".join(f"{signal}:'{'granted' if signal in signals else 'denied'}'" for signal in _UPDATE)
        code += f"g('consent','update',{{{update}}});"
    return code + "})();" + vendor_stubs(granted)


def consent_mode_query(granted: frozenset[str] | None, ids: tuple[str, ...] = CATEGORY_IDS) -> str:
    """The query naming a state for the external form of the Consent Mode script."""
    if granted is None:
        return "none"
    return ",".join(c for c in ids if c in granted and c != "necessary") or "necessary"


def parse_consent_mode_query(query: str, ids: tuple[str, ...] = CATEGORY_IDS) -> frozenset[str] | None:
    if query == "none":
        return None
    return frozenset(c for c in query.split(",") if c in ids) | {"necessary"}


def accepted_language(header: str, default: str) -> str:
    """The bundled language an Accept-Language header ranks highest, else `default`."""
    ranked = []
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, position, primary))
    return min(ranked)[2] if ranked else default


class SiteMarkup:
    """A site's banner markup, rendered once per language."""

    def __init__(self, site: SiteConfig, assets: BannerAssets, inventory: CookieInventory | None = None,
                 matcher: TrackerMatcher | None = None, prefix: str = "/_consent",
                 declaration: SiteDeclaration | None = None, notices: SiteNotices | None = None,
                 guard: SiteGuard | None = None) -> None:
        """`notices`: the site's notice versions, whose listing the settings layer shows (default: one of
        `inventory`). `guard`: the site's guard when the caller compiled it (shared by sites alike); else made
        from `matcher` here."""
        self.site = site
        #: the site's categories, its own included, and the Consent Mode signals each grants
        self.ids = site.consent.category_ids
        self.signals = site.consent.consent_mode
        #: the cookie declaration pages get in their `data-consent-declaration` element (None: nothing)
        self.declaration = declaration
        self.prefix = prefix
        consent = site.consent
        self.notices = notices if notices is not None else SiteNotices(site, inventory)
        self.cookie_list: CookieList = self.notices.cookie_list
        self.default_language = consent.default_language
        self.css_url = f"{prefix}/{assets.url_of['banner.css']}"
        self.js_url = f"{prefix}/{assets.url_of['banner.js']}"
        self.bootstrap = analytics_bootstrap(site.analytics)
        css = theme_css(consent.theme)
        self.theme_url = f"{prefix}/{theme_name(css)}" if css else None
        self._templates_version = -1
        self._templates: dict[tuple[str, str | None], list[str]] = {}
        #: the bundle per language, variant and visitor state, split where the response's stamp goes
        self._bundles: dict[tuple[str, str | None, str], tuple[str, str]] = {}
        self._accept_cache: dict[bytes, str] = {}
        self._consent_mode: dict[tuple[frozenset[str] | None, str, bool], str] = {}
        #: the client-side guard, with this site's tracker table (no matcher: no guard)
        self.guard: SiteGuard | None = guard
        if guard is None and matcher is not None:
            from consentproxy.html.step import analytics_routing, site_parties  # the HTML step imports this module

            self.guard = build_guard(assets, matcher, analytics_routing(site)[0], site_parties(site))
        self._guard_tags: dict[frozenset[str], str] = {}
        share = site.discovery_sample if site.discovery == "on" else 0.0
        self._report = _REPORT.format(share=f"{share:g}") if share > 0 else ""

    def text(self, lang: str, key: str, **values: str) -> str:
        texts = self.site.consent.texts.get(key, {})
        template = texts.get(lang) or BANNER_TEXTS[key][lang]
        return template.format(**values) if values else template

    # -- language ------------------------------------------------------------------
    def language(self, page_lang: str | None, accept_language: bytes | None) -> str:
        """The page's `lang`, then Accept-Language, then the site's default."""
        if page_lang:
            primary = page_lang.strip().lower().split("-", 1)[0]
            if primary in LANGUAGES:
                return primary
        if accept_language:
            cached = self._accept_cache.get(accept_language)
            if cached is None:
                cached = accepted_language(accept_language.decode("latin-1"), self.default_language)
                if len(self._accept_cache) >= _ACCEPT_CACHE_LIMIT:
                    self._accept_cache.clear()
                self._accept_cache[accept_language] = cached
            return cached
        return self.default_language

    # -- rendering -------------------------------------------------------------------
    def _config_json(self, lang: str) -> str:
        consent = self.site.consent
        by_category = self.notices.groups(lang)
        config = {
            "lang": lang, "principal": _PRINCIPAL, "revision": consent.revision,
            "texts": {key: self.text(lang, key) for key in BANNER_TEXTS if key not in _FIRST_LAYER_ONLY},
            "categories": [
                {"id": c.id, "label": c.label[lang], "description": c.description[lang],
                 "required": c.id == "necessary", "services": by_category[c.id]}
                for c in consent.categories
            ],
            # which categories grant each Consent Mode signal, for the update after a decision
            "consent_mode": {signal: [c for c in self.ids if signal in self.signals.get(c, ())]
                             for signal in _DEFAULTS},
        }
        return script_json(config)

    def controller(self, lang: str) -> str:
        return controller_name(self.site.consent.controller, self.site.hosts, lang)

    def _template(self, lang: str, variant: str | None, config_json: str) -> list[str]:
        """The markup for one language and first-layer variant (a regime, or None: no first layer)."""
        e = ascii_html
        position = self.site.consent.theme.position
        pos = "" if position == "bottom" else " cp-pos-" + position
        reopen_at = self.site.consent.theme.reopen_position
        # bottom-left → cp-re-bl (banner.css places it; under 40em a corner becomes the end of the page)
        reopen_class = " cp-re-" + "".join(word[0] for word in reopen_at.split("-"))
        parts = [
            f'<link rel="stylesheet" href="{e(self.css_url)}"{_STYLE_NONCE}>',
            f'<link rel="stylesheet" href="{e(self.theme_url)}"{_STYLE_NONCE}>' if self.theme_url else "",
            f'<div id="cp-root" class="cp-root{pos}" data-cp-api="{e(self.prefix)}"{_STATE} lang="{lang}">',
            # A declarative shadow root, parsed without script: no stylesheet of the page reaches the banner
            # and the re-open control. Our stylesheet again inside it (the same URL: one fetch); the theme's
            # custom properties, set on #cp-root, inherit into it. Without DSD, banner.js attaches it.
            '<template shadowrootmode="open">',
            f'<link rel="stylesheet" href="{e(self.css_url)}"{_STYLE_NONCE}>',
            f'<div id="cp-ui" class="cp-ui{pos}{reopen_class}" lang="{lang}" dir="ltr">',
        ]
        if variant is not None:
            text_key, buttons = _VARIANTS[variant]
            parts.append(
                '<section id="cp-banner" class="cp-banner" role="dialog" aria-modal="false" '
                f'aria-labelledby="cp-title" aria-describedby="cp-desc" data-cp-regime="{variant}">'
                '<div class="cp-panel">'
                f'<h2 id="cp-title" class="cp-title">{e(self.text(lang, "title"))}</h2>'
                f'<p id="cp-desc" class="cp-desc">{e(self.text(lang, text_key, controller=self.controller(lang)))} '
                f'<a class="cp-link" href="{e(self.site.consent.privacy_url[lang])}">'
                f'{e(self.text(lang, "privacy"))}</a>'
                f'</p><div class="cp-actions cp-actions-{len(buttons)}">'
                + "".join(f'<button type="button" class="cp-btn" data-cp-action="{action}">'
                          f'{e(self.text(lang, label))}</button>' for action, label in buttons)
                + '</div><p class="cp-status" role="status" aria-live="polite"></p></div></section>'
            )
        reopen = e(self.text(lang, "reopen"))
        parts += [
            f'<button type="button" id="cp-reopen" class="cp-reopen" data-consent-open aria-label="{reopen}" '
            f'title="{reopen}"><span class="cp-reopen-icon" aria-hidden="true"></span></button></div></template>',
            f'<script type="application/json" id="cp-config">{config_json}</script></div>',
            f'<script src="{e(self.js_url)}" defer{_NONCE}{_STAMP}></script>',
        ]
        return _split("".join(parts))

    def bundle(self, lang: str, decision: Decision, nonces: NoncePlan, stamp: str) -> str:
        decided = decision.state is not None
        # Global Privacy Control already refused everything optional: no question to ask, only the
        # re-open control (the banner script records the signal as the visitor's decision).
        # A granted category now names a vendor the visitor was not told of: asked again, that one only.
        variant = decision.regime if decision.kind == "none" or decision.reask else None
        if self._templates_version != self.cookie_list.version:
            # The settings layer lists the cookies the site was seen setting: a new one, a new rendering.
            self._templates_version = self.cookie_list.version
            configs = {code: self._config_json(code) for code in LANGUAGES}  # the same for every variant
            self._templates = {(code, kind): self._template(code, kind, configs[code]) for code in LANGUAGES
                               for kind in (*_VARIANTS, None)}
            self._bundles.clear()
        granted = " ".join(c for c in self.ids if c in decision.allowed)
        notice = self.notices.notice(lang, decision.regime).id  # the version this visitor is shown
        state = (f' data-cp-decided="{1 if decided else 0}" data-cp-granted="{granted}" data-cp-notice="{notice}"'
                 + (' data-cp-gpc="1"' if decision.kind == "gpc" else "")
                 + (f' data-cp-reask="{" ".join(c for c in self.ids if c in decision.reask)}"'
                    if decision.reask else ""))
        # Rendered once per visitor state, not per response: only the stamp and the principal differ. A page's
        # CSP nonce is new on every response: that rendering is not worth keeping.
        nonced = nonces.script_nonce is not None or nonces.style_nonce is not None
        key = (lang, variant, state)
        parts = None if nonced else self._bundles.get(key)
        if parts is None:
            values = {
                _NONCE: f' nonce="{ascii_html(nonces.script_nonce)}"' if nonces.script_nonce else "",
                _STYLE_NONCE: f' nonce="{ascii_html(nonces.style_nonce)}"' if nonces.style_nonce else "",
                _STATE: state,
            }
            rendered = "".join(values.get(part, part) for part in self._templates[(lang, variant)])
            head, _, tail = rendered.partition(_STAMP)  # the principal is in the config, before the stamp
            parts = (head, tail)
            if not nonced:
                if len(self._bundles) >= _BUNDLE_CACHE_LIMIT:
                    self._bundles.clear()
                self._bundles[key] = parts
        head, tail = parts
        principal = decision.state.principal if decision.state is not None else None
        head = head.replace(f'"{_PRINCIPAL}"', f'"{principal}"' if principal else "null", 1)
        return f'{head} data-cp-stamp="{ascii_html(stamp)}"{self._report}{tail}'

    def consent_mode(self, decision: Decision, nonces: NoncePlan) -> str:
        """What goes before the page's first script: the guard, then the Consent Mode default."""
        return self.guard_tag(decision.allowed, nonces) + self._consent_mode_script(decision, nonces)

    def guard_tag(self, allowed: frozenset[str], nonces: NoncePlan) -> str:
        """The guard's script element, first of all scripts; none when nothing in its table is held.

        An external script: a policy that allows our banner script allows it too (a nonce where the page's
        policy has one or we added ours), and no inline script is needed.
        """
        if self.guard is None or not self.guard.needed(allowed):
            return ""
        cached = None if nonces.script_nonce else self._guard_tags.get(allowed)
        if cached is None:
            granted = " ".join(c for c in self.ids if c in allowed)
            nonce = f' nonce="{ascii_html(nonces.script_nonce)}"' if nonces.script_nonce else ""
            cached = (f'<script src="{ascii_html(self.prefix)}/{self.guard.path}" data-cp-granted="{granted}"'
                      f'{nonce}></script>')
            if not nonces.script_nonce:
                self._guard_tags[allowed] = cached
        return cached

    def _consent_mode_script(self, decision: Decision, nonces: NoncePlan) -> str:
        # Undecided: the default (denied) holds, except where an opt-out or notice regime lets trackers run.
        granted = decision.allowed if decision.kind != "none" or decision.regime != "opt-in" else None
        key = (granted, nonces.script_nonce or "", nonces.inline_script_ok)
        cached = self._consent_mode.get(key)
        if cached is None:
            if nonces.script_nonce or nonces.inline_script_ok:
                nonce = f' nonce="{ascii_html(nonces.script_nonce)}"' if nonces.script_nonce else ""
                cached = f"<script{nonce}>{consent_mode_code(granted, self.bootstrap, self.signals)}</script>"
            else:
                # The page's policy refuses inline script and we may not add a nonce: load it instead.
                cached = (f'<script src="{self.prefix}/consent-mode.js?g={consent_mode_query(granted, self.ids)}">'
                          '</script>')
            if len(self._consent_mode) < 256:
                self._consent_mode[key] = cached
        return cached

    def absolute(self, code: str, origin: str) -> str:
        """Markup of ours with its URLs (`src="/_consent/…"`, `href=…`) on `origin` when one is given (a page
        with a base URL); `origin` is a validated scheme and host, safe in an attribute."""
        return code.replace(f'="{self.prefix}/', f'="{origin}{self.prefix}/') if origin else code

    def placeholder(self, lang: str, service: str, embed_id: str, box: str = "", inline_style: bool = True) -> str:
        e = ascii_html
        # Phrasing content only (span, button): an iframe may sit inside a <p>, which a <div> would close.
        # `box` (the iframe's size, numbers and units only: see html.embedsize) makes it an inline box like
        # the iframe, of the iframe's size.
        sized = f' cp-embed-sized" {"style" if inline_style else "data-cp-box"}="{e(box)}' if box else ""
        return (f'<span class="cp-embed{sized}" data-cp-embed="{embed_id}" lang="{lang}">'
                f'<span class="cp-embed-in"><span class="cp-embed-text">'
                f'{e(self.text(lang, "embed_text", service=service))}</span>'
                f'<button type="button" class="cp-btn cp-embed-load" data-cp-load="{embed_id}">'
                f'{e(self.text(lang, "embed_load", service=service))}</button></span></span>')


def _split(text: str) -> list[str]:
    """The template as literal parts and markers, ready to be joined per request."""
    parts: list[str] = []
    for marker in (_NONCE, _STYLE_NONCE, _STATE, _STAMP):
        text = text.replace(marker, "\x01" + marker + "\x01")
    for piece in text.split("\x01"):
        if piece:
            parts.append(piece)
    return parts


class PageInjection(Injection):
    """The injection for one response: the site's markup with this visitor's state."""

    __slots__ = ("accept_language", "decision", "markup")

    def __init__(self, markup: SiteMarkup, decision: Decision, accept_language: bytes | None) -> None:
        self.markup = markup
        self.decision = decision
        self.accept_language = accept_language

    def consent_mode(self, nonces: NoncePlan, origin: str = "") -> str:
        return self.markup.absolute(self.markup.consent_mode(self.decision, nonces), origin)

    def bundle(self, page_lang: str | None, nonces: NoncePlan, stamp: str, origin: str = "") -> str:
        return self.markup.absolute(self.markup.bundle(self.markup.language(page_lang, self.accept_language),
                                                       self.decision, nonces, stamp), origin)

    def placeholder(self, page_lang: str | None, service: str, embed_id: str, box: str = "",
                    inline_style: bool = True) -> str:
        return self.markup.placeholder(self.markup.language(page_lang, self.accept_language), service, embed_id,
                                       box, inline_style)

    def declaration(self, page_lang: str | None) -> str:
        declaration = self.markup.declaration
        if declaration is None:
            return ""
        return declaration.fragment(self.markup.language(page_lang, self.accept_language))



