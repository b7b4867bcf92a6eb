"""Page URLs and referrers as each mode allows them.

With consent the URL stays whole except what is plainly personal: e-mail
addresses, the visitor's address, credentials, login and newsletter tokens,
and ad click ids unless marketing is granted. Without consent (exempt) only
allow-listed query parameters survive, the fragment goes, and a referrer from
another site is reduced to its origin or removed.
"""

from __future__ import annotations

import functools
from typing import Literal
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from consentproxy.analytics.model import encode_query, parse_query
from consentproxy.analytics.scrub import Scrubber

Fragment = Literal["drop", "clean", "route"]

#: query parameters that identify a person or carry a secret: removed in every mode
PERSONAL_PARAMS = frozenset({
    "email", "e-mail", "mail", "phone", "tel", "password", "passwd", "pwd", "token", "access_token", "id_token",
    "refresh_token", "auth", "api_key", "apikey", "secret", "code",
    "_gl",  # Google's cross-domain linker: the client id and a timestamp
    "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_enc_id", "oly_anon_id", "vero_id", "ml_subscriber",
    "ml_subscriber_hash",  # newsletter recipient ids (Mailchimp, HubSpot, Marketo, Omeda, Vero, MailerLite)
})
#: ad click ids: marketing data, removed unless marketing is granted
CLICK_IDS = frozenset({
    "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "gad_source", "fbclid", "msclkid", "ttclid", "li_fat_id",
    "twclid", "yclid", "epik", "igshid", "sccid", "irclickid", "rdt_cid", "_kx",
})
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_FRAGMENT_SAFE = _PATH_SAFE + "?#"


def is_absolute_url(value: str) -> bool:
    head = value[:8].lower()
    return head.startswith(("https://", "http://"))


def host_of(url: object) -> str | None:
    """The host of a URL, or None for anything that is not one."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


def bare_host(host: str | None) -> str:
    host = (host or "").lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def is_internal(host: str, own_hosts: frozenset[str]) -> bool:
    """The site itself or one of its subdomains."""
    host = bare_host(host)
    return any(host == own or host.endswith("." + own) for own in own_hosts)


class UrlCleaner:
    def __init__(self, scrubber: Scrubber, *, exempt: bool, marketing: bool, query_allow: frozenset[str],
                 referrer: Literal["none", "origin"], own_hosts: frozenset[str]) -> None:
        self._scrub = scrubber
        self._exempt = exempt
        self._marketing = marketing
        self._allow = query_allow
        self._referrer = referrer
        self.own_hosts = own_hosts

    def page(self, value: str, *, fragment: Fragment | None = None) -> str | None:
        """A URL of the site itself (absolute or relative); None when nothing sensible is left."""
        if fragment is None:
            fragment = "drop" if self._exempt else "clean"
        return self._rebuild(value, fragment)

    def referrer(self, value: str, page_host: str | None = None) -> str | None:
        """A referrer: cleaned like a page when internal; from elsewhere, whole (consent) or per policy."""
        split = _split(value)
        if split is None:
            return None
        value, parts, host, port = split
        own = self.own_hosts | {bare_host(page_host)} if page_host else self.own_hosts
        if not parts.netloc or (host is not None and is_internal(host, own)):
            return self.page(value)
        if not self._exempt:
            return self._rebuild(value, "clean")
        if self._referrer == "none" or not host:
            return None
        shown = f"[{host}]" if ":" in host else host
        origin = f"{parts.scheme.lower()}://{shown}" + (f":{port}" if port else "") + "/"
        return None if self._scrub.is_dirty(origin) else origin

    def link(self, value: str, page_host: str | None = None) -> str | None:
        """A URL found in another value (a clicked link, a download): a page if it is the site's, else a referrer."""
        return self.referrer(value, page_host)

    def _rebuild(self, value: str, fragment: Fragment) -> str | None:
        split = _split(value)
        if split is None:
            return None
        value, parts, host, port = split
        netloc = ""
        if parts.netloc:  # credentials go: "user:password@" or an e-mail before the host
            if host is None:
                return None
            shown = f"[{host}]" if ":" in host else host
            netloc = shown + (f":{port}" if port else "")
            if self._scrub.is_dirty(netloc):
                return None
        path = self._scrub.text(parts.path)
        if path != parts.path:
            path = quote(path, safe=_PATH_SAFE)
        query = self._query(parts.query)
        tail = self._fragment(parts.fragment, fragment)
        return urlunsplit((parts.scheme.lower(), netloc, path, query, tail))

    def _query(self, query: str) -> str:
        if not query:
            return ""
        kept: list[tuple[str, str]] = []
        for name, value in parse_query(query):
            lowered = name.lower()
            if lowered in PERSONAL_PARAMS or (lowered in CLICK_IDS and not self._marketing):
                continue
            if self._exempt and lowered not in self._allow:
                continue
            if self._scrub.is_dirty(name) or self._scrub.is_dirty(value):
                continue  # a parameter holding an e-mail or the visitor's address goes whole
            kept.append((name, value))
        return encode_query(kept, plus=True)

    def _fragment(self, fragment: str, mode: Fragment) -> str:
        if not fragment or mode == "drop":
            return ""
        if mode == "route":  # hash routing ("#/products/12"): the route is the page, its query is not
            route = fragment.split("?", 1)[0]
            return "" if self._scrub.is_dirty(route) else route
        # "#section" is navigation; "#access_token=…" or "#jane@example.com" is not
        if "=" in fragment or self._scrub.is_dirty(fragment):
            return ""
        return quote(fragment, safe=_FRAGMENT_SAFE)


class _RememberingCleaner(UrlCleaner):
    """A cleaner for hits with neither an e-mail nor the visitor's address in them, at any layer.

    Cleaning such a URL depends on the URL and the site's settings alone, and
    a site's page and referrer URLs repeat from visitor to visitor, so results
    are remembered (in memory, bounded; very long URLs are not kept).
    """

    def __init__(self, *, exempt: bool, marketing: bool, query_allow: frozenset[str],
                 referrer: Literal["none", "origin"], own_hosts: frozenset[str]) -> None:
        super().__init__(Scrubber(None), exempt=exempt, marketing=marketing, query_allow=query_allow,
                         referrer=referrer, own_hosts=own_hosts)
        self._pages = functools.lru_cache(maxsize=4096)(super().page)
        self._referrers = functools.lru_cache(maxsize=4096)(super().referrer)

    def page(self, value: str, *, fragment: Fragment | None = None) -> str | None:
        if len(value) > _REMEMBERED_LENGTH:
            return super().page(value, fragment=fragment)
        return self._pages(value, fragment=fragment)

    def referrer(self, value: str, page_host: str | None = None) -> str | None:
        if len(value) > _REMEMBERED_LENGTH:
            return super().referrer(value, page_host)
        return self._referrers(value, page_host)


_REMEMBERED_LENGTH = 1024


@functools.lru_cache(maxsize=64)  # one per site and consent state
def remembering_cleaner(*, exempt: bool, marketing: bool, query_allow: frozenset[str],
                        referrer: Literal["none", "origin"], own_hosts: frozenset[str]) -> UrlCleaner:
    """The shared cleaner for clean hits with these settings (see `_RememberingCleaner`)."""
    return _RememberingCleaner(exempt=exempt, marketing=marketing, query_allow=query_allow, referrer=referrer,
                               own_hosts=own_hosts)


def _split(value: str) -> tuple[str, SplitResult, str | None, int | None] | None:
    """A URL stripped and split, with its host and port; None for nothing or what does not parse."""
    value = value.strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        return value, parts, parts.hostname, parts.port
    except ValueError:
        return None
