"""The `consentproxy` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consentproxy import __version__
from consentproxy.config.loader import ConfigError, Problem, load_config
from consentproxy.config.model import CATEGORY_IDS, LANGUAGES, Config, SiteConfig
from consentproxy.config.quickstart import default_data_dir, quickstart_config
from consentproxy.config.secrets import generate_keys
from consentproxy.observability.multiprocess import share_metrics, unshare_metrics

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from consentproxy.records.store import RecordStore


def _find_site(config: Config, name_or_host: str) -> SiteConfig | None:
    """A site by its name, else the site that answers to this host name."""
    from consentproxy.proxy.sites import Site, SiteRouter

    named = next((s for s in config.sites if s.name == name_or_host), None)
    if named is not None:
        return named
    routed = SiteRouter(Site.build(s) for s in config.sites).route(name_or_host.encode())
    return routed.config if routed is not None else None


def cmd_serve(args: argparse.Namespace) -> int:
    # Nothing that imports prometheus_client may be imported before the number of workers is known (see
    # consentproxy/observability/multiprocess.py): the runtime and the server come after that.
    from consentproxy.collector import collector_paused

    if args.config and args.upstream:
        print("error: use either -c FILE or --upstream URL, not both", file=sys.stderr)
        return 2
    if args.config:
        from consentproxy.config.preflight import ensure_data_dir, preflight

        try:
            with collector_paused():  # 10,000 sites: a million objects, no reason to scan them while reading
                loaded = load_config(args.config)
            created = ensure_data_dir(loaded)
            problems, _ = preflight(loaded, ports=True, running_ok=False)
            _prepare_workers(loaded)
            from consentproxy.runtime import check_references, with_default_keys

            problems += check_references(loaded)
            if problems:
                raise ConfigError(problems)
            config = with_default_keys(loaded)
        except ConfigError as exc:
            unshare_metrics()
            print(f"configuration error:\n{exc}", file=sys.stderr)
            return 2
        if created is not None:
            print(f"consentproxy: created the data directory {created}", file=sys.stderr)
    elif args.upstream:
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        try:
            config = quickstart_config(
                args.upstream, args.listen or ["127.0.0.1:8080"], data_dir, args.admin_listen, args.workers or 1,
                tuple(args.trusted_proxy or ()), args.access_log,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _prepare_workers(config)
        print(f"consentproxy: fronting {args.upstream}; data directory {config.server.data_dir}", file=sys.stderr)
    else:
        print("error: give -c FILE, or --upstream URL for the quick start", file=sys.stderr)
        return 2
    from consentproxy.admin.index import admin_summary
    from consentproxy.server.runner import serve

    print(admin_summary(config), file=sys.stderr)
    try:
        return serve(config, args.log_level)
    finally:
        unshare_metrics()  # whether it served or could not start


def _prepare_workers(config: Config) -> None:
    """Several workers sum their metrics in shared files, named before prometheus_client is first imported."""
    if config.server.workers > 1:
        share_metrics()


#: check-config names each site up to this many; a hosting platform's 10,000 get one summary line
LISTED_SITES = 20


def _sites_summary(config: Config) -> str:
    sites = config.sites
    if len(sites) <= LISTED_SITES:
        return f"{len(sites)} site(s): " + ", ".join(
            f"{site.name} ({', '.join(site.hosts)} → {site.upstream})" for site in sites)
    hosts = sum(len(site.hosts) for site in sites)
    return (f"{len(sites)} sites, {hosts} host names ({', '.join(site.name for site in sites[:3])}, … "
            f"{sites[-1].name})")


def cmd_check_config(args: argparse.Namespace) -> int:
    from consentproxy.config.categories import own_category_notes
    from consentproxy.config.preflight import preflight
    from consentproxy.runtime import check_references

    try:
        config = load_config(args.config)
        problems: list[Problem] = []
        notes: list[str] = []
        if not args.file_only:  # the machine too: what serve would meet here
            problems, notes = preflight(config, ports=not args.no_ports)
            problems += check_references(config)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found:\n{exc}", file=sys.stderr)
        return 1
    print(f"{args.config}: OK — {_sites_summary(config)}")
    for note in notes + own_category_notes(config):
        print(f"note: {note}")
    if args.file_only:
        return 0
    if not config.server.data_dir.exists():
        print(f"note: the data directory {config.server.data_dir} does not exist yet; `serve` creates it")
    if config.secrets.consent_keys is None:
        print(f"note: no [secrets] consent_keys; `serve` will use keys in {config.server.data_dir / 'secrets'} "
              f"(or make them: consentproxy keys generate --dir {config.server.data_dir / 'secrets'})")
    return 0


def cmd_texts(args: argparse.Namespace) -> int:
    """Every banner and category text with its bundled value per language; with --site, its overrides."""
    from consentproxy.consent.textlist import entries, render_markdown, render_text

    site = None
    if args.site:
        if not args.config:
            print("error: --site needs -c CONFIG", file=sys.stderr)
            return 2
        try:
            site = _find_site(load_config(args.config), args.site)
        except ConfigError as exc:
            print(f"configuration error:\n{exc}", file=sys.stderr)
            return 2
        if site is None:
            print(f"error: no site named or answering to {args.site!r} in {args.config}", file=sys.stderr)
            return 2
    items = entries(site)
    print(render_markdown(items, args.lang) if args.markdown
          else render_text(items, args.lang, site.name if site else None), end="")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    """The inventory from the consent store, where every worker and instance merges what it saw."""
    from consentproxy.cookies.inventory import FILENAME, import_legacy
    from consentproxy.inventory.listing import item, table
    from consentproxy.records import StoreError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    site = None
    if args.site:
        found = _find_site(config, args.site)
        site = found.name if found is not None else args.site
    if not config.store.url and not config.server.data_dir.exists():  # the default store is made by `serve`
        print(f"nothing recorded in the inventory yet: {config.server.data_dir} does not exist")
        return 0
    try:
        with _open_records(config) as store:
            import_legacy(config.server.data_dir / FILENAME, store.merge_inventory)  # an upgrade not yet served
            entries = store.inventory(site)
    except _Exit as exit_:
        return exit_.status
    except (StoreError, OSError) as exc:
        print(f"error: cannot read the inventory: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps([item(e) for e in entries], option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    if not entries:
        print("nothing recorded in the inventory yet" + (f" for site {site}" if site else ""))
        return 0
    print(table(entries))
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    directory = Path(args.dir).expanduser()
    written = generate_keys(directory, overwrite=args.force)
    print(f"keys in {directory.resolve()} (mode 0600); reference them in [secrets]:")
    for name, path in written.items():
        print(f'  {name} = "file:{path.resolve()}"')
    return 0


def cmd_keys_token(args: argparse.Namespace) -> int:
    """A fresh admin token: shown once, while the configuration keeps only its SHA-256."""
    import hashlib
    import secrets

    from consentproxy.config.loader import TOKEN_NAME_RE
    from consentproxy.config.model import SECRETS_TOKEN_NAME

    if not TOKEN_NAME_RE.match(args.name) or args.name == SECRETS_TOKEN_NAME:
        print(f"error: --name must be 1-64 of A-Z a-z 0-9 _ . @ - and not {SECRETS_TOKEN_NAME!r}", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    print(f"token for {args.name} ({args.scope} scope), shown only now; give it to its holder:\n\n  {token}\n")
    print("add to the configuration (it holds only the digest), then reload with SIGHUP:\n")
    print(f'[[server.admin_tokens]]\nname = "{args.name}"\nscope = "{args.scope}"\nsha256 = "{digest}"')
    return 0


def cmd_preview_banner(args: argparse.Namespace, site: SiteConfig) -> int:
    """`preview --banner`: both layers in every language as self-contained HTML, and PNGs when chromium is there."""
    from consentproxy.banner.assets import AssetsMissing
    from consentproxy.banner.preview import banner_previews
    from consentproxy.banner.snapshots import screenshots

    if not args.output:
        print("error: --banner needs -o DIR, the folder for the HTML files and screenshots", file=sys.stderr)
        return 2
    out = Path(args.output)
    try:
        previews = banner_previews(site)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for item in previews:
            (out / item.filename).write_text(item.html, encoding="utf-8")
            written.append(out / item.filename)
    except (AssetsMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    pngs, why_not = screenshots(written)
    for path in pngs:
        print(f"wrote {path}")
    if why_not:
        print(why_not, file=sys.stderr)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from consentproxy.html.preview import decision_for, load_page, preview, summary
    from consentproxy.tracker_lists import load_tracker_lists

    try:
        config = load_config(args.config)
        lists = load_tracker_lists(config)  # as the proxy judges: the operator's lists too
        site = _find_site(config, args.site)
        decision = decision_for(args.consent, site.consent.category_ids if site else CATEGORY_IDS)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if site is None:
        print(f"error: no site named or answering to {args.site!r} in {args.config}", file=sys.stderr)
        return 2
    if args.banner:
        return cmd_preview_banner(args, site)
    if not args.page:
        print("error: name the page to preview (a URL or a file), or use --banner -o DIR", file=sys.stderr)
        return 2
    try:
        page, mode = load_page(args.page)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.page}: {exc}", file=sys.stderr)
        return 2
    result = preview(site, page, mode, decision, args.language.encode() if args.language else None, args.page,
                     lists)
    if args.output:
        Path(args.output).write_bytes(result.html)
    elif not args.summary_only:
        sys.stdout.buffer.write(result.html)
        sys.stdout.flush()
    print(summary(result, site), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from consentproxy.demo.run import run_demo

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir() / "demo"
    result: int = run_demo(args.port, data_dir, args.host)
    return result


def _config_with_keys(path: str) -> Config:
    """The configuration with the keys `serve` would use (generated in the data directory when not configured).

    `with_default_keys` warns that instances must share generated keys; that
    is for `serve`, and a warning would break the one-line output of these commands.
    """
    import logging

    from consentproxy.runtime import with_default_keys

    logger = logging.getLogger("consentproxy.server")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return with_default_keys(load_config(path))
    finally:
        logger.setLevel(level)


class _Exit(Exception):
    """A command's early end, already explained on stderr; carries the exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _records_config(path: str, need_key: bool) -> tuple[Config, Ed25519PrivateKey | None]:
    """The configuration and the export signing key, for the commands that work on the consent log."""
    from consentproxy.runtime import export_signing_key

    try:
        config = _config_with_keys(path)
        key = export_signing_key(config) if need_key else None
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        raise _Exit(2) from None
    if need_key and key is None:
        print("error: no [secrets] export_key configured (create one with `consentproxy keys generate`)",
              file=sys.stderr)
        raise _Exit(2)
    return config, key


