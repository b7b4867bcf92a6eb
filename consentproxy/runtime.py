"""Everything derived from one configuration that requests need, built once.

A reload builds a new Runtime and swaps it in; requests in flight keep the
one they started with, so a reload never changes a request half-way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentproxy.admin.app import AdminContext
from consentproxy.analytics.endpoint import AnalyticsEndpoint
from consentproxy.banner.assets import AssetsMissing, BannerAssets
from consentproxy.banner.assets import fingerprint as assets_fingerprint
from consentproxy.banner.declaration import SiteDeclaration
from consentproxy.banner.endpoints import ConsentEndpoints
from consentproxy.banner.guard import SiteGuard, compile_guard
from consentproxy.banner.markup import SiteMarkup
from consentproxy.compiled import Compiled
from consentproxy.config.loader import ConfigError, Problem
from consentproxy.config.model import Config, ServiceConfig, SiteConfig
from consentproxy.config.secrets import SecretError, SigningKey, generate_keys, parse_consent_keys, read_secret
from consentproxy.consent.api import ConsentApi
from consentproxy.consent.notice import SiteNotices, storing
from consentproxy.consent.state import ConsentCodec
from consentproxy.cookies.enforcement import CookieEnforcement
from consentproxy.cookies.inventory import CookieInventory
from consentproxy.discovery.csp import DiscoveryPolicy
from consentproxy.discovery.endpoint import ReportEndpoint, ReportRoute
from consentproxy.discovery.sightings import Classifier
from consentproxy.geo.lookup import GeoError, GeoIP
from consentproxy.geo.regimes import SiteLocator
from consentproxy.html.functional import ThirdParties
from consentproxy.html.step import HtmlRewriting, analytics_routing, site_parties
from consentproxy.html.trackers import ListIndex, TrackerMatcher
from consentproxy.proxy.forwarded import TrustedProxies
from consentproxy.proxy.pipeline import Step
from consentproxy.proxy.sites import Site, SiteRouter
from consentproxy.records import RecordWriter, StoreError, load_private_key, open_store
from consentproxy.tracker_lists import load_tracker_lists

logger = logging.getLogger("consentproxy.server")


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    router: SiteRouter
    trusted: TrustedProxies
    admin_port: int | None
    admin: AdminContext
    #: what this configuration's sites share (see consentproxy/compiled.py); the next build starts from it
    compiled: Compiled = dataclasses.field(default_factory=Compiled)
    #: what every site's steps were built with besides its own table: a site is reused only where it is equal
    environment: tuple[object, ...] = ()

    @classmethod
    def build(cls, config: Config, inventory: CookieInventory, records: RecordWriter,
              previous: Runtime | None = None) -> Runtime:
        """Raises ConfigError when a secret cannot be read or a tracker list cannot be used.

        With `previous` (a reload), what did not change is taken over: a site whose table is equal, built with
        the same shared objects, is the same `Site`, and shared compiled objects are not compiled again. Runs
        in a thread at a reload: it touches nothing the event loop uses but read-only shared objects."""
        compiled = Compiled(previous.compiled if previous is not None else None)
        keys = consent_keys(config)
        codec = compiled.get(("codec", keys), lambda: ConsentCodec(keys))
        base_assets = shared_assets(config, compiled)
        assets = base_assets.copy()
        geoip = shared_geoip(config, compiled)
        tokens = matomo_tokens(config)
        lists = load_tracker_lists(config)  # once, shared by every site
        lists_key = _Same(lists) if len(lists) or lists.filters else None
        shared = SharedSteps(compiled, lists if lists_key is not None else None, lists_key)
        environment: tuple[object, ...] = tuple(_Same(item) for item in (codec, geoip, inventory, records,
                                                                        lists_key, base_assets))
        reusable = {site.name: site for site in previous.router.sites} \
            if previous is not None and previous.environment == environment else {}
        sites = []
        for site_config in config.sites:
            old = reusable.get(site_config.name)
            if old is not None and (old.config is site_config or old.config == site_config) \
                    and old.matomo == tokens.get(site_config.name):  # `is`: the loader kept an unchanged table's
                sites.append(old)
            else:
                sites.append(Site.build(site_config, site_steps(site_config, codec, inventory, assets, records, geoip,
                                                                tokens.get(site_config.name), lists, shared),
                                        matomo=tokens.get(site_config.name)))
        for site in sites:  # a reused site's guard comes from the registry it was built with
            for step in site.steps:
                if isinstance(step, HtmlRewriting) and step.markup.guard is not None \
                        and step.markup.guard.asset is not None:
                    assets.put(step.markup.guard.asset)
        compiled.done()
        admin = config.server.admin_listen
        return cls(
            config=config,
            router=SiteRouter(sites),
            trusted=TrustedProxies(config.server.trusted_proxies),
            admin_port=admin.port if admin else None,
            admin=AdminContext.build(config, _token_digest(config)),
            compiled=compiled,
            environment=environment,
        )


class _Same:
    """An object as a cache key by its identity (and kept alive while the key is): lists, codecs."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


