"""Every table and key the loader accepts, with its default as written in TOML and one line of meaning.

The single list the documentation is checked against: `tests/test_config_docs.py`
records which keys the loader really asks for and what it makes of these
defaults, and fails when this list, `config/consentproxy.example.toml` or the
README's configuration reference disagree with it. A key added to the loader
needs a line here, in the example and in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Key:
    """One key. `default` is the TOML value the loader uses without it; None when it has none, and then
    `unset` says what happens instead and `example` is a valid value to show."""

    name: str
    default: object
    doc: str
    unset: str = ""
    example: object = None


@dataclass(frozen=True, slots=True)
class Table:
    """A table; `path` uses NAME and ID for names the operator chooses and [] for arrays of tables.

    `open_keys` describes a table whose keys are names (category ids, text keys), not fixed settings.
    """

    path: str
    doc: str
    keys: tuple[Key, ...] = ()
    required: bool = False
    open_keys: str = ""
    children: tuple[str, ...] = field(default=())

    @property
    def is_array(self) -> bool:
        return self.path.endswith("[]")

    @property
    def toml_header(self) -> str:
        """How the table is written: `[server]`, `[[server.admin_tokens]]`."""
        return f"[[{self.path[:-2]}]]" if self.is_array else f"[{self.path}]"

    def key(self, name: str) -> Key:
        return next(key for key in self.keys if key.name == name)


REQUIRED = "required"
NONE = "none"
EMPTY = "empty"


def _k(name: str, default: object, doc: str) -> Key:
    return Key(name, default, doc)


def _u(name: str, unset: str, example: object, doc: str) -> Key:
    return Key(name, None, doc, unset, example)


TABLES: tuple[Table, ...] = (
    Table("server", "listeners, workers, the data directory", (
        _k("listen", ["127.0.0.1:8080"], "proxy listen addresses (\"HOST:PORT\", \"[::]:8080\")"),
        _u("admin_listen", NONE, "127.0.0.1:9090",
           "the admin listener: index, health, readiness, metrics, admin API; a port of its own, keep it private"),
        _k("workers", 1, "worker processes sharing the sockets"),
        _k("trusted_proxies", [], "peers whose X-Forwarded-For/-Proto/-Host are believed; 0.0.0.0/0 is refused"),
        _k("data_dir", "consentproxy-data",
           "SQLite store, inventory, generated keys; relative to this file; serve creates it when its parent exists"),
        _k("access_log", False, "one JSON line per request on stdout (contains IP addresses)"),
        _k("graceful_timeout", "30s", "how long SIGTERM waits for in-flight requests"),
        _k("upstream_connections", 256, "keep-alive pool size to upstreams, per worker"),
    ), children=("limits", "admin_tokens")),
    Table("server.limits", "protocol limits, answered before a request reaches a site", (
        _k("max_header_bytes", "32KiB", "request head size; above it 431"),
        _k("max_header_count", 100, "request header count; above it 431"),
        _k("max_url_bytes", "8KiB", "request line size; above it 414"),
        _k("header_timeout", "10s", "a client must send its request head within this (slow-loris); then 408"),
        _k("keepalive_timeout", "5s", "idle keep-alive connections are closed after this"),
        _k("max_connections_per_client", 256, "connections one client address may hold per worker; 0: no limit"),
        _k("max_requests_per_client", 100, "requests one client address may have in flight per worker; then 429"),
        _k("body_buffer_bytes", "1MiB", "request bodies up to this size are read whole before going upstream"),
        _k("max_buffered_bytes", "64MiB", "request body bytes one worker buffers at once; beyond, bodies stream"),
    )),
    Table("server.admin_tokens[]", "named admin API tokens, stored only as their SHA-256", (
        _u("name", REQUIRED, "dpo", "who holds the token; the audit log names it"),
        _u("scope", REQUIRED, "read", "read, or full (erasure, checkpoints)"),
        _u("sha256", REQUIRED, "0" * 63 + "1", "the token's SHA-256 in hex (consentproxy keys token prints it)"),
    )),
    Table("secrets", "references to secrets, never the secrets: \"file:/path\" or \"env:NAME\"", (
        _u("consent_keys", "generated in DATA_DIR/secrets", "file:/etc/consentproxy/secrets/consent-keys",
           "lines KEYID:BASE64KEY; the first signs consent cookies, all verify"),
        _u("admin_token", "generated with the consent keys, else none", "env:CONSENTPROXY_ADMIN_TOKEN",
           "the admin API token of full scope, audited as admin"),
        _u("export_key", "generated with the consent keys, else none",
           "file:/etc/consentproxy/secrets/export-ed25519.key", "Ed25519 key that signs exports and checkpoints"),
    )),
    Table("store", "the consent record log", (
        _u("url", "SQLite file DATA_DIR/consent-records.db", "postgresql://consentproxy@db.internal:5432/consent",
           "sqlite:///path.db, or a PostgreSQL URI so several instances share one log"),
        _k("upkeep_interval", "1h", "how often each site's head is signed and its retention applied"),
    )),
    Table("geoip", "where visitors are: needed once a site has regimes", (
        _u("database", NONE, "/var/lib/GeoIP/GeoLite2-Country.mmdb",
           "a MaxMind Country or City .mmdb file; relative to this file"),
    )),
    Table("trackers", "tracker lists you obtain yourself, shared by every site", (), children=("lists",)),
    Table("trackers.lists[]", "one tracker list", (
        _u("format", REQUIRED, "tds", "trackerdb, tds, disconnect or abp"),
        _u("path", REQUIRED, "lists/tds.json", "the list file, relative to this file"),
        _k("categories", {}, "the list's category names mapped to ours, over the built-in mapping"),
    )),
    Table("sites.NAME", "one table per site, chosen by the request's Host", (
        _u("hosts", REQUIRED, ["www.example.nl", "example.nl"],
           "\"example.nl\", \"*.example.nl\", or \"*\" for every other host"),
        _u("upstream", REQUIRED, "http://10.0.1.20:8000", "http:// or https:// URL of the site"),
        _k("upstream_host", "client", "Host sent upstream: client, upstream (the URL's host) or a fixed name"),
        _k("connect_timeout", "5s", "then 502"),
        _k("read_timeout", "60s", "longest silence from the upstream; then 504"),
        _k("max_body_bytes", "100MiB", "larger request bodies get 413"),
        _k("body_grace", "10s", "a request body may take body_grace plus a second per body_min_rate bytes"),
        _k("body_min_rate", "1KiB", "bytes per second a request body must keep up; 0: no rate"),
        _k("body_timeout", "5m", "the longest a request body may take in all; then 408"),
        _k("client_address_headers", [], "more request headers carrying a visitor's address, removed"),
        _k("pass_client_headers", [], "client-address headers passed on when a trusted proxy sent them"),
        _k("rewrite_html", True, "inject the banner and block trackers in HTML pages"),
        _k("compress_html", True, "compress rewritten pages for clients that accept it"),
        _k("forward_client_ip", "full", "addresses the site sees in X-Forwarded-For: full, truncated or none"),
        _k("third_party", "report", "unknown third-party hosts: report, or hold them until Accept all"),
        _k("functional_hosts", [], "hosts the site needs and chose, never held as unknown third parties"),
        _k("discovery", "on", "browsers report the hosts and script cookies pages use: on or off"),
        _k("discovery_sample", 0.05, "the share of page views that report (0 to 1)"),
    ), required=True, children=("consent", "analytics", "regimes", "cookies", "services")),
    Table("sites.NAME.consent", "the banner and the consent it asks for", (
        _k("revision", 1, "raise it when the cookie statement changes: everyone is asked again"),
        _k("validity", "365d", "how long a choice is remembered; 1 to 400 days"),
        _k("statistics_exempt", False, "statistics runs anonymised through the proxy, so needs no consent"),
        _k("reask_on_new_vendor", True, "a vendor appears that a visitor's consent never named: ask again, "
           "for its category only"),
        _k("unknown_cookies", "block", "cookies nobody declared and no list knows: block or allow"),
        _k("database_purposes", "category",
           "cookies known only from the Open Cookie Database: purpose by category in the visitor's language, "
           "or the original (English)"),
        _k("cookie_name", "cp_consent", "the cookie that holds the visitor's choice"),
        _k("default_language", "nl", "nl, en, de or fr: when neither the page nor the browser names one"),
        _u("controller", "the site's first host name", "Kade IT-diensten B.V.",
           "who decides on the processing, named in the banner text"),
        _k("privacy_url", "/privacy",
           "the privacy statement; or per language: { nl = \"/privacy\", en = \"/en/privacy\" }"),
        _k("record_ip", "none", "what a consent record keeps of the IP address: none, truncated or keyed_hash"),
        _k("storage_location", "EEA", "where the data is kept, named in every notice version"),
        _k("jurisdiction", "NL", "whose law applies, named in every notice version"),
        _u("record_retention", "validity + 365 days", "760d", "how long consent events are kept; 30 to 3650 days"),
    ), children=("categories", "texts", "theme")),
    Table("sites.NAME.consent.theme", "the banner's look; unset keys keep banner.css's", (
        _u("background", "banner.css's", "#ffffff", "#rgb or #rrggbb; pairs below WCAG AA 4.5:1 are refused"),
        _u("text", "banner.css's", "#1a1a1a", "text colour"),
        _u("accent", "banner.css's", "#1d4ed8", "both main buttons and links"),
        _u("accent_text", "banner.css's", "#ffffff", "text on the accent colour"),
        _u("font", "banner.css's", "Inter, Arial, sans-serif", "a font-family list"),
        _u("radius", "banner.css's", "8px", "corner radius: px, rem or em"),
        _k("position", "bottom", "bottom, top or center"),
        _k("reopen_position", "bottom-left", "the re-open control: bottom-left, bottom-right, top-left, top-right, "
           "end or none; on screens under 40em a corner becomes end (after the page's content)"),
    )),
    Table("sites.NAME.consent.categories", "the categories, one table per id: a built-in one (necessary, "
          "preferences, statistics, marketing) to reword it, any other id (a-z, 0-9, _, -; at most 8) adds the "
          "site's own, off until granted", open_keys="category ids"),
    Table("sites.NAME.consent.categories.ID", "one category; texts for every language or per language", (
        _u("label", "the bundled text", {"nl": "Bezoekersstatistieken", "en": "Visitor statistics"},
           "the category's name in the banner (a site's own: its id, with a check-config warning)"),
        _u("description", "the bundled text", "What we count, and why.", "what the category is for"),
        _u("consent_mode", "built-in: its signals; own: none", ["analytics_storage"],
           "the Google Consent Mode v2 signals a grant of it grants"),
        _u("order", "preferences 10, statistics 20, marketing 30, own 50", 40,
           "its place in the banner, 1 to 1000 (necessary is always first)"),
    )),
    Table("sites.NAME.consent.texts", "banner text overrides, for every language or per language",
          open_keys="banner text keys: `consentproxy texts` lists them with their bundled values"),
    Table("sites.NAME.cookies[]", "the site's own cookies; its declarations win over every list", (
        _u("name", "one of name, prefix, pattern", "kade_session", "the cookie's exact name"),
        _u("prefix", "one of name, prefix, pattern", "wp_", "names starting with this"),
        _u("pattern", "one of name, prefix, pattern", "^cart_[0-9]+$", "a regular expression for names"),
        _u("category", REQUIRED, "necessary", "necessary, preferences, statistics, marketing or the site's own"),
        _u("purpose", EMPTY, "Keeps you logged in", "shown in the banner's cookie list"),
        _u("lifetime", EMPTY, "session", "shown in the banner's cookie list"),
        _u("provider", EMPTY, "Kade IT-diensten", "shown in the banner's cookie list"),
    )),
    Table("sites.NAME.services[]", "third parties the site uses", (
        _u("name", REQUIRED, "Mailchimp", "shown to visitors in the banner's settings"),
        _u("category", REQUIRED, "marketing", "necessary, preferences, statistics, marketing or the site's own"),
        _k("provider", "", "the company behind it"),
        _u("privacy_url", NONE, "https://www.intuit.com/privacy/statement/", "its privacy statement (http(s) URL)"),
        _k("cookies", [], "its cookies: names, or prefixes ending in *"),
        _k("scripts", [], "URL parts of its <script src>"),
        _k("iframes", [], "URL parts of its embeds"),
        _k("pixels", [], "URL parts of its tracking <img>"),
        _k("hosts", [], "its host names, for preconnect/dns-prefetch links"),
        _k("inline", [], "substrings that identify its inline <script> code"),
        _u("purpose", NONE, {"en": "Newsletter sign-up"}, "what it is for, per language"),
    )),
    Table("sites.NAME.analytics", "first-party analytics endpoints; hits anonymised before they go on", (
        _u("ga4", NONE, "https://region1.google-analytics.com", "GA4 base URL (/g/collect, /mp/collect follow)"),
        _u("matomo", NONE, "https://matomo.example.nl/matomo.php", "the Matomo tracker URL"),
        _u("matomo_token", NONE, "file:/etc/consentproxy/secrets/matomo-token",
           "secret reference to a token_auth: lets cip and country through"),
        _u("plausible", NONE, "https://plausible.io", "Plausible base URL (/api/event follows)"),
        _u("umami", NONE, "https://umami.example.nl", "Umami base URL (/api/send follows)"),
        _u("generic", NONE, "https://collector.example.nl/ingest", "where JSON hits are posted"),
        _k("ipv4", "drop", "what the backend learns of an IPv4 address: drop, v4/24 or v4/16"),
        _k("ipv6", "drop", "what the backend learns of an IPv6 address: drop, v6/32 or v6/48"),
        _k("query_allow", ["utm_source", "utm_medium", "utm_campaign"], "URL parameters kept in page URLs"),
        _k("referrer", "origin", "external referrers reduced to their origin, or none"),
        _k("dry_run", False, "log what would be sent, send nothing"),

    )),
    Table("sites.NAME.regimes", "consent regimes by place; everywhere else opt-in (needs [geoip])", (
        _k("opt_out", [], "countries (\"US\") or subdivisions (\"US-CA\") where trackers run until objected to"),
        _k("notice_only", [], "places where the visitor is only informed"),
    )),
)

#: the top-level tables
ROOT_KEYS: tuple[str, ...] = ("server", "secrets", "store", "geoip", "trackers", "sites")


def table(path: str) -> Table:
    return next(t for t in TABLES if t.path == path)
