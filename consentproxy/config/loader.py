"""Reading and validating the TOML configuration.

Every problem is reported as FILE: KEY: REASON, all of them at once, so an
operator fixes a broken file in one go instead of one restart per typo.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from consentproxy.config.consent import read_consent
from consentproxy.config.model import (
    ADMIN_SCOPES,
    CATEGORY_IDS,
    SECRETS_TOKEN_NAME,
    TRACKER_LIST_FORMATS,
    AdminTokenConfig,
    AnalyticsConfig,
    Config,
    GeoConfig,
    IPNetwork,
    Limits,
    ListenAddress,
    SecretsConfig,
    ServerConfig,
    SiteConfig,
    StoreConfig,
    TrackerListConfig,
    TrackersConfig,
)
from consentproxy.config.reader import ConfigError as ConfigError
from consentproxy.config.reader import Problem as Problem
from consentproxy.config.reader import Reader, describe, list_of, one_of
from consentproxy.config.secrets import SECRET_REF_HELP, is_secret_ref

T = TypeVar("T")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HOST_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$|^\*$")
_SITE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DIGEST_HELP = "printf %s TOKEN | sha256sum"


def parse_size(value: Any) -> int:
    """`10485760`, `"10MB"`, `"512KiB"` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10485760 or \"10MB\", got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}; use 0 or a size such as \"10MB\"")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            unit = (match.group(2) or "").lower()
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"expected a size such as 10485760 or \"10MB\", got {describe(value)}")