@dataclass(frozen=True, slots=True)
class SharedSteps:
    """Hands out the parts of a site's steps that depend only on shared inputs, one per distinct input."""

    compiled: Compiled
    lists: ListIndex | None = None
    lists_key: object = None

    def matcher(self, services: tuple[ServiceConfig, ...]) -> TrackerMatcher:
        """One matcher (rules and answer caches) for every site with these services."""
        return self.compiled.get(("matcher", _services_key(services), self.lists_key),
                                 lambda: TrackerMatcher(services, lists=self.lists))

    def guard(self, site: SiteConfig, assets: BannerAssets, matcher: TrackerMatcher,
              parties: ThirdParties) -> SiteGuard:
        """The site's client-side guard, compiled once for every site with the same inputs."""
        unblocked = analytics_routing(site)[0]
        own = (site.hosts, site.functional_hosts) if parties.hold else None  # only a held site's table names it
        key = ("guard", _services_key(site.consent.services), self.lists_key, unblocked, own, assets.guard_source)
        asset, categories = self.compiled.get(
            key, lambda: compile_guard(assets.guard_source, matcher.fresh(), unblocked, parties))
        return SiteGuard(assets.put(asset), categories, asset)


def _services_key(services: tuple[ServiceConfig, ...]) -> object:
    """Services as a key: their text (a service's purposes are a dict, which does not hash)."""
    return repr(services) if services else ()


def shared_assets(config: Config, compiled: Compiled) -> BannerAssets:
    """The banner files, read and compressed once while they do not change."""
    return compiled.get(("banner assets", assets_fingerprint()), lambda: banner_assets(config))


def shared_geoip(config: Config, compiled: Compiled) -> GeoIP | None:
    """The GeoIP database, opened again only when its file changed."""
    path = config.geoip.database
    if path is None:
        return None
    try:
        stat = path.stat()
        stamp: object = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        return open_geoip(config)  # the error, named as open_geoip names it
    return compiled.get(("geoip", str(path), stamp), lambda: open_geoip(config))


