"""Reading a site's consent settings: `[sites.NAME.consent]`, `[[sites.NAME.cookies]]`, `[[sites.NAME.services]]`.

Everything has a default, so a site without any of these tables gets the four
standard categories with bundled texts in Dutch, English, German and French.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from consentproxy.config.categories import CUSTOM_ID_RE, default_categories, read_categories, texts
from consentproxy.config.model import (
    CATEGORY_IDS,
    LANGUAGES,
    ConsentConfig,
    CookieDeclaration,
    ServiceConfig,
    ThemeConfig,
)
from consentproxy.config.reader import Reader, describe, list_of, one_of
from consentproxy.consent.texts import BANNER_TEXTS

_COOKIE_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MAX_TEXT = 2000


def _category_of(ids: tuple[str, ...], site: str = "sites.NAME") -> Callable[[Any], str]:
    """A converter for `category = "…"`: one of the site's categories, built-in or its own."""
    def convert(value: Any) -> str:
        if value not in ids:
            hint = (f"; a category of the site's own is declared as [{site}.consent.categories.{value}]"
                    if isinstance(value, str) and CUSTOM_ID_RE.match(value) else "")
            raise ValueError(f"must be one of {', '.join(ids)}, got {describe(value)}{hint}")
        return str(value)

    return convert


_texts = texts
#: the categories of every site that words none of its own: one copy for thousands of sites (read-only)
_DEFAULT_CATEGORIES = default_categories()
_DEFAULT_CONSENT = ConsentConfig()


def _read_declaration(reader: Reader, ids: tuple[str, ...] = CATEGORY_IDS) -> CookieDeclaration | None:
    before = len(reader.problems)
    name = reader.get("name", str, "")
    prefix = reader.get("prefix", str, "")
    pattern = reader.get("pattern", str, "")
    if sum(bool(x) for x in (name, prefix, pattern)) != 1:
        reader.problem("name", "give exactly one of name, prefix or pattern")
    for key, value in (("name", name), ("prefix", prefix)):
        if value and not _COOKIE_NAME_RE.match(value):
            reader.problem(key, f"{value!r} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~; no "
                                "spaces, commas, quotes or =)")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            reader.problem("pattern", f"not a valid regular expression: {exc}; check its brackets and escapes "
                                      "(in TOML, '...' strings keep backslashes as they are)")
    if "category" not in reader.table:
        reader.problem("category", f"is required: one of {', '.join(ids)}")
    declaration = CookieDeclaration(
        category=reader.converted("category", "necessary", _category_of(ids, reader.path.rsplit(".", 1)[0])),
        name=name, prefix=prefix, pattern=pattern,
        purpose=reader.get("purpose", str, ""), lifetime=reader.get("lifetime", str, ""),
        provider=reader.get("provider", str, ""),
    )
    reader.finish()
    return declaration if len(reader.problems) == before else None


def _service_cookie(value: Any) -> str:
    if not isinstance(value, str) or not _COOKIE_NAME_RE.match(value.rstrip("*")) or "*" in value.rstrip("*"):
        raise ValueError(f"expected a cookie name, or a prefix ending in '*', got {describe(value)}")
    return value


def _url_part(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) < 4:
        raise ValueError(f"expected a URL or URL part of at least 4 characters, got {describe(value)}")
    return value.strip()


def _signature(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) < 3:
        raise ValueError(f"expected a code fragment of at least 3 characters, such as \"fbq(\", got {describe(value)}")
    return value.strip()


def _privacy_url(value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"expected an http(s) URL, got {describe(value)}")
    return value


def _read_service(reader: Reader, ids: tuple[str, ...] = CATEGORY_IDS) -> ServiceConfig | None:
    before = len(reader.problems)
    name = reader.get("name", str, "")
    if not name.strip():
        reader.problem("name", "is required: the service's name, shown to visitors in the banner's settings")
    if "category" not in reader.table:
        reader.problem("category", f"is required: one of {', '.join(ids)}")
    service = ServiceConfig(
        name=name.strip(),
        category=reader.converted("category", "necessary", _category_of(ids, reader.path.rsplit(".", 1)[0])),
        provider=reader.get("provider", str, ""),
        privacy_url=reader.converted("privacy_url", "", _privacy_url),
        cookies=list_of(reader, "cookies", _service_cookie, ()),
        scripts=list_of(reader, "scripts", _url_part, ()),
        iframes=list_of(reader, "iframes", _url_part, ()),
        pixels=list_of(reader, "pixels", _url_part, ()),
        hosts=list_of(reader, "hosts", _url_part, ()),
        inline=list_of(reader, "inline", _signature, ()),
        purpose=_texts(reader, "purpose", {}),
    )
    reader.finish()
    return service if len(reader.problems) == before else None


def _array_of_tables(site: Reader, key: str) -> list[Reader]:
    site.seen.add(key)
    raw = site.table.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        site.problem(key, f"expected [[{site.path}.{key}]] tables, got {describe(raw)}")
        return []
    return [Reader(site.file, site.problems, item, f"{site.path}.{key}[{i}]") for i, item in enumerate(raw)]


_unknown_policy = one_of("block", "allow")
_database_purposes = one_of("category", "original")
_language = one_of(*LANGUAGES)
_record_ip = one_of("none", "truncated", "keyed_hash")


def _cookie_name(value: Any) -> str:
    if not isinstance(value, str) or not _COOKIE_NAME_RE.match(value):
        raise ValueError(f"expected a cookie name, got {describe(value)}")
    return value


