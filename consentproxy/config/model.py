"""The validated configuration, as plain frozen dataclasses.

Everything here has already been checked by the loader, so the proxy never
re-validates on the hot path. Later capabilities (consent, rewriting,
analytics) add their own fields to `SiteConfig` with defaults.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Protocol limits enforced before a request reaches the application."""

    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_url_bytes: int = 8 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    #: connections one client address may hold open in one worker (0: no limit); trusted proxies are exempt
    max_connections_per_client: int = 256
    #: requests one client address may have in flight in one worker (0: no limit); beyond, 429
    max_requests_per_client: int = 100
    #: request bodies up to this size are read whole before an upstream connection is taken
    body_buffer_bytes: int = 1024 * 1024
    #: what one worker may hold of such bodies at once; beyond, they stream as they come
    max_buffered_bytes: int = 64 * 1024 * 1024


AdminScope = Literal["read", "full"]
ADMIN_SCOPES: tuple[str, ...] = ("read", "full")
#: the name the audit gives `[secrets] admin_token`; no named token may take it
SECRETS_TOKEN_NAME = "admin"  # noqa: S105 - a name, not a secret


@dataclass(frozen=True, slots=True)
class AdminTokenConfig:
    """A named admin API token, configured by its SHA-256 only, so the file never holds a usable secret."""

    name: str
    scope: AdminScope
    sha256: str  # 64 lowercase hex digits


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 8080),)
    admin_listen: ListenAddress | None = None
    workers: int = 1
    trusted_proxies: tuple[IPNetwork, ...] = ()
    data_dir: Path = Path("consentproxy-data")
    access_log: bool = False
    graceful_timeout: float = 30.0
    upstream_connections: int = 256
    limits: Limits = field(default_factory=Limits)
    #: besides `[secrets] admin_token` (named "admin", full scope); a reload applies changes
    admin_tokens: tuple[AdminTokenConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    """Where secrets live: each entry is a `file:PATH` or `env:NAME` reference."""

    consent_keys: str | None = None
    admin_token: str | None = None
    export_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = ""
    #: how often each site's head is signed and its retention applied
    upkeep_interval: float = 3600.0


UpstreamHostMode = Literal["client", "upstream", "fixed"]

#: The built-in consent categories, in the order banners show them. `necessary` is always on. A site may
#: add its own (`[sites.NAME.consent.categories.ID]`): `ConsentConfig.category_ids` names a site's all.
CATEGORY_IDS: tuple[str, ...] = ("necessary", "preferences", "statistics", "marketing")
LANGUAGES: tuple[str, ...] = ("nl", "en", "de", "fr")
#: Google Consent Mode v2 signals a category can grant (security_storage is always granted)
CONSENT_MODE_SIGNALS: tuple[str, ...] = ("ad_storage", "ad_user_data", "ad_personalization", "analytics_storage",
                                         "functionality_storage", "personalization_storage", "security_storage")
#: the Consent Mode signals each built-in category grants
BUILTIN_CONSENT_MODE: dict[str, tuple[str, ...]] = {
    "necessary": (),
    "preferences": ("functionality_storage", "personalization_storage"),
    "statistics": ("analytics_storage",),
    "marketing": ("ad_storage", "ad_user_data", "ad_personalization"),
}


@dataclass(frozen=True, slots=True)
class CategoryConfig:
    id: str
    #: language code → text; every bundled language is present after loading
    label: dict[str, str]
    description: dict[str, str]
    #: the Consent Mode v2 signals a grant of this category grants
    consent_mode: tuple[str, ...] = ()
    #: a site's own category (not one of CATEGORY_IDS)
    custom: bool = False
    #: languages its label was not configured in (check-config warns; another language's label stands in)
    missing_labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CookieDeclaration:
    """A site's own statement about a cookie: exactly one of name, prefix or pattern is set."""

    category: str
    name: str = ""
    prefix: str = ""
    pattern: str = ""
    purpose: str = ""
    lifetime: str = ""
    provider: str = ""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A third party a site uses.

    cookies: names or `prefix*`; scripts, iframes, pixels: parts of the URLs of its
    `<script src>`, `<iframe src>` and `<img src>`; hosts: its host names (for
    preconnect/dns-prefetch/preload links); inline: substrings that identify its
    inline `<script>` code (`gtag(`, `fbq(`).
    """

    name: str
    category: str
    provider: str = ""
    privacy_url: str = ""
    cookies: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()
    iframes: tuple[str, ...] = ()
    pixels: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    inline: tuple[str, ...] = ()
    purpose: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThemeConfig:
    """The banner's look; empty values keep banner.css's defaults."""

    background: str = ""
    text: str = ""
    accent: str = ""
    accent_text: str = ""
    font: str = ""
    radius: str = ""
    position: str = "bottom"  # bottom, top or center
    #: the re-open control: a corner, "end" (after the page's content) or "none" (the site places its own)
    reopen_position: str = "bottom-left"


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    #: in the order the banner shows them: the built-in ones, then the site's own
    categories: tuple[CategoryConfig, ...] = ()
    services: tuple[ServiceConfig, ...] = ()
    cookies: tuple[CookieDeclaration, ...] = ()
    #: raising it asks every visitor again
    revision: int = 1
    #: how long a decision (given or refused) is remembered
    validity_days: int = 365
    #: statistics runs only anonymised through the proxy, so needs no consent (analytics feature)
    statistics_exempt: bool = False
    #: a vendor seen on the site that a visitor's consent never named: ask that visitor again for its category
    reask_on_new_vendor: bool = True
    unknown_cookies: Literal["block", "allow"] = "block"
    #: a purpose for a cookie known only from the Open Cookie Database: said from its category in the visitor's
    #: language, or the database's English original (marked as English)
    database_purposes: Literal["category", "original"] = "category"
    cookie_name: str = "cp_consent"
    default_language: str = "nl"
    #: who decides on the processing (named in the banner text); defaults to the site's name
    controller: str = ""
    #: language → the privacy statement's URL (every bundled language present after loading)
    privacy_url: dict[str, str] = field(default_factory=lambda: dict.fromkeys(LANGUAGES, "/privacy"))
    #: banner text overrides: key (see consent.texts.BANNER_TEXTS) → language → text
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    theme: ThemeConfig = field(default_factory=ThemeConfig)
    #: what a consent record keeps of the visitor's IP address: none, truncated (/24, /48) or keyed_hash
    record_ip: Literal["none", "truncated", "keyed_hash"] = "none"
    #: named in every notice version: where the data is kept, and whose law applies
    storage_location: str = "EEA"
    jurisdiction: str = "NL"
    #: how long consent events are kept; 0 means the default: validity + 12 months
    record_retention_days: int = 0

    @property
    def retention_days(self) -> int:
        return self.record_retention_days or self.validity_days + 365

    @property
    def category_ids(self) -> tuple[str, ...]:
        """Every category of the site, built-in and its own, in the banner's order."""
        return tuple(c.id for c in self.categories) if self.categories else CATEGORY_IDS

    @property
    def consent_mode(self) -> dict[str, tuple[str, ...]]:
        """Category → the Consent Mode v2 signals its grant grants."""
        if not self.categories:
            return dict(BUILTIN_CONSENT_MODE)
        return {c.id: c.consent_mode for c in self.categories}


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """`[sites.NAME.analytics]`: where anonymised hits go, and how much of the visitor survives.

    A backend without a URL has no first-party endpoint: its hits get 404.
    """

    ga4: str = ""  # base URL, e.g. https://region1.google-analytics.com (/g/collect, /mp/collect follow)
    matomo: str = ""  # the tracker URL, e.g. https://matomo.example.nl/matomo.php
    matomo_token: str = ""  # secret reference (file:/env:) to a token_auth, for cip and country overrides
    plausible: str = ""  # base URL (/api/event follows)
    umami: str = ""  # base URL (/api/send follows)
    generic: str = ""  # the URL JSON hits are posted to
    ipv4: str = "drop"  # drop, v4/24 or v4/16
    ipv6: str = "drop"  # drop, v6/32 or v6/48
    query_allow: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign")
    referrer: str = "origin"  # external referrers reduced to their origin, or none
    dry_run: bool = False  # log what would be sent, send nothing

    @property
    def enabled(self) -> bool:
        return any((self.ga4, self.matomo, self.plausible, self.umami, self.generic))


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    hosts: tuple[str, ...]
    upstream: str
    upstream_host: UpstreamHostMode = "client"
    upstream_host_value: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_body_bytes: int = 100 * 1024 * 1024
    #: inject the banner and block trackers in HTML pages (off: cookies are still enforced)
    rewrite_html: bool = True
    #: compress rewritten pages for clients that accept gzip, br or zstd
    compress_html: bool = True
    #: the visitor addresses the site sees in X-Forwarded-For: full, truncated (/24, /48) or none,
    #: so its own access logs hold no full IP address
    forward_client_ip: Literal["full", "truncated", "none"] = "full"
    #: a request body may take `body_grace` plus one second per `body_min_rate` bytes received (0: no
    #: rate), and `body_timeout` at most; a slower one gets 408
    body_grace: float = 10.0
    body_min_rate: int = 1024
    body_timeout: float = 300.0
    #: request headers besides the built-in ones that carry a visitor's address: removed before the site
    client_address_headers: tuple[str, ...] = ()
    #: client-address headers the site gets as they came, when a trusted proxy sent them (default: none)
    pass_client_headers: tuple[str, ...] = ()
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    #: consent regimes by place (country "US" or subdivision "US-CA"); everywhere else opt-in
    opt_out: tuple[str, ...] = ()
    notice_only: tuple[str, ...] = ()
    #: scripts, iframes and pixels from hosts no rule knows: "report" lists them (preview, metrics),
    #: "hold" also holds them like non-consented marketing until Accept all
    third_party: Literal["report", "hold"] = "report"
    #: hosts of the site's own (its CDN, its shop's payment provider, maps it chose), besides its `hosts`
    #: and the built-in functional list: never held as unknown third parties
    functional_hosts: tuple[str, ...] = ()
    #: discovery from real browsers: a Report-Only CSP and the banner's cookie-name report on this share of
    #: page views (0 to 1), merged into the inventory through `/_consent/report`
    discovery: Literal["on", "off"] = "on"
    discovery_sample: float = 0.05

    @property
    def uses_location(self) -> bool:
        return bool(self.opt_out or self.notice_only)


@dataclass(frozen=True, slots=True)
class GeoConfig:
    """`[geoip]`: the MaxMind Country or City database; needed once any site uses a location."""

    database: Path | None = None


TrackerListFormat = Literal["trackerdb", "tds", "disconnect", "abp"]
TRACKER_LIST_FORMATS: tuple[TrackerListFormat, ...] = ("trackerdb", "tds", "disconnect", "abp")


@dataclass(frozen=True, slots=True)
class TrackerListConfig:
    """One list of `[trackers] lists`: a file the operator obtained (none is shipped: their licences forbid it).

    trackerdb: Ghostery TrackerDB (`trackerdb.db` or its JSON); tds: DuckDuckGo's tracker blocklist (TDS
    JSON); disconnect: Disconnect's `services.json`; abp: an EasyList/EasyPrivacy-style filter list.
    `categories` maps the list's own category names to ours, over the built-in mapping.
    """

    format: TrackerListFormat
    path: Path
    categories: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrackersConfig:
    """`[trackers]`: tracker knowledge beyond the bundled catalogue, shared by every site."""

    lists: tuple[TrackerListConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    sites: tuple[SiteConfig, ...]
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    geoip: GeoConfig = field(default_factory=GeoConfig)
    trackers: TrackersConfig = field(default_factory=TrackersConfig)
    source: Path | None = None