def parse_duration(value: Any) -> float:
    """`5`, `2.5`, `"500ms"`, `"2m"` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5 or \"500ms\", got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]
    else:
        raise ValueError(f"expected a duration such as 5 or \"500ms\", got {describe(value)}")
    if seconds <= 0:
        raise ValueError(f"must be greater than zero, got {value!r}; use a duration such as 5 or \"500ms\"")
    return seconds


def parse_listen(value: Any) -> ListenAddress:
    """`"127.0.0.1:8080"`, `"[::1]:8080"`, `":8080"` (all interfaces)."""
    if not isinstance(value, str):
        raise ValueError(f"expected \"HOST:PORT\", got {describe(value)}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected \"HOST:PORT\" such as \"127.0.0.1:8080\", got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"listen host must be an IP address or 'localhost', got {host!r}; use \"0.0.0.0:{port}\" "
                             "for every IPv4 address") from None
    return ListenAddress(host, port)


def parse_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected an address or network such as \"10.0.0.0/8\", got {describe(value)}")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {value!r}; use an address such as \"10.0.0.1\" or a "
                         "network such as \"10.0.0.0/8\"") from None
    if network.prefixlen == 0:
        raise ValueError(
            f"{value!r} trusts every address on the internet, so any client could forge "
            "X-Forwarded-For; list only the addresses of your own load balancers"
        )
    return network


def parse_upstream(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a URL such as \"http://127.0.0.1:8000\", got {describe(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not contain a query or fragment, got {value!r}; remove what follows ? or #")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}; use a port from 1 to 65535") from None
    return value.rstrip("/")


def parse_host_pattern(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a host name such as \"www.example.nl\", got {describe(value)}")
    host = value.strip().lower().rstrip(".")
    if _HOST_RE.match(host):
        return host
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a host name (use \"example.nl\", \"*.example.nl\" or \"*\"; no scheme, port or path)"
        ) from None


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {describe(value)}")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of at least 0, got {describe(value)}")
    return value


def _read_limits(reader: Reader | None) -> Limits:
    base = Limits()
    if reader is None:
        return base
    limits = Limits(
        max_header_bytes=reader.converted("max_header_bytes", base.max_header_bytes, parse_size),
        max_header_count=reader.converted("max_header_count", base.max_header_count, _positive_int),
        max_url_bytes=reader.converted("max_url_bytes", base.max_url_bytes, parse_size),
        header_timeout=reader.converted("header_timeout", base.header_timeout, parse_duration),
        keepalive_timeout=reader.converted("keepalive_timeout", base.keepalive_timeout, parse_duration),
        max_connections_per_client=reader.converted("max_connections_per_client", base.max_connections_per_client,
                                                    _non_negative_int),
        max_requests_per_client=reader.converted("max_requests_per_client", base.max_requests_per_client,
                                                 _non_negative_int),
        body_buffer_bytes=reader.converted("body_buffer_bytes", base.body_buffer_bytes, parse_size),
        max_buffered_bytes=reader.converted("max_buffered_bytes", base.max_buffered_bytes, parse_size),
    )
    reader.finish()
    return limits


def _read_server(reader: Reader | None, base_dir: Path) -> ServerConfig:
    base = ServerConfig()
    if reader is None:
        return base
    data_dir_text = reader.get("data_dir", str, str(base.data_dir))
    data_dir = Path(data_dir_text).expanduser()
    if not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    admin = reader.converted("admin_listen", None, parse_listen)
    listen = list_of(reader, "listen", parse_listen, base.listen)
    if not listen:
        reader.problem("listen", "needs at least one address, e.g. [\"127.0.0.1:8080\"]")
    if admin is not None and any(address.port == admin.port for address in listen):
        # Requests are told apart by the port they arrive on, so it must differ.
        reader.problem("admin_listen", f"port {admin.port} is also a proxy listen port; the admin listener needs "
                                            f"its own: choose another port, e.g. \"127.0.0.1:9090\"")
    server = ServerConfig(
        listen=listen,
        admin_listen=admin,
        workers=reader.converted("workers", base.workers, _positive_int),
        trusted_proxies=list_of(reader, "trusted_proxies", parse_network, ()),
        data_dir=data_dir,
        access_log=reader.get("access_log", bool, base.access_log),
        graceful_timeout=reader.converted("graceful_timeout", base.graceful_timeout, parse_duration),
        upstream_connections=reader.converted("upstream_connections", base.upstream_connections, _positive_int),
        limits=_read_limits(reader.sub("limits")),
        admin_tokens=_read_admin_tokens(reader),
    )
    reader.finish()
    return server


def _read_admin_tokens(reader: Reader) -> tuple[AdminTokenConfig, ...]:
    """`[[server.admin_tokens]]`: name, scope, sha256. A bad value is never echoed: it may be a pasted token."""
    raw = reader.get("admin_tokens", list, [])
    tokens: list[AdminTokenConfig] = []
    names: set[str] = {SECRETS_TOKEN_NAME}
    digests: set[str] = set()
    for index, table in enumerate(raw):
        if not isinstance(table, dict):
            reader.problem(f"admin_tokens[{index}]", f"expected a table [[server.admin_tokens]], got {describe(table)}")
            continue
        item = Reader(reader.file, reader.problems, table, f"{reader.key('admin_tokens')}[{index}]")
        before = len(reader.problems)
        name = item.get("name", str, "")
        if "name" not in table:
            item.problem("name", "is required: who holds the token (the audit log names it)")
        elif not TOKEN_NAME_RE.match(name):
            item.problem("name", "use 1-64 letters, digits, '.', '_', '-' or '@'")
        elif name in names:
            reason = ("is the name of [secrets] admin_token" if name == SECRETS_TOKEN_NAME
                      else "is already the name of another token")
            item.problem("name", f"{name!r} {reason}; each token needs its own, so the audit can tell them apart")
        scope = item.get("scope", str, "")
        if "scope" not in table:
            item.problem("scope", "is required: \"read\" or \"full\"")
        elif scope not in ADMIN_SCOPES:
            item.problem("scope", f"must be \"read\" or \"full\", got {scope!r}")
        digest = item.get("sha256", str, "").strip().lower()
        if "sha256" not in table:
            item.problem("sha256", f"is required: the token's SHA-256 in hex ({DIGEST_HELP})")
        elif not _SHA256_RE.match(digest):
            item.problem("sha256", f"must be the token's SHA-256 as 64 hexadecimal digits ({DIGEST_HELP}), "
                                   f"got {len(digest)} characters; never put the token itself here")
        elif digest == _EMPTY_SHA256:
            item.problem("sha256", "is the SHA-256 of an empty token; make a token with: consentproxy keys token "
                                   "--name NAME")
        elif digest in digests:
            item.problem("sha256", "is the digest of another configured token; each holder needs a token of "
                                   "their own: consentproxy keys token --name NAME")
        item.finish()
        names.add(name)
        digests.add(digest)
        if len(reader.problems) == before:
            tokens.append(AdminTokenConfig(name, scope, digest))  # type: ignore[arg-type]
    return tuple(tokens)


def _read_secrets(reader: Reader | None) -> SecretsConfig:
    if reader is None:
        return SecretsConfig()
    values: dict[str, str | None] = {}
    for f in fields(SecretsConfig):
        value = reader.get(f.name, str, None)
        if value is not None and not is_secret_ref(value):
            reader.problem(f.name, f"secrets are never written into the configuration; {SECRET_REF_HELP}")
            value = None
        values[f.name] = value
    reader.finish()
    return SecretsConfig(**values)


def _read_store(reader: Reader | None) -> StoreConfig:
    if reader is None:
        return StoreConfig()
    url = reader.get("url", str, "")
    if url and not url.startswith(("sqlite:", "postgresql:", "postgres:")):
        reader.problem("url", f"must start with sqlite: or postgresql:, got {url!r}; e.g. "
                              "\"postgresql://consentproxy@db.internal:5432/consent\", or leave it out for an SQLite "
                              "file in the data directory")
    interval = reader.converted("upkeep_interval", StoreConfig().upkeep_interval, parse_duration)
    reader.finish()
    return StoreConfig(url=url, upkeep_interval=interval)


def _read_upstream_host(reader: Reader) -> tuple[str, str]:
    value = reader.get("upstream_host", str, "client")
    if value in ("client", "upstream"):
        return value, ""
    try:
        return "fixed", parse_host_pattern(value)
    except ValueError:
        reader.problem("upstream_host", f"must be \"client\", \"upstream\" or a host name, got {value!r}")
        return "client", ""


_SITE_DEFAULTS = SiteConfig(name="", hosts=(), upstream="")
#: the sites of the last configuration read, by name, with the tables they were read from: a reload of
#: 10,000 sites reads again only the tables that changed (an equal table gives an equal site)
_last_sites: dict[str, tuple[dict[str, Any], SiteConfig]] = {}


def _read_site(reader: Reader, name: str) -> SiteConfig | None:
    before = len(reader.problems)
    if not _SITE_NAME_RE.match(name):
        reader.problems.append(Problem(reader.file, reader.path, "site names may use letters, digits, '.', '_', '-'"))
    hosts = list_of(reader, "hosts", parse_host_pattern, ())
    if "hosts" not in reader.table:
        reader.problem("hosts", "is required: the Host names this site answers to, e.g. [\"example.nl\"]")
    elif not hosts and len(reader.problems) == before:
        reader.problem("hosts", "needs at least one host name, e.g. [\"example.nl\"]")
    upstream = reader.converted("upstream", "", parse_upstream)
    if "upstream" not in reader.table:
        reader.problem("upstream", "is required: the URL of the website behind the proxy")
    mode, fixed = _read_upstream_host(reader)
    base = _SITE_DEFAULTS
    site = SiteConfig(
        name=name,
        hosts=hosts,
        upstream=upstream,
        upstream_host=mode,  # type: ignore[arg-type]
        upstream_host_value=fixed,
        connect_timeout=reader.converted("connect_timeout", base.connect_timeout, parse_duration),
        read_timeout=reader.converted("read_timeout", base.read_timeout, parse_duration),
        max_body_bytes=reader.converted("max_body_bytes", base.max_body_bytes, parse_size),
        rewrite_html=reader.get("rewrite_html", bool, base.rewrite_html),
        compress_html=reader.get("compress_html", bool, base.compress_html),
        forward_client_ip=reader.converted("forward_client_ip", base.forward_client_ip, _forward_client_ip),
        body_grace=reader.converted("body_grace", base.body_grace, parse_duration),
        body_min_rate=reader.converted("body_min_rate", base.body_min_rate, parse_size),
        body_timeout=reader.converted("body_timeout", base.body_timeout, parse_duration),
        **_read_client_headers(reader),
        consent=read_consent(reader),
        analytics=_read_analytics(reader.sub("analytics")),
        **_read_regimes(reader.sub("regimes")),
        third_party=reader.converted("third_party", base.third_party, _third_party),
        functional_hosts=list_of(reader, "functional_hosts", parse_host_pattern, ()),
        discovery=reader.converted("discovery", base.discovery, _discovery),
        discovery_sample=reader.converted("discovery_sample", base.discovery_sample, _share),
    )
    reader.finish()
    return site if len(reader.problems) == before else None


_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
#: the forwarding headers the proxy writes itself (forward_client_ip decides what they hold)
_OWN_FORWARDING = ("x-forwarded-for", "forwarded", "x-forwarded-proto", "x-forwarded-host")


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_NAME_RE.match(value.lower()):
        raise ValueError(f"expected a header name such as \"X-Visitor-IP\", got {describe(value)}")
    if value.lower() in _OWN_FORWARDING:
        raise ValueError(f"{value} is written by the proxy itself (see forward_client_ip)")
    return value.lower()


def _read_client_headers(reader: Reader) -> dict[str, tuple[str, ...]]:
    """`client_address_headers` (removed like the built-in ones) and `pass_client_headers` (passed from a
    trusted proxy: only client-address headers, and only where the site sees full addresses)."""
    from consentproxy.privacy.client_headers import CLIENT_ADDRESS_HEADERS

    extra = list_of(reader, "client_address_headers", _header_name, ())
    passed = list_of(reader, "pass_client_headers", _header_name, ())
    known = {name.decode("latin-1") for name in CLIENT_ADDRESS_HEADERS} | set(extra)
    for name in passed:
        if name not in known:
            reader.problem("pass_client_headers", f"{name} is no client-address header (add it to "
                                                  "client_address_headers if it is one)")
    if passed and reader.table.get("forward_client_ip", "full") != "full":
        reader.problem("pass_client_headers", "would hand the site full visitor addresses, while "
                                              "forward_client_ip promises it none or truncated ones; remove "
                                              "pass_client_headers or set forward_client_ip = \"full\"")
    return {"client_address_headers": extra, "pass_client_headers": passed}


def _third_party(value: Any) -> Literal["report", "hold"]:
    if value not in ("report", "hold"):
        raise ValueError(f"must be \"report\" (list unknown third parties) or \"hold\" (also hold them until "
                         f"Accept all), got {describe(value)}")
    return value  # type: ignore[no-any-return]


def _discovery(value: Any) -> Literal["on", "off"]:
    if value not in ("on", "off"):
        raise ValueError(f"must be \"on\" (browsers report the hosts and cookies pages use) or \"off\", got "
                         f"{describe(value)}")
    return value  # type: ignore[no-any-return]


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"must be a number from 0 to 1 (the share of page views, 0.05 is one in twenty), got "
                         f"{describe(value)}")
    return float(value)


def _forward_client_ip(value: Any) -> Literal["full", "truncated", "none"]:
    if value not in ("full", "truncated", "none"):
        raise ValueError(f"must be one of full, truncated, none, got {describe(value)}")
    return value  # type: ignore[no-any-return]


_PLACE_RE = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$")


def _place(value: Any) -> str:
    from consentproxy.geo.regimes import ALWAYS_OPT_IN

    if not isinstance(value, str) or not _PLACE_RE.match(value):
        raise ValueError(f"expected a country such as \"US\" or a subdivision such as \"US-CA\", got {describe(value)}")
    if value.split("-", 1)[0] in ALWAYS_OPT_IN:
        raise ValueError(f"{value} is in the EEA, the UK or Switzerland, where consent is always opt-in; remove "
                         "it (only places outside them take another regime)")
    return value


def _read_regimes(reader: Reader | None) -> dict[str, tuple[str, ...]]:
    """`[sites.NAME.regimes]`: `opt_out = ["US-CA", …]`, `notice_only = […]`; everywhere else opt-in."""
    if reader is None:
        return {}
    regimes = {key: list_of(reader, key, _place, ()) for key in ("opt_out", "notice_only")}
    both = set(regimes["opt_out"]) & set(regimes["notice_only"])
    if both:
        reader.problem("notice_only", f"{', '.join(sorted(both))} also listed in opt_out; a place has one regime: "
                                           "remove it from one of the lists")
    reader.finish()
    return regimes


def _backend_url(value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValueError(f"expected an http(s) URL, got {describe(value)}")
    return value.rstrip("/") if not value.endswith(".php") else value


def _secret_ref(value: Any) -> str:
    if not isinstance(value, str) or not is_secret_ref(value):
        raise ValueError(f"secrets are never written into the configuration: {SECRET_REF_HELP}")
    return value


def _read_analytics(reader: Reader | None) -> AnalyticsConfig:
    """`[sites.NAME.analytics]`: backend URLs and the anonymisation settings."""
    if reader is None:
        return AnalyticsConfig()
    base = AnalyticsConfig()
    config = AnalyticsConfig(
        **{key: reader.converted(key, "", _backend_url) for key in ("ga4", "matomo", "plausible", "umami", "generic")},
        matomo_token=reader.converted("matomo_token", "", _secret_ref),
        ipv4=reader.converted("ipv4", base.ipv4, one_of("drop", "v4/24", "v4/16")),
        ipv6=reader.converted("ipv6", base.ipv6, one_of("drop", "v6/32", "v6/48")),
        query_allow=list_of(reader, "query_allow", _parameter_name, base.query_allow),
        referrer=reader.converted("referrer", base.referrer, one_of("origin", "none")),
        dry_run=reader.get("dry_run", bool, base.dry_run),
    )
    reader.finish()
    return config


def _parameter_name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 100 or any(c in value for c in "&=#? "):
        raise ValueError(f"expected a URL parameter name such as \"utm_source\", got {describe(value)}")
    return value


def _read_geoip(reader: Reader | None, base_dir: Path) -> GeoConfig:
    if reader is None:
        return GeoConfig()
    path = reader.get("database", str, "")
    reader.finish()
    return GeoConfig(database=(base_dir / path) if path else None)


def _read_trackers(reader: Reader | None, base_dir: Path) -> TrackersConfig:
    """`[trackers]`: `lists = [{format = "tds", path = "tds.json", categories = {Analytics = "statistics"}}]`.

    Only the shape is checked here; the files are read where the matchers are built (`tracker_lists`), which
    names a broken one with its path and reason.
    """
    if reader is None:
        return TrackersConfig()
    raw = reader.get("lists", list, [])
    lists: list[TrackerListConfig] = []
    for index, table in enumerate(raw):
        if not isinstance(table, dict):
            reader.problem(f"lists[{index}]", f"expected a table {{format = \"...\", path = \"...\"}}, got "
                                              f"{describe(table)}")
            continue
        item = Reader(reader.file, reader.problems, table, f"{reader.key('lists')}[{index}]")
        before = len(reader.problems)
        formats = ", ".join(TRACKER_LIST_FORMATS)
        list_format = item.get("format", str, "")
        if "format" not in table:
            item.problem("format", f"is required: one of {formats}")
        elif list_format not in TRACKER_LIST_FORMATS:
            item.problem("format", f"must be one of {formats}, got {list_format!r}")
        path = item.get("path", str, "")
        if "path" not in table:
            item.problem("path", "is required: the list file (relative to this configuration file)")
        categories = item.get("categories", dict, {})
        for name, category in categories.items():
            if category not in CATEGORY_IDS:
                item.problem(f"categories.{name}", f"must be one of {', '.join(CATEGORY_IDS)}, got "
                                                   f"{describe(category)}")
        item.finish()
        if len(reader.problems) == before:
            lists.append(TrackerListConfig(list_format, base_dir / path,  # type: ignore[arg-type]
                                           {str(k): str(v) for k, v in categories.items()}))
    reader.finish()
    return TrackersConfig(tuple(lists))


def config_from_dict(data: dict[str, Any], file: str, base_dir: Path) -> Config:
    """Validate a parsed TOML document; raises ConfigError listing every problem."""
    problems: list[Problem] = []
    root = Reader(file, problems, data, "")
    server = _read_server(root.sub("server"), base_dir)
    secrets = _read_secrets(root.sub("secrets"))
    store = _read_store(root.sub("store"))
    geoip = _read_geoip(root.sub("geoip"), base_dir)
    trackers = _read_trackers(root.sub("trackers"), base_dir)
    sites_reader = root.sub("sites")
    sites: list[SiteConfig] = []
    last = _last_sites
    read: dict[str, tuple[dict[str, Any], SiteConfig]] = {}
    if sites_reader is None or not sites_reader.table:
        problems.append(Problem(file, "sites", "no site configured; add a [sites.NAME] table with hosts and upstream"))
    else:
        for name, table in sites_reader.table.items():
            sites_reader.seen.add(name)
            if not isinstance(table, dict):
                sites_reader.problem(name, f"expected a table [sites.{name}], got {describe(table)}")
                continue
            known = last.get(name)
            if known is not None and known[0] == table:
                site: SiteConfig | None = known[1]
            else:
                site = _read_site(Reader(file, problems, table, f"sites.{name}"), name)
            if site is not None:
                sites.append(site)
                read[name] = (table, site)
    _check_host_clashes(file, sites, problems)
    if geoip.database is None:
        problems += [Problem(file, f"sites.{site.name}.regimes", "regimes by place need a GeoIP database: set "
                             "[geoip] database") for site in sites if site.uses_location]
    root.finish()
    if problems:
        raise ConfigError(problems)
    _remember_sites(read)
    return Config(server=server, sites=tuple(sites), secrets=secrets, store=store, geoip=geoip,
                  trackers=trackers)


def _remember_sites(read: dict[str, tuple[dict[str, Any], SiteConfig]]) -> None:
    global _last_sites
    _last_sites = read  # one assignment: a check-config in another thread sees the old or the new whole


def _check_host_clashes(file: str, sites: list[SiteConfig], problems: list[Problem]) -> None:
    owner: dict[str, str] = {}
    for site in sites:
        for host in site.hosts:
            if host in owner:
                problems.append(Problem(file, f"sites.{site.name}.hosts",
                                        f"{host!r} is already served by site {owner[host]!r}; a host "
                                        "belongs to one site: remove it from one of them"))
            else:
                owner[host] = site.name


def load_config(path: Path | str) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(file, "(file)", f"cannot be read: {exc.strerror or exc}; check the path "
                                                     "given with -c")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([Problem(file, "(file)", "is not UTF-8 text; save it as UTF-8")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file, "(syntax)", f"not valid TOML: {exc}")]) from None
    config = config_from_dict(data, file, path.resolve().parent)
    return dataclasses.replace(config, source=path.resolve())
