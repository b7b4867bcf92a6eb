"""A user agent reduced to browser family, major version and OS family, still parseable by the backends.

A full user agent (build numbers, device model, OS version) narrows a visitor
down; "Chrome 131" alone would make every backend report an unknown browser.
So the reduced facts are written back as a canonical user agent string: all
Chrome 131 users on Windows send the very same one. OS versions in it are
fixed placeholders (the reports show one version per OS family); bots keep a
generic bot marker so that the backends still filter them.
"""

from __future__ import annotations

import functools
import re

from consentproxy.records.minimise import OTHER, ua_family

BOT = "Mozilla/5.0 (compatible; bot)"
_BOTS = re.compile(r"bot\b|crawl|spider|slurp|headless|lighthouse|phantomjs|python-|curl/|wget/|\bhttp", re.I)

_OS_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Macintosh|Mac OS X")),
    ("Linux", re.compile(r"Linux|X11")),
)
# What the browsers themselves send since their user-agent reductions, OS versions frozen.
_PLATFORM = {
    "Windows": "Windows NT 10.0; Win64; x64",
    "macOS": "Macintosh; Intel Mac OS X 10_15_7",
    "Linux": "X11; Linux x86_64",
    "ChromeOS": "X11; CrOS x86_64 14541.0.0",
    "Android": "Linux; Android 10; K",
    "iPhone": "iPhone; CPU iPhone OS 17_0 like Mac OS X",
    "iPad": "iPad; CPU OS 17_0 like Mac OS X",
}
_FIREFOX_PLATFORM = {**_PLATFORM, "macOS": "Macintosh; Intel Mac OS X 10.15", "Android": "Android 10; Mobile"}
_CHROME_VERSION = re.compile(r"\bChrome/(\d+)")
_IOS_TOKENS = {"Chrome": "CriOS", "Edge": "EdgiOS", "Opera": "OPT", "Firefox": "FxiOS"}


def os_family(user_agent: str) -> str:
    for family, pattern in _OS_FAMILIES:
        if pattern.search(user_agent):
            return family
    return OTHER


def generalise(user_agent: str | None) -> str:
    """The canonical user agent for this browser family, major version and OS family."""
    return _generalise((user_agent or "")[:512])


@functools.lru_cache(maxsize=4096)  # a few hundred user agents make up nearly all traffic
def _generalise(text: str) -> str:
    if not text or _BOTS.search(text):
        return BOT
    family_version = ua_family(text)
    system = os_family(text)
    device = ("iPad" if "iPad" in text else "iPhone") if system == "iOS" else system
    platform = _PLATFORM.get(device, "")
    if family_version == OTHER:
        return f"Mozilla/5.0 ({platform})" if platform else "Mozilla/5.0"
    family, _, major = family_version.rpartition(" ")
    mobile = "Mobile " if system == "Android" and "Mobile" in text else ""

    if system == "iOS":
        webkit = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
        if family == "Safari":
            return f"Mozilla/5.0 ({platform}) {webkit} Version/{major}.0 Mobile/15E148 Safari/604.1"
        token = _IOS_TOKENS.get(family, family.replace(" ", ""))
        return f"Mozilla/5.0 ({platform}) {webkit} {token}/{major}.0 Mobile/15E148 Safari/604.1"
    if family == "Firefox":
        ff_platform = _FIREFOX_PLATFORM.get(system, "X11; Linux x86_64")
        if system == "Android":
            return f"Mozilla/5.0 ({ff_platform}; rv:{major}.0) Gecko/{major}.0 Firefox/{major}.0"
        return f"Mozilla/5.0 ({ff_platform}; rv:{major}.0) Gecko/20100101 Firefox/{major}.0"
    if family == "Safari":
        return (f"Mozilla/5.0 ({platform or _PLATFORM['macOS']}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{major}.0 Safari/605.1.15")
    # Chromium family: Chrome, Edge, Opera, Samsung Internet
    chrome_match = _CHROME_VERSION.search(text)
    chrome = chrome_match.group(1) if chrome_match else major
    base = f"Mozilla/5.0 ({platform or _PLATFORM['Linux']}) AppleWebKit/537.36 (KHTML, like Gecko)"
    tail = f"Chrome/{chrome}.0.0.0 {mobile}Safari/537.36"
    if family == "Edge":
        return f"{base} {tail} {'EdgA' if system == 'Android' else 'Edg'}/{major}.0.0.0"
    if family == "Opera":
        return f"{base} {tail} OPR/{major}.0.0.0"
    if family == "Samsung Internet":
        return f"{base} SamsungBrowser/{major}.0 {tail}"
    return f"{base} {tail}"


def primary_language(accept_language: str | None) -> str | None:
    """The first language of an Accept-Language list: the rest of the list is a fingerprint."""
    if not accept_language:
        return None
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    if not first or len(first) > 35 or not all(c.isalnum() or c == "-" for c in first):
        return None
    return first
