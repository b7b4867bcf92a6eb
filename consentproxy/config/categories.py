"""Reading `[sites.NAME.consent.categories]`: the built-in categories' texts, and the site's own categories.

A site's own category (`[sites.NAME.consent.categories.social]`) is shown,
asked, enforced, recorded and counted like a built-in one: it has a label and
a description per language, the Google Consent Mode v2 signals its grant
grants, and a place in the banner's order. Like every optional category it is
off until the visitor grants it.
"""

from __future__ import annotations

import re
from typing import Any

from consentproxy.config.model import (
    BUILTIN_CONSENT_MODE,
    CATEGORY_IDS,
    CONSENT_MODE_SIGNALS,
    LANGUAGES,
    CategoryConfig,
    Config,
)
from consentproxy.config.reader import Reader, describe, list_of
from consentproxy.consent.texts import DEFAULT_DESCRIPTIONS, DEFAULT_LABELS

#: a site's own category id: what the consent cookie, the API, the records and `category = "…"` name it by
CUSTOM_ID_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
#: enough for any banner a visitor can still read; the consent cookie stays small
MAX_CUSTOM = 8
#: where the built-in categories stand in the order; a site's own one has `order = 50` unless it says
BUILTIN_ORDER = {"necessary": 0, "preferences": 10, "statistics": 20, "marketing": 30}
DEFAULT_ORDER = 50
#: names the proxy gives a meaning already: a cookie nobody declared, and the Consent Mode script's states
RESERVED_IDS = frozenset({"unknown", "none", "all"})
_MAX_TEXT = 2000


def default_categories() -> tuple[CategoryConfig, ...]:
    return tuple(CategoryConfig(c, dict(DEFAULT_LABELS[c]), dict(DEFAULT_DESCRIPTIONS[c]), BUILTIN_CONSENT_MODE[c])
                 for c in CATEGORY_IDS)


def texts(reader: Reader, name: str, defaults: dict[str, str]) -> dict[str, str]:
    """`label = "…"` (every language) or `label = { nl = "…", en = "…" }`."""
    reader.seen.add(name)
    raw = reader.table.get(name)
    if raw is None:
        return dict(defaults)
    if isinstance(raw, str):
        raw = dict.fromkeys(LANGUAGES, raw)
    if not isinstance(raw, dict):
        reader.problem(name, f"expected a string or a table of languages, got {describe(raw)}")
        return dict(defaults)
    out = dict(defaults)
    for language, text in raw.items():
        if language not in LANGUAGES:
            reader.problem(f"{name}.{language}", f"unknown language; use one of {', '.join(LANGUAGES)}")
        elif not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
            reader.problem(f"{name}.{language}", f"expected a text of 1 to {_MAX_TEXT} characters")
        else:
            out[language] = text.strip()
    return out


def _signal(value: Any) -> str:
    if value not in CONSENT_MODE_SIGNALS:
        raise ValueError(f"must be one of {', '.join(CONSENT_MODE_SIGNALS)}, got {describe(value)}")
    return str(value)


def _order(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"expected a whole number from 1 to 1000 (built-in: preferences 10, statistics 20, "
                         f"marketing 30), got {describe(value)}")
    return value


def _filled(found: dict[str, str], fallback: str, default_language: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """Every language: a missing one takes the default language's text, else English, else any, else
    `fallback`; also which languages were missing."""
    missing = tuple(lang for lang in LANGUAGES if lang not in found)
    spare = found.get(default_language) or found.get("en") or next(iter(found.values()), fallback)
    return {lang: found.get(lang, spare) for lang in LANGUAGES}, missing


def _custom(reader: Reader, default_language: str) -> tuple[CategoryConfig, int]:
    found = texts(reader, "label", {})
    label, missing = _filled(found, reader.path.rsplit(".", 1)[-1], default_language)
    description, _ = _filled(texts(reader, "description", {}), "", default_language)
    category = CategoryConfig(
        id=reader.path.rsplit(".", 1)[-1], label=label, description=description,
        consent_mode=tuple(dict.fromkeys(list_of(reader, "consent_mode", _signal, ()))),
        custom=True, missing_labels=missing,
    )
    order = reader.converted("order", DEFAULT_ORDER, _order)
    reader.finish()
    return category, order


def _builtin(reader: Reader, category: CategoryConfig) -> tuple[CategoryConfig, int]:
    """A built-in category as the site words it; its Consent Mode signals and place may change too."""
    order = BUILTIN_ORDER[category.id]
    if category.id == "necessary" and "order" in reader.table:
        reader.seen.add("order")
        reader.problem("order", "the necessary category is always listed first; leave order out")
    else:
        order = reader.converted("order", order, _order)
    category = CategoryConfig(
        category.id, texts(reader, "label", category.label), texts(reader, "description", category.description),
        tuple(dict.fromkeys(list_of(reader, "consent_mode", _signal, category.consent_mode))),
    )
    reader.finish()
    return category, order


def read_categories(reader: Reader | None, default_language: str = "nl") -> tuple[CategoryConfig, ...]:
    """The built-in categories (their texts as the site overrides them), then the site's own, by `order`."""
    if reader is None:
        return default_categories()
    ordered: list[tuple[int, int, CategoryConfig]] = []
    for position, category in enumerate(default_categories()):
        sub = reader.sub(category.id)
        order = BUILTIN_ORDER[category.id]
        if sub is not None:
            category, order = _builtin(sub, category)
        ordered.append((order, position, category))
    custom = [name for name in reader.table if name not in CATEGORY_IDS]
    for position, name in enumerate(custom, start=len(CATEGORY_IDS)):
        if not CUSTOM_ID_RE.match(name) or name in RESERVED_IDS:
            reader.seen.add(name)
            reason = (f"{name!r} is reserved" if name in RESERVED_IDS
                      else "a category id is 1 to 32 characters a-z, 0-9, _ and -")
            reader.problem(name, f"{reason}; name your own category like social or video (the built-in ones: "
                                 f"{', '.join(CATEGORY_IDS)})")
            continue
        if position - len(CATEGORY_IDS) >= MAX_CUSTOM:
            reader.seen.add(name)
            reader.problem(name, f"at most {MAX_CUSTOM} categories of a site's own; this is one more")
            continue
        sub = reader.sub(name)
        if sub is None:  # not a table: `sub` reported it
            continue
        category, order = _custom(sub, default_language)
        ordered.append((order, position, category))
    reader.finish()
    return tuple(category for _, _, category in sorted(ordered, key=lambda item: item[:2]))


def own_category_notes(config: Config) -> list[str]:
    """What check-config warns about: a site's own category without a label in some language."""
    notes = []
    for site_name, category in ((s.name, c) for s in config.sites for c in s.consent.categories):
        if category.missing_labels:
            shown = category.label[category.missing_labels[0]]
            notes.append(f"sites.{site_name}.consent.categories.{category.id}.label: no text for "
                         f"{', '.join(category.missing_labels)}; the banner shows {shown!r} there (add "
                         f"label = {{ {category.missing_labels[0]} = \"…\" }})")
    return notes
