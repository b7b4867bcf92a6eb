"""`consentproxy texts`: every text the banner, the settings layer, placeholders and the declaration show.

Each with its key, where a site overrides it, and its bundled value per
language; with a site, that site's overrides (and its own categories) marked
as such. The README's list of text keys is this command's `--markdown`
output (tests/test_texts_command.py fails when the two differ), so the list
cannot fall behind the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from consentproxy.banner.declaration import DECLARATION_TEXTS
from consentproxy.config.model import CATEGORY_IDS, LANGUAGES, SiteConfig
from consentproxy.consent.texts import (
    BANNER_TEXTS,
    CATEGORY_PURPOSES,
    CONSENT_COOKIE_PURPOSE,
    DEFAULT_DESCRIPTIONS,
    DEFAULT_LABELS,
    LIFETIME_UNITS,
    LIFETIME_WORDS,
    SESSION,
    THIS_WEBSITE,
)

#: what each banner text is for; a key added to BANNER_TEXTS needs a line here (a test checks)
USES: dict[str, str] = {
    "title": "the banner's heading",
    "text": "the banner's paragraph under opt-in; {controller} is the site's controller",
    "privacy": "the link to the privacy statement",
    "accept_all": "the button that grants every category",
    "reject_all": "the button that refuses every optional category",
    "settings": "the button that opens the settings layer",
    "reopen": "the re-open control's label (every page, bottom corner)",
    "settings_title": "the settings layer's heading",
    "settings_intro": "the settings layer's paragraph",
    "save": "the settings layer's button that saves the toggles",
    "close": "the settings layer's close button",
    "always_on": "beside the necessary category instead of a toggle",
    "services": "the heading of a category's services (also in the declaration)",
    "cookies": "the caption of a service's cookie table",
    "cookie_name": "the cookie table's name column",
    "provider": "the cookie table's provider column, and a service's provider",
    "purpose": "the cookie table's purpose column",
    "lifetime": "the cookie table's lifetime column",
    "consent_id": "before the visitor's consent ID in the settings layer",
    "receipt": "the link to the visitor's consent history",
    "withdraw": "the button that withdraws consent",
    "error": "shown when a choice could not be saved",
    "embed_text": "a click-to-load placeholder's text; {service} is the embed's service",
    "embed_load": "a click-to-load placeholder's button",
    "optout_text": "the banner's paragraph where an opt-out regime applies (e.g. US states)",
    "do_not_sell": "the opt-out regime's refusal button",
    "notice_text": "the banner's paragraph where a notice-only regime applies",
    "ok": "the acknowledging button of the opt-out and notice-only banners",
}
#: the cookie declaration's own words (it shares the column labels above)
DECLARATION_USES: dict[str, str] = {
    "title": "the declaration's heading",
    "intro": "the declaration's paragraph; {controller} is the site's controller",
    "party": "the cookie table's first- or third-party column",
    "first": "a first-party cookie",
    "third": "a third-party cookie",
    "unknown": "a purpose or lifetime nobody declared",
    "none": "a category without cookies",
}
#: the sections of the listing: where a site overrides the texts (None: it cannot yet), and a heading
_SECTIONS = (
    ("texts", "`[sites.NAME.consent.texts]`"),
    ("categories", "`[sites.NAME.consent.categories.ID]` (`ID.label`, `ID.description`)"),
    ("declaration", "the cookie declaration's own words (not configurable)"),
    ("lists", "the cookie lists' own words, in the settings layer and the declaration (not configurable)"),
)


@dataclass(frozen=True, slots=True)
class TextEntry:
    """One text: its key as written in the configuration, what it is for, its value per language, and
    which languages the site overrides (empty without a site)."""

    key: str
    table: str  # where a site overrides it, relative to [sites.NAME.consent]; "declaration": nowhere
    use: str
    values: dict[str, str]
    overridden: frozenset[str] = frozenset()


def entries(site: SiteConfig | None = None) -> list[TextEntry]:
    """Every text in the order the README lists them: banner texts, then the categories' label and
    description (with a site: its own categories too)."""
    out: list[TextEntry] = []
    overrides = site.consent.texts if site is not None else {}
    for key, bundled in BANNER_TEXTS.items():
        mine = overrides.get(key, {})
        out.append(TextEntry(key, "texts", USES.get(key, ""), {lang: mine.get(lang) or bundled[lang]
                                                                for lang in LANGUAGES}, frozenset(mine)))
    categories = site.consent.categories if site is not None else ()
    by_id = {c.id: c for c in categories}
    for category_id in [*CATEGORY_IDS, *(c.id for c in categories if c.custom)]:
        found = by_id.get(category_id)
        for name, bundled_texts in (("label", DEFAULT_LABELS), ("description", DEFAULT_DESCRIPTIONS)):
            bundled = bundled_texts.get(category_id, {})
            values = getattr(found, name) if found is not None else bundled
            changed = frozenset(lang for lang in LANGUAGES if values.get(lang) != bundled.get(lang))
            what = "the site's own category" if found is not None and found.custom else "the category"
            use = f"{what}'s {'name in the banner' if name == 'label' else 'explanation in the settings layer'}"
            out.append(TextEntry(f"{category_id}.{name}", "categories", use, dict(values), changed))
    for key, bundled in DECLARATION_TEXTS.items():
        out.append(TextEntry(key, "declaration", DECLARATION_USES.get(key, ""), dict(bundled)))
    return out + _list_words()


def _list_words() -> list[TextEntry]:
    """The words the cookie lists put together: purposes said from a category, lifetimes, fallbacks."""
    out = [TextEntry("consent_cookie", "lists", "the purpose of the consent cookie itself",
                     dict(CONSENT_COOKIE_PURPOSE)),
           TextEntry("this_website", "lists", "who uses cookies where a site names no controller and no host",
                     dict(THIS_WEBSITE))]
    out += [TextEntry(f"purpose.{category}", "lists", "the purpose of a cookie only the Open Cookie Database "
                      "knows, said from its category", dict(values)) for category, values in CATEGORY_PURPOSES.items()]
    out.append(TextEntry("lifetime.session", "lists", "a session cookie's lifetime", dict(SESSION)))
    out += [TextEntry(f"lifetime.{word}", "lists", f"the lifetime word for {word}", dict(values))
            for word, values in LIFETIME_WORDS.items()]
    out += [TextEntry(f"lifetime.{unit}", "lists", f"a lifetime in {unit}s (one / more)",
                      {lang: " / ".join(pair) for lang, pair in by_lang.items()})
            for unit, by_lang in LIFETIME_UNITS.items()]
    return out


def _languages(lang: str | None) -> tuple[str, ...]:
    return (lang,) if lang else LANGUAGES


def render_text(items: list[TextEntry], lang: str | None = None, site: str | None = None) -> str:
    """The plain listing: each key, then its value per language, a site's override marked `[site]`."""
    lines: list[str] = []
    for table, _ in _SECTIONS:
        where = f"sites.{site or 'NAME'}.consent.{table}"
        lines.append({"texts": f"[{where}]", "categories": f"[{where}.ID]  (label, description)"}.get(
            table, dict(_SECTIONS)[table]))
        for item in (i for i in items if i.table == table):
            lines.append(f"  {item.key}  — {item.use}")
            for code in _languages(lang):
                mark = " [site]" if code in item.overridden else ""
                lines.append(f"    {code}{mark}: {item.values[code]}")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(items: list[TextEntry], lang: str | None = None) -> str:
    """The README's tables: key, what it is for, and the bundled value in each language asked for."""
    languages = _languages(lang)
    head = "| key | used for | " + " | ".join(languages) + " |\n|---|---|" + "---|" * len(languages) + "\n"
    parts = []
    for table, title in _SECTIONS:
        rows = "".join(f"| `{item.key}` | {_cell(item.use)} | "
                       + " | ".join(_cell(item.values[code]) for code in languages) + " |\n"
                       for item in items if item.table == table)
        parts.append(f"{title}\n\n{head}{rows}")
    return "\n".join(parts)