def _days(low: int, high: int, example: str) -> Callable[[Any], int]:
    """A converter for a number of days, or a duration text such as "180d", between `low` and `high`."""
    def convert(value: Any) -> int:
        from consentproxy.config.loader import parse_duration

        days = round(parse_duration(value) / 86400) if isinstance(value, str) else value
        if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
            raise ValueError(f"expected {low} to {high} days (a number of days, or text such as \"{example}\"), "
                             f"got {describe(value)}")
        return days

    return convert


_validity_days = _days(1, 400, "180d")
_retention_days = _days(30, 3650, "760d")


def read_consent(site: Reader) -> ConsentConfig:
    """The consent settings of one site (its reader is `sites.NAME`)."""
    base = _DEFAULT_CONSENT
    reader = site.sub("consent")
    # The categories first: a cookie or service may name one of the site's own.
    words = reader.sub("categories") if reader is not None else None
    categories = _DEFAULT_CATEGORIES if words is None else read_categories(
        words, str(reader.table.get("default_language", base.default_language)) if reader is not None else "nl")
    ids = tuple(c.id for c in categories)
    declarations = [d for r in _array_of_tables(site, "cookies") if (d := _read_declaration(r, ids)) is not None]
    services = [s for r in _array_of_tables(site, "services") if (s := _read_service(r, ids)) is not None]
    if reader is None:
        return ConsentConfig(categories=categories, services=tuple(services), cookies=tuple(declarations))
    config = ConsentConfig(
        categories=categories,
        services=tuple(services),
        cookies=tuple(declarations),
        revision=reader.converted("revision", base.revision, _positive),
        validity_days=reader.converted("validity", base.validity_days, _validity_days),
        statistics_exempt=reader.get("statistics_exempt", bool, base.statistics_exempt),
        reask_on_new_vendor=reader.get("reask_on_new_vendor", bool, base.reask_on_new_vendor),
        unknown_cookies=reader.converted("unknown_cookies", base.unknown_cookies, _unknown_policy),  # type: ignore[arg-type]
        database_purposes=reader.converted("database_purposes", base.database_purposes,
                                           _database_purposes),  # type: ignore[arg-type]
        cookie_name=reader.converted("cookie_name", base.cookie_name, _cookie_name),
        default_language=reader.converted("default_language", base.default_language, _language),
        controller=reader.converted("controller", "", _short_text),
        privacy_url=_privacy_urls(reader, base.privacy_url),
        texts=_read_banner_texts(reader.sub("texts")),
        theme=_read_theme(reader.sub("theme")),
        record_ip=reader.converted("record_ip", base.record_ip, _record_ip),  # type: ignore[arg-type]
        storage_location=reader.converted("storage_location", base.storage_location, _short_text),
        jurisdiction=reader.converted("jurisdiction", base.jurisdiction, _short_text),
        record_retention_days=reader.converted("record_retention", 0, _retention_days),
    )
    reader.finish()
    return config


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {describe(value)}")
    return value


def _short_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError(f"expected a text of 1 to 200 characters, got {describe(value)}")
    return value.strip()


def _page_url(value: Any) -> str:
    if not isinstance(value, str) or not (value.startswith("/") or urlsplit(value).scheme in ("http", "https")):
        raise ValueError(f"expected a path such as \"/privacy\" or an http(s) URL, got {describe(value)}")
    return value


def _privacy_urls(reader: Reader, default: dict[str, str]) -> dict[str, str]:
    """`privacy_url = "/privacy"` for every language, or `{ nl = "/privacy", en = "/en/privacy" }`."""
    raw = reader.table.get("privacy_url")
    if not isinstance(raw, dict):
        url = reader.converted("privacy_url", "", _page_url)
        return dict.fromkeys(LANGUAGES, url) if url else dict(default)
    reader.seen.add("privacy_url")
    urls = dict(default)
    for language, value in raw.items():
        if language not in LANGUAGES:
            reader.problem(f"privacy_url.{language}", f"unknown language; use one of {', '.join(LANGUAGES)}")
            continue
        try:
            urls[language] = _page_url(value)
        except ValueError as exc:
            reader.problem(f"privacy_url.{language}", str(exc))
    # A language left out links to the statement of the site's default language.
    fallback = raw.get(reader.table.get("default_language", "nl")) or next(iter(raw.values()), None)
    if isinstance(fallback, str):
        urls.update({lang: fallback for lang in LANGUAGES if lang not in raw})
    return urls


def _read_banner_texts(reader: Reader | None) -> dict[str, dict[str, str]]:
    """`[sites.NAME.consent.texts]`: `title = "…"` or `title = { nl = "…", en = "…" }`, per banner text."""
    if reader is None:
        return {}
    out = {}
    for key in BANNER_TEXTS:
        texts = _texts(reader, key, {})
        if texts:
            out[key] = texts
    reader.finish()  # unknown keys are reported with the nearest text key as a hint
    return out


def _read_theme(reader: Reader | None) -> ThemeConfig:
    """`[sites.NAME.consent.theme]`: colours, font, corner radius, position; contrast checked."""
    from consentproxy.banner import theme as checks

    if reader is None:
        return ThemeConfig()

    colour = _string(checks.check_colour)
    theme = ThemeConfig(
        background=reader.converted("background", "", colour),
        text=reader.converted("text", "", colour),
        accent=reader.converted("accent", "", colour),
        accent_text=reader.converted("accent_text", "", colour),
        font=reader.converted("font", "", _string(checks.check_font)),
        radius=reader.converted("radius", "", _string(checks.check_length)),
        position=reader.converted("position", "bottom", one_of(*checks.POSITIONS)),
        reopen_position=reader.converted("reopen_position", "bottom-left", one_of(*checks.REOPEN_POSITIONS)),
    )
    for key, reason in checks.contrast_problems(theme):
        reader.problem(key, reason)
    reader.finish()
    return theme


def _string(check: Callable[[str], str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a text, got {describe(value)}")
        return check(value)

    return convert
