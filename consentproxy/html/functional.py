"""Third parties a page needs to work, and each site's view of the hosts no tracker rule knows.

A site with `third_party = "hold"` holds every script, frame, image, media
file, stylesheet, fetching `<link>` and CSS `url()` (style attributes,
`<style>` sheets: neutralised) from a host that is neither its own,
nor one it declared (`functional_hosts`, the hosts of its own
`[[consent.services]]`), nor on the built-in list below, nor known to a
tracker rule (those keep their own category), like a non-consented marketing
element until Accept all. With `report` (the default) nothing more is held,
but those hosts are recorded per site (bounded) and counted, for `preview`
and the console.

The built-in list is ours: CDNs that serve libraries and a site's own assets,
web fonts, payment providers, captchas and the asset hosts of hosted shop and
site builders: what breaks a site when held. Maps and video players are not
on it: a site that chose one declares it. Matching is by host label, as the
tracker matcher does: an entry names the host and its subdomains, and may
carry a path prefix ("www.google.com/recaptcha/"). Tracker rules come first,
so a tracker served from a shared CDN (a catalogued `dXXXX.cloudfront.net`)
is still held by its own category.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Literal

from consentproxy.html.trackers import Match, split_url

#: host[/path prefix] → what it is (shown by `preview`)
FUNCTIONAL: dict[str, str] = {
    # libraries and CDNs (polyfill.io is left out on purpose: its domain changed hands and served malware in 2024)
    "cdnjs.cloudflare.com": "CDN (cdnjs)",
    "ajax.cloudflare.com": "CDN (Cloudflare Rocket Loader)",
    "cdn.jsdelivr.net": "CDN (jsDelivr)",
    "fastly.jsdelivr.net": "CDN (jsDelivr)",
    "gcore.jsdelivr.net": "CDN (jsDelivr)",
    "unpkg.com": "CDN (unpkg)",
    "esm.sh": "CDN (esm.sh)",
    "cdn.skypack.dev": "CDN (Skypack)",
    "ga.jspm.io": "CDN (JSPM)",
    "code.jquery.com": "CDN (jQuery)",
    "ajax.googleapis.com": "CDN (Google Hosted Libraries)",
    "ajax.aspnetcdn.com": "CDN (Microsoft Ajax CDN)",
    "bootstrapcdn.com": "CDN (BootstrapCDN)",
    "cdn.datatables.net": "CDN (DataTables)",
    "cdn.ckeditor.com": "CDN (CKEditor)",
    "cdn.tiny.cloud": "CDN (TinyMCE)",
    "cdn.tailwindcss.com": "CDN (Tailwind CSS)",
    "cdn.plyr.io": "CDN (Plyr)",
    "code.highcharts.com": "CDN (Highcharts)",
    "d3js.org": "CDN (D3)",
    "cloudfront.net": "CDN (Amazon CloudFront)",
    "akamaized.net": "CDN (Akamai)",
    "akamaihd.net": "CDN (Akamai)",
    "fastly.net": "CDN (Fastly)",
    "azureedge.net": "CDN (Azure)",
    "b-cdn.net": "CDN (bunny.net)",
    "kxcdn.com": "CDN (KeyCDN)",
    "cdn77.org": "CDN (CDN77)",
    "stackpathcdn.com": "CDN (StackPath)",
    "res.cloudinary.com": "image CDN (Cloudinary)",
    "imgix.net": "image CDN (imgix)",
    "images.ctfassets.net": "asset CDN (Contentful)",
    "assets.ctfassets.net": "asset CDN (Contentful)",
    "cdn.sanity.io": "asset CDN (Sanity)",
    "storage.googleapis.com": "file hosting (Google Cloud Storage)",
    "s3.amazonaws.com": "file hosting (Amazon S3)",
    "www.gstatic.com/charts/": "library (Google Charts)",
    # hosted shops and site builders: their asset hosts serve the site itself
    "cdn.shopify.com": "shop assets (Shopify)",
    "cdn.shopifycdn.net": "shop assets (Shopify)",
    "i0.wp.com": "image CDN (WordPress.com)",
    "i1.wp.com": "image CDN (WordPress.com)",
    "i2.wp.com": "image CDN (WordPress.com)",
    "c0.wp.com": "asset CDN (WordPress.com)",
    "s0.wp.com": "asset CDN (WordPress.com)",
    "s1.wp.com": "asset CDN (WordPress.com)",
    "s2.wp.com": "asset CDN (WordPress.com)",
    "static1.squarespace.com": "site assets (Squarespace)",
    "assets.squarespace.com": "site assets (Squarespace)",
    "images.squarespace-cdn.com": "site assets (Squarespace)",
    "static.parastorage.com": "site assets (Wix)",
    "static.wixstatic.com": "site assets (Wix)",
    "assets.website-files.com": "site assets (Webflow)",
    "cdn.prod.website-files.com": "site assets (Webflow)",
    "uploads-ssl.webflow.com": "site assets (Webflow)",
    "assets.mlcdn.com": "form assets (MailerLite)",
    # web fonts
    "fonts.googleapis.com": "web fonts (Google Fonts)",
    "fonts.gstatic.com": "web fonts (Google Fonts)",
    "use.typekit.net": "web fonts (Adobe Fonts)",
    "use.fontawesome.com": "icon font (Font Awesome)",
    "kit.fontawesome.com": "icon font (Font Awesome)",
    "ka-f.fontawesome.com": "icon font (Font Awesome)",
    "ka-p.fontawesome.com": "icon font (Font Awesome)",
    "fonts.bunny.net": "web fonts (Bunny Fonts)",
    "api.fontshare.com": "web fonts (Fontshare)",
    "cdn.fontshare.com": "web fonts (Fontshare)",
    "fast.fonts.net": "web fonts (Monotype)",
    "cloud.typography.com": "web fonts (Hoefler&Co.)",
    # payment
    "js.stripe.com": "payment (Stripe)",
    "checkout.stripe.com": "payment (Stripe)",
    "m.stripe.network": "payment fraud check (Stripe)",
    "m.stripe.com": "payment fraud check (Stripe)",
    "www.paypal.com/sdk/": "payment (PayPal)",
    "www.paypal.com/smart/": "payment (PayPal)",
    "www.paypalobjects.com": "payment (PayPal)",
    "js.braintreegateway.com": "payment (Braintree)",
    "assets.braintreegateway.com": "payment (Braintree)",
    "js.mollie.com": "payment (Mollie)",
    "checkoutshopper-live.adyen.com": "payment (Adyen)",
    "checkoutshopper-live-us.adyen.com": "payment (Adyen)",
    "checkoutshopper-live-au.adyen.com": "payment (Adyen)",
    "checkoutshopper-test.adyen.com": "payment (Adyen)",
    "x.klarnacdn.net": "payment (Klarna)",
    "js.klarna.com": "payment (Klarna)",
    "pay.google.com": "payment (Google Pay)",
    "applepay.cdn-apple.com": "payment (Apple Pay)",
    "js.squareup.com": "payment (Square)",
    "web.squarecdn.com": "payment (Square)",
    "cdn.checkout.com": "payment (Checkout.com)",
    "js.checkout.com": "payment (Checkout.com)",
    "static-eu.payments-amazon.com": "payment (Amazon Pay)",
    "static-na.payments-amazon.com": "payment (Amazon Pay)",
    "js.authorize.net": "payment (Authorize.Net)",
    "pay.multisafepay.com": "payment (MultiSafepay)",
    "checkout.buckaroo.nl": "payment (Buckaroo)",
    # captcha and bot protection
    "www.google.com/recaptcha/": "captcha (reCAPTCHA)",
    "www.gstatic.com/recaptcha/": "captcha (reCAPTCHA)",
    "www.recaptcha.net/recaptcha/": "captcha (reCAPTCHA)",
    "hcaptcha.com": "captcha (hCaptcha)",
    "challenges.cloudflare.com": "captcha (Cloudflare Turnstile)",
    "friendlycaptcha.com": "captcha (Friendly Captcha)",
}

#: public suffixes of two labels under which names are registered ("shop.co.uk", "shop.netlify.app"): ours, the
#: common ones; a suffix not here counts its last two labels as the registrable domain
_SECOND_LEVEL = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "com.au", "net.au", "org.au", "edu.au",
    "gov.au", "co.nz", "org.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "co.kr", "or.kr", "com.br",
    "com.cn", "net.cn", "org.cn", "com.hk", "com.sg", "com.tw", "com.mx", "com.ar", "com.tr", "co.in", "gov.in",
    "co.za", "co.il", "com.pl", "co.at", "or.at", "gv.at", "com.es", "com.pt", "com.gr", "com.cy", "co.hu",
    "com.ua", "com.ru", "co.id", "com.my", "com.ph", "com.vn", "com.sa", "com.eg", "co.th", "in.th",
    # hosting shared by many sites, each under a name of its own: another tenant is another party
    "github.io", "gitlab.io", "netlify.app", "vercel.app", "pages.dev", "workers.dev", "herokuapp.com",
    "azurewebsites.net", "appspot.com", "firebaseapp.com", "web.app", "onrender.com", "fly.dev", "blogspot.com",
    "wordpress.com", "myshopify.com", "cloudfront.net", "s3.amazonaws.com", "azureedge.net", "b-cdn.net",
})

Origin = Literal["own", "functional", "declared", "unknown"]
#: the service name an unknown third party is held under, before its host
UNKNOWN_SERVICE = "unknown third party: "
#: the category an unknown third party is held under, with `hold`
UNKNOWN_CATEGORY = "marketing"
_RECORD_LIMIT = 256
_CACHE_LIMIT = 4096


def registrable(host: str) -> str:
    """The name a host is registered under ("static.shop.nl" → "shop.nl", "a.shop.co.uk" → "shop.co.uk"); an IP
    address as it is. Our approximation of the Public Suffix List: two labels, three under a `_SECOND_LEVEL`."""
    if host.startswith("[") or _is_ip(host):
        return host
    labels = host.split(".")
    if len(labels) > 2 and ".".join(labels[-2:]) in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _is_ip(host: str) -> bool:
    if not host or not (host[-1].isdigit() or ":" in host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostRules:
    """Host names (with their subdomains), each optionally with path prefixes, to a label: looked up label by
    label from the full name down to two labels, as the tracker matcher does."""

    def __init__(self, entries: dict[str, str]) -> None:
        index: dict[str, list[tuple[str, str]]] = {}
        for entry, label in entries.items():
            host, slash, path = entry.lower().partition("/")
            index.setdefault(host.strip().rstrip("."), []).append((slash + path, label))
        self._index = {host: tuple(sorted(rules, key=lambda rule: -len(rule[0]))) for host, rules in index.items()}

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, host: str, path: str) -> str | None:
        index = self._index
        name = host
        while True:
            rules = index.get(name)
            if rules is not None:
                for prefix, label in rules:
                    if path.startswith(prefix):
                        return label
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1:]
            if "." not in name:
                return None


_BUILTIN = HostRules(FUNCTIONAL)


def builtin_functional(raw_url: str) -> str | None:
    """What a URL's host is on the built-in functional list ("payment (Stripe)"), or None."""
    _, host, path = split_url(raw_url)
    return _BUILTIN.lookup(host, path) if host else None