def site_steps(site: SiteConfig, codec: ConsentCodec, inventory: CookieInventory, assets: BannerAssets,
               records: RecordWriter, geoip: GeoIP | None = None, matomo: str | None = None,
               lists: ListIndex | None = None, shared: SharedSteps | None = None) -> tuple[Step, ...]:
    """A site's pipeline, in order: the decision and cookies first, our own URLs, then the page rewrite.

    `lists`: the operator's tracker lists, shared with every other site's matcher. `shared`: where what
    depends only on shared inputs (matcher, guard) is taken from; without it, this site's own."""
    locator = SiteLocator(geoip, site.opt_out, site.notice_only) if geoip is not None else None
    notices = SiteNotices(site, inventory, storing(records))  # shown in the banner, recorded with decisions
    cookies = CookieEnforcement(site, codec, inventory, locator, notices=notices)
    analytics = AnalyticsEndpoint(site, codec.keys[0].key, matomo) if site.analytics.enabled else None
    matcher = shared.matcher(site.consent.services) if shared is not None \
        else TrackerMatcher(site.consent.services, lists=lists)
    declaration = SiteDeclaration(site, inventory, notices.cookie_list)  # the listing the notices are made of
    discovery = site.discovery == "on"
    parties = site_parties(site)
    steps: list[Step] = [cookies]
    if discovery:  # its URL is under the consent prefix, which the consent endpoints take whole
        classifier = Classifier(site.name, matcher, parties, cookies.classifier)
        steps.append(ReportRoute(ReportEndpoint(site.name, classifier, inventory.buffer, site.consent.cookie_name)))
    steps.append(ConsentEndpoints(site, assets, ConsentApi(site, codec, cookies, records, notices), analytics,
                                  declaration))
    if site.rewrite_html:
        guard = shared.guard(site, assets, matcher, parties) if shared is not None else None
        markup = SiteMarkup(site, assets, inventory, matcher, declaration=declaration, notices=notices, guard=guard)
        steps.append(HtmlRewriting(site, markup, matcher, parties))
    if discovery:  # after the HTML step, which adjusts the site's own policies for the banner and not ours
        steps.append(DiscoveryPolicy(site))
    return tuple(steps)


def matomo_tokens(config: Config) -> dict[str, str]:
    """Each site's Matomo token_auth, read from its secret reference (sites without one are left out)."""
    tokens = {}
    for site in config.sites:
        if site.analytics.matomo_token:
            tokens[site.name] = _resolve(config, f"sites.{site.name}.analytics.matomo_token",
                                         site.analytics.matomo_token).strip()
    return tokens


def open_geoip(config: Config) -> GeoIP | None:
    """The GeoIP database when one is configured; a file that cannot be used is a configuration error."""
    if config.geoip.database is None:
        return None
    try:
        return GeoIP(config.geoip.database)
    except GeoError as exc:
        raise ConfigError([Problem(_file(config), "geoip.database",
                                   f"{exc}; point it at a readable MaxMind GeoLite2/GeoIP2 Country or City "
                                   ".mmdb file (relative paths start at the configuration file)")]) from None


def _check_geoip(config: Config) -> None:
    geoip = open_geoip(config)
    if geoip is not None:
        geoip.close()  # only a check: the runtime opens its own


def store_url(config: Config) -> str:
    """The consent log: `[store] url`, by default an SQLite file in the data directory."""
    # "sqlite://" and an absolute path make the three slashes of sqlite:///abs; one more would print as //abs
    return config.store.url or f"sqlite://{(config.server.data_dir / 'consent-records.db').absolute()}"


def check_store(config: Config) -> list[Problem]:
    """Open the store once (creating or migrating its schema), so a bad one fails at start, not at a click.

    The default store lives in the data directory, so its failure names `server.data_dir`, the key to fix.
    """
    try:
        open_store(store_url(config)).close()
    except (StoreError, ValueError, OSError) as exc:
        if config.store.url:
            return [Problem(_file(config), "store.url", f"cannot open the consent record store: {exc}; check the "
                                                        "URL, or leave it out for an SQLite file in the data "
                                                        "directory")]
        return [Problem(_file(config), "server.data_dir", f"cannot open the consent record store in "
                                                          f"{config.server.data_dir}: {exc}; the directory must "
                                                          "exist and be writable (mkdir -p "
                                                          f"{config.server.data_dir})")]
    return []


def banner_assets(config: Config) -> BannerAssets:
    try:
        return BannerAssets()
    except AssetsMissing as exc:
        raise ConfigError([Problem(_file(config), "banner assets", str(exc))]) from None


def check_references(config: Config) -> list[Problem]:
    """Resolve every configured secret, open the GeoIP database and read the tracker lists now: a bad reference
    fails at start (the lists stay cached for the runtime built next)."""
    problems: list[Problem] = []
    checks = [(consent_keys, config.secrets.consent_keys), (_token_digest, config.secrets.admin_token),
              (_check_export_key, config.secrets.export_key), (_check_geoip, config.geoip.database),
              (matomo_tokens, any(site.analytics.matomo_token for site in config.sites) or None),
              (load_tracker_lists, config.trackers.lists or None)]
    for resolve, ref in checks:
        if ref is not None:
            try:
                resolve(config)
            except ConfigError as exc:
                problems += exc.problems
    return problems


