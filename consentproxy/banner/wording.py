"""The words a cookie list gives a visitor for purposes and lifetimes: all in the visitor's language.

The settings layer and the cookie declaration take their purposes from the
site, the catalogue (`data/services.toml`, written in nl/en/de/fr) and the
Open Cookie Database, whose descriptions are English (with typos) and whose
retention periods are free English text ("2 years", "Session", "End of session
(browser)", "1 Year"). So that a view is in one language, a database-only
cookie's purpose is said from its category in the visitor's language (the
English original only where the site asks for it, then marked as English), and
every lifetime, as seen in a Set-Cookie or as written anywhere, goes through
`lifetime_words`: one unit style per language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from consentproxy.consent.texts import CATEGORY_PURPOSES, LIFETIME_UNITS, LIFETIME_WORDS, SESSION
from consentproxy.cookies.classify import Classification, builtin_services

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_MONTH, _YEAR = 2_629_800, 31_557_600  # a twelfth of a year; 365.25 days
#: seconds per unit, for reading a written lifetime
_SECONDS = {"second": 1, "minute": _MINUTE, "hour": _HOUR, "day": _DAY, "week": 7 * _DAY, "month": _MONTH,
            "year": _YEAR}
#: what a written lifetime may call a unit: each language's words (LIFETIME_UNITS) and common abbreviations
_ALIASES: dict[str, str] = {
    word.lower(): unit for unit, by_lang in LIFETIME_UNITS.items() for pair in by_lang.values() for word in pair
} | {"sec": "second", "secs": "second", "min": "minute", "mins": "minute", "hr": "hour", "hrs": "hour",
     "yr": "year", "yrs": "year", "jaren": "year", "uren": "hour", "année": "year", "années": "year",
     "tagen": "day", "jahren": "year", "monaten": "month"}
_DURATION = re.compile(r"(\d{1,6})\s*(" + "|".join(sorted(map(re.escape, _ALIASES), key=len, reverse=True))
                       + r")(?![a-zà-ÿ])", re.IGNORECASE)
_SESSION = re.compile(r"sess|seesion|sitzung", re.IGNORECASE)
_UNLIMITED = re.compile(r"forever|unlimited|permanent|never expires|no expiration|onbeperkt|unbegrenzt|illimit",
                        re.IGNORECASE)
_VARIES = re.compile(r"\b(?:depending|depends|varies|various|wisselend|unterschiedlich|variable)\b", re.IGNORECASE)
#: a duration with one of these is one of several ("1 week to 1 year", "1 hour or longer")
_RANGE = re.compile(r"\b(?:or|to|till|until|depending|depends)\b", re.IGNORECASE)


#: (unit, its size, the lifetime below which it is used): seconds under a minute, …, days under 60 days,
#: months under about two years, years beyond
_STEPS = (("second", 1, _MINUTE), ("minute", _MINUTE, _HOUR), ("hour", _HOUR, _DAY), ("day", _DAY, 60 * _DAY),
          ("month", _MONTH, 61_800_000))


def lifetime_words(seconds: int | None, lang: str) -> str:
    """`None` (a session cookie) or seconds as a rounded duration in `lang`, in the unit `_STEPS` gives it; a
    whole number of years (within 2 %, from 360 days) as years, so "1 year" and "365 days" read "1 year"."""
    if seconds is None:
        return SESSION[lang]
    unit, size = next(((unit, size) for unit, size, limit in _STEPS if seconds < limit), ("year", _YEAR))
    if seconds >= 360 * _DAY and abs(seconds / _YEAR - round(seconds / _YEAR)) <= 0.02:
        unit, size = "year", _YEAR
    count = max(1, round(seconds / size))
    one, many = LIFETIME_UNITS[unit][lang]
    return f"{count} {one if count == 1 else many}"


def lifetime_text(text: str, lang: str, keep_unread: bool = False) -> str:
    """A written lifetime (the database's free text, or a site's declaration) in `lang`'s words: one duration
    ("2 years", "13 Months", "24 hours", "1 jaar") through `lifetime_words`; a session, no end, several
    durations; else "unknown" -- or, with `keep_unread` (a site's own words), the text as written."""
    plain = text.strip()
    durations = {int(count) * _SECONDS[_ALIASES[unit.lower()]] for count, unit in _DURATION.findall(plain)}
    session = bool(_SESSION.search(plain)) or durations == {0}
    durations.discard(0)
    if len(durations) == 1 and not session and not _RANGE.search(plain):
        return lifetime_words(durations.pop(), lang)
    if durations or _VARIES.search(plain):  # several, a session or a range: no one duration
        return LIFETIME_WORDS["varies"][lang]
    if session:
        return SESSION[lang]
    if _UNLIMITED.search(plain):
        return LIFETIME_WORDS["unlimited"][lang]
    if keep_unread and plain:
        return plain
    return LIFETIME_WORDS["unknown"][lang]


@dataclass(frozen=True, slots=True)
class Purpose:
    """A purpose to show, and the language it is written in when that is not the view's (a database original)."""

    text: str
    lang: str = ""


@cache
def _catalogue_purposes() -> dict[str, dict[str, str]]:
    return {service.name: service.purpose for service in builtin_services()}


def catalogue_purpose(service: str, lang: str) -> str:
    """The catalogue's purpose of a service in `lang` ("" for a name the catalogue does not have)."""
    return _catalogue_purposes().get(service, {}).get(lang, "")


def database_purpose(known: Classification | None, category: str, lang: str, original: bool) -> Purpose:
    """A cookie the catalogue does not describe: its database description in English where the site asks for
    the original (`consent.database_purposes = "original"`), else what its category is for, in `lang`."""
    if original and known is not None and known.purpose.strip():
        return Purpose(" ".join(known.purpose.split()), "" if lang == "en" else "en")
    texts = CATEGORY_PURPOSES.get(category)
    return Purpose(texts[lang] if texts is not None else "")