def _open_records(config: Config) -> RecordStore:
    from consentproxy.records import StoreError, open_store
    from consentproxy.runtime import store_url

    try:
        return open_store(store_url(config))
    except (StoreError, ValueError, OSError) as exc:
        print(f"error: cannot open the consent record store: {exc}", file=sys.stderr)
        raise _Exit(1) from None


def cmd_export(args: argparse.Namespace) -> int:
    try:
        return _export(args)
    except _Exit as exit_:
        return exit_.status


def _export(args: argparse.Namespace) -> int:
    from consentproxy.records import StoreError
    from consentproxy.records.export import ExportError, Progress, export_site, parse_time

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until, end_of_day=True) if args.until else None
        if since is not None and until is not None and since >= until:
            raise ValueError("--since must be before --until")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config, key = _records_config(args.config, need_key=True)
    assert key is not None
    out = Path(args.output)
    if not out.parent.is_dir():
        print(f"error: {out.parent} is not a directory", file=sys.stderr)
        return 2
    store = _open_records(config)
    try:
        found = _find_site(config, args.site)
        site = found.name if found is not None else args.site
        if found is None and site not in store.sites():
            print(f"error: no site named or answering to {args.site!r} in {args.config}, "
                  "and no records of a site of that name", file=sys.stderr)
            return 2
        progress = Progress(sys.stderr, f"exporting {site}")
        result = export_site(store, site, out, args.format, key, since=since, until=until,
                             asked=(args.since, args.until), progress=progress)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: nothing written", file=sys.stderr)
        return 130
    except (StoreError, OSError) as exc:
        print(f"error: export failed, nothing written: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    manifest = result.manifest
    span = (f"seq {manifest['first_seq']}\N{EN DASH}{manifest['last_seq']}" if manifest["count"]
            else "nothing in the range")
    print(f"exported {manifest['count']:,} events of site {site} ({span}) as {args.format} to {out} "
          f"in {result.seconds:.1f} s; manifest {result.manifest_path.name}; signed by key {manifest['key_id']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from consentproxy.records.checkpoint import load_public_key
    from consentproxy.records.export import verify_export
    from consentproxy.records.manifest import MANIFEST_SUFFIX

    pinned = None
    if args.public_key:
        try:
            pinned = load_public_key(args.public_key)
        except ValueError:
            print("error: --public-key is not a base64url Ed25519 public key", file=sys.stderr)
            return 2
    path = Path(args.file)
    if path.name.endswith(MANIFEST_SUFFIX):  # the manifest named instead of the export: same thing
        path = path.with_name(path.name[:-len(MANIFEST_SUFFIX)])
    report = verify_export(path, pinned)
    print(report)
    return report.status


def cmd_purge(args: argparse.Namespace) -> int:
    try:
        return _purge(args)
    except _Exit as exit_:
        return exit_.status


def _purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from consentproxy.records import StoreError
    from consentproxy.records.export import expired_count, purge_expired, retention_cutoff

    config, key = _records_config(args.config, need_key=not args.dry_run)
    sites = list(config.sites)
    if args.site:
        found = _find_site(config, args.site)
        if found is None:
            print(f"error: no site named or answering to {args.site!r} in {args.config}", file=sys.stderr)
            return 2
        sites = [found]
    now = datetime.now(UTC)
    store = _open_records(config)
    try:
        for site in sites:
            before = retention_cutoff(site, now)
            days = site.consent.retention_days
            when = before.strftime("%Y-%m-%d %H:%M UTC")
            if key is None:
                count = expired_count(store, site.name, before)
                print(f"{site.name}: {count:,} events recorded before {when} would be removed "
                      f"(retention {days} days; dry run, nothing removed)")
            else:
                count = purge_expired(store, site, key, now)
                print(f"{site.name}: removed {count:,} events recorded before {when} (retention {days} days)")
        if not args.site:
            unknown = sorted(set(store.sites()) - {site.name for site in config.sites})
            if unknown:
                print(f"note: records of sites not in the configuration are kept: {', '.join(unknown)}")
    except StoreError as exc:
        print(f"error: purge failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consentproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"consentproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("-c", "--config", help="configuration file (TOML)")
    serve.add_argument("--upstream", help="quick start: the one site to front, e.g. http://127.0.0.1:9000")
    serve.add_argument("--listen", action="append", help="quick start: HOST:PORT to listen on (repeatable)")
    serve.add_argument("--admin-listen", help="quick start: HOST:PORT for health and metrics")
    serve.add_argument("--data-dir", help=f"quick start: data directory (default {default_data_dir()})")
    serve.add_argument("--workers", type=int, help="quick start: worker processes (default 1)")
    serve.add_argument("--trusted-proxy", action="append", help="quick start: trusted proxy address/network")
    serve.add_argument("--access-log", action="store_true", help="quick start: JSON access log on stdout")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser("check-config", help="validate a configuration file and everything serve would "
                                "refuse: data directory, store, secrets, GeoIP, listen addresses")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--no-ports", action="store_true",
                       help="do not try the listen addresses (a proxy of another configuration holds them)")
    check.add_argument("--file-only", action="store_true",
                       help="check the file alone, not this machine's directories, store, secrets, GeoIP file and "
                            "ports (for a build machine that never serves it)")
    check.set_defaults(func=cmd_check_config)

    texts = commands.add_parser("texts", help="list every banner and category text key with its bundled value per "
                                "language (with --site: the site's overrides, marked [site])")
    texts.add_argument("-c", "--config", help="configuration file (for --site)")
    texts.add_argument("--site", help="a site name or one of its host names: show its overrides and own categories")
    texts.add_argument("--lang", choices=list(LANGUAGES), help="only this language")
    texts.add_argument("--markdown", action="store_true", help="as the README's tables")
    texts.set_defaults(func=cmd_texts)

    inventory = commands.add_parser("inventory", help="list the cookies and third-party hosts the sites really use")
    inventory.add_argument("-c", "--config", required=True)
    inventory.add_argument("--site", help="a site name or one of its host names")
    inventory.add_argument("--json", action="store_true", help="machine-readable output")
    inventory.set_defaults(func=cmd_inventory)

    keys = commands.add_parser("keys", help="manage secrets")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_commands.add_parser("generate", help="write fresh signing keys and an admin token")
    generate.add_argument("--dir", default="secrets", help="where to write them (default ./secrets)")
    generate.add_argument("--force", action="store_true", help="replace existing files")
    generate.set_defaults(func=cmd_keys_generate)
    token = keys_commands.add_parser("token", help="make an admin API token and the configuration lines for it")
    token.add_argument("--name", required=True, help="what the audit log calls its holder, e.g. dpo")
    token.add_argument("--scope", choices=["read", "full"], default="read", help="read (default) or full")
    token.set_defaults(func=cmd_keys_token)

    show = commands.add_parser("preview", help="print a page as the proxy would rewrite it, what it blocks, and "
                               "every resource from another host with what it matched (or unknown)")
    show.add_argument("-c", "--config", required=True)
    show.add_argument("--site", required=True, help="a site name or one of its host names")
    show.add_argument("page", nargs="?", help="the page: an http(s) URL or a file (not with --banner)")
    show.add_argument("--banner", action="store_true",
                      help="instead of a page: the site's banner, both layers in every language, as self-contained "
                           "HTML files in -o DIR, with PNG screenshots when chromium (and Playwright) are there")
    show.add_argument("--consent", default="none",
                      help="the visitor's state: none (default), all, or granted categories, e.g. statistics")
    show.add_argument("--language", help="the visitor's Accept-Language, e.g. en")
    show.add_argument("-o", "--output", help="write the rewritten HTML here instead of standard output (with "
                      "--banner: the folder for the files)")
    show.add_argument("--summary-only", action="store_true", help="print only the summary")
    show.set_defaults(func=cmd_preview)

    demo = commands.add_parser("demo", help="run a bundled demo site behind the proxy")
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--data-dir", help=f"data directory (default {default_data_dir() / 'demo'})")
    demo.set_defaults(func=cmd_demo)

    export = commands.add_parser("export", help="export a site's consent records with a signed manifest")
    export.add_argument("-c", "--config", required=True)
    export.add_argument("--site", required=True, help="a site name or one of its host names")
    export.add_argument("--since", help="events recorded at or after this ISO 8601 date or date-time (UTC if no "
                        "offset)")
    export.add_argument("--until", help="events recorded before this date-time; a date alone includes that day")
    export.add_argument("--format", default="ndjson", choices=["ndjson", "csv", "receipts"],
                        help="ndjson (default), csv for spreadsheets, or receipts (Kantara-style JSON, one a line)")
    export.add_argument("-o", "--output", required=True,
                        help="the export file; OUTPUT.manifest.json is written beside it")
    export.set_defaults(func=cmd_export)

    verify = commands.add_parser("verify",
                                 help="check an export and its manifest offline (exit 0 OK, 1 bad, 2 unreadable)")
    verify.add_argument("file", help="the export file (its manifest is FILE.manifest.json)")
    verify.add_argument("--public-key", help="require this signing key (base64url, as the manifest prints it); "
                                             "write --public-key=KEY: a key may start with '-'")
    verify.set_defaults(func=cmd_verify)

    purge = commands.add_parser("purge", help="delete consent records older than each site's retention")
    purge.add_argument("-c", "--config", required=True)
    purge.add_argument("--site", help="only this site (a name or one of its host names)")
    purge.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    purge.set_defaults(func=cmd_purge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