def consent_keys(config: Config) -> tuple[SigningKey, ...]:
    ref = config.secrets.consent_keys
    if ref is None:
        raise ConfigError([Problem(_file(config), "secrets.consent_keys", "is not set")])
    try:
        return parse_consent_keys(_resolve(config, "secrets.consent_keys", ref), ref)
    except SecretError as exc:
        raise ConfigError([Problem(_file(config), "secrets.consent_keys",
                                   f"{exc}; {secret_fix('secrets.consent_keys', ref, config)}")]) from None


def with_default_keys(config: Config) -> Config:
    """A configuration without `[secrets] consent_keys` gets keys generated in its data directory.

    Done once in the main process, before any worker starts, so all workers sign alike.
    """
    if config.secrets.consent_keys is not None:
        return config
    directory = config.server.data_dir / "secrets"
    generated = generate_keys(directory)
    logger.warning("no [secrets] consent_keys configured: using the keys in %s; instances behind one "
                   "load balancer must share one key file", directory)
    secrets = dataclasses.replace(
        config.secrets,
        consent_keys=f"file:{generated['consent_keys']}",
        admin_token=config.secrets.admin_token or f"file:{generated['admin_token']}",
        export_key=config.secrets.export_key or f"file:{generated['export_key']}",
    )
    return dataclasses.replace(config, secrets=secrets)


def _token_digest(config: Config) -> bytes | None:
    ref = config.secrets.admin_token
    if ref is None:
        return None
    return hashlib.sha256(_resolve(config, "secrets.admin_token", ref).encode()).digest()


def export_signing_key(config: Config) -> Ed25519PrivateKey | None:
    """The Ed25519 key that signs checkpoints and exports; None when none is configured."""
    if config.secrets.export_key is None:
        return None
    ref = config.secrets.export_key
    try:
        return load_private_key(_export_key(config))
    except ValueError as exc:
        raise ConfigError([Problem(_file(config), "secrets.export_key",
                                   f"{exc}; {secret_fix('secrets.export_key', ref, config)}")]) from None


def _export_key(config: Config) -> str:
    return _resolve(config, "secrets.export_key", config.secrets.export_key or "")


def _check_export_key(config: Config) -> None:
    """Resolved and parsed: a malformed key must stop the start, not the first checkpoint an hour later."""
    export_signing_key(config)


#: what `consentproxy keys generate` names each file it writes
_GENERATED = {"secrets.consent_keys": "consent-keys", "secrets.admin_token": "admin-token",
              "secrets.export_key": "export-ed25519.key"}


def secret_fix(key: str, ref: str, config: Config) -> str:
    """What to do about a secret that cannot be used: generate the file, or set the variable."""
    if ref.startswith("env:"):
        return f"set it (export {ref[4:]}=...), or reference a file instead: \"file:/path\""
    if not ref.startswith("file:"):
        return "use \"file:/path/to/file\" or \"env:VARIABLE_NAME\""
    path = Path(ref[5:]).expanduser()
    if key in _GENERATED:
        generated = path.parent / _GENERATED[key]
        fix = f"create it with: consentproxy keys generate --dir {path.parent}"
        if generated != path:
            fix += f" (which writes {_GENERATED[key]}; reference \"file:{generated}\")"
        elif path.exists():
            fix += " --force (this replaces every key there)"
        return fix
    return f"write the secret into {path} (chmod 600 {path})"


def _resolve(config: Config, key: str, ref: str) -> str:
    try:
        return read_secret(ref)
    except SecretError as exc:
        raise ConfigError([Problem(_file(config), key, f"{exc}; {secret_fix(key, ref, config)}")]) from None


def _file(config: Config) -> str:
    return str(config.source) if config.source else "(command line)"