@dataclass(frozen=True, slots=True)
class Party:
    """What a URL's host is to a site: its host (None: the URL has none, a relative or `data:` one), its
    origin, what it was matched to (the functional entry's label, the declared host), and, for an unknown
    host, the match it is held under."""

    host: str | None
    origin: Origin
    label: str = ""
    hold: Match | None = None


_NO_HOST = Party(None, "own")


@dataclass(slots=True)
class UnknownHost:
    """A host no rule knows, as the site's pages showed it: one URL and element kind for example, and how
    many elements referred to it (elements the rewriter saw: a tag it leaves unchanged is not looked at
    again at the same consent state)."""

    host: str
    example: str
    kind: str
    elements: int = 1


class ThirdParties:
    """One site's view of the hosts its pages load from, cached per URL, and its bounded record of unknown ones.

    `hosts`: the site's own host names (`*.example.nl` patterns allowed, `*` ignored): they, their registrable
    domains and every subdomain of those are its own (`static.shop.nl` for `www.shop.nl`). `declared`: the
    site's `functional_hosts` and the hosts of its own services.
    """

    def __init__(self, hosts: tuple[str, ...], declared: tuple[str, ...] = (), hold: bool = False) -> None:
        self.hold = hold
        own: set[str] = set()
        for pattern in hosts:
            name = pattern.lower().strip().rstrip(".").removeprefix("*.")
            if name and name != "*":
                own.add(name)
                own.add(registrable(name))
        self._own = frozenset(own)
        declared_entries = {host.removeprefix("*."): host for host in declared if host.strip("*. ")}
        self._declared = HostRules(declared_entries)
        self._declared_names = tuple(declared_entries)
        self._cache: dict[str, Party] = {}
        self._lock = threading.Lock()
        self.unknown: dict[str, UnknownHost] = {}
        #: elements from unknown hosts left out of `unknown` once it was full
        self.overflow = 0

    @property
    def not_held(self) -> tuple[str, ...]:
        """"host" and "host/path prefix" entries never held as unknown: the site's own names and registrable
        domains, its declared hosts, the built-in list (the client-side guard's table carries them). Made
        when asked (once, for the guard of a site that holds): thousands of sites need not keep a copy."""
        return tuple(sorted(self._own | {entry.lower().strip().rstrip(".") for entry in self._declared_names}
                            | set(FUNCTIONAL)))

    def own(self, host: str) -> bool:
        """Whether a host is the site's own: one of its names, a subdomain of one, or under its registrable
        domain."""
        if host in self._own:
            return True
        if _is_ip(host) or host.startswith("["):
            return False
        own = self._own
        name = host
        while True:
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1:]
            if name in own:
                return True
            if "." not in name:
                return False

    def party(self, raw_url: str) -> Party:
        """What the host of a URL (a raw attribute value) is to this site."""
        cache = self._cache
        try:
            return cache[raw_url]
        except KeyError:
            pass
        _, host, path = split_url(raw_url)
        if not host:
            found = _NO_HOST
        elif self.own(host):
            found = Party(host, "own")
        else:
            declared = self._declared.lookup(host, path)
            if declared is not None:
                found = Party(host, "declared", declared)
            else:
                builtin = _BUILTIN.lookup(host, path)
                if builtin is not None:
                    found = Party(host, "functional", builtin)
                else:
                    found = Party(host, "unknown", "", Match(UNKNOWN_SERVICE + host, UNKNOWN_CATEGORY))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[raw_url] = found
        return found

    def record(self, host: str, url: str, kind: str) -> bool:
        """Note an element loading from an unknown host; True when the host is new to the record."""
        unknown = self.unknown
        seen = unknown.get(host)
        if seen is not None:
            seen.elements += 1
            return False
        with self._lock:  # pages of one site may be rewritten in threads
            if host in unknown:
                return False
            if len(unknown) >= _RECORD_LIMIT:
                self.overflow += 1
                return False
            unknown[host] = UnknownHost(host, url[:300], kind)
        return True
