"""Data minimisation for consent events: what little of the user agent may be kept.

A consent record needs no full user agent (which fingerprints): the browser
family with its major version is enough to show which banner build was seen.
(The IP address is reduced in `consentproxy.privacy.ip`.)
"""

from __future__ import annotations

import re

# Most specific first: Edge, Opera and Samsung Internet also say "Chrome/", Chrome also says "Safari/".
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\b(?:Edg|EdgA|EdgiOS|Edge)/(\d+)")),
    ("Opera", re.compile(r"\b(?:OPR|OPT|OPiOS)/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/(\d+)")),
)
_SAFARI_VERSION = re.compile(r"\bVersion/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")
OTHER = "other"


def ua_family(user_agent: str | None) -> str:
    """`Chrome 131`, `Firefox 133`, `Safari 18` … or `other`; nothing else of the user agent survives."""
    if not user_agent:
        return OTHER
    text = user_agent[:512]
    for family, pattern in _FAMILIES:
        match = pattern.search(text)
        if match:
            return f"{family} {int(match.group(1))}"
    if "Android" not in text:  # the old Android browser also says Version/4.0 … Safari/
        match = _SAFARI_VERSION.search(text)
        if match:
            return f"Safari {int(match.group(1))}"
    return OTHER
