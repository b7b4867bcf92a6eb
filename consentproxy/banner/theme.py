"""A site's banner theme: CSS custom properties in a stylesheet of their own.

A linked stylesheet rather than inline style, so pages whose CSP allows
styles from 'self' only still get it. Values are checked when the
configuration loads (nothing but a colour, a font list or a length can reach
the CSS), and colour pairs must keep the WCAG AA contrast of 4.5:1.
"""

from __future__ import annotations

import hashlib
import re

from consentproxy.config.model import ThemeConfig

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,200}$")
_LENGTH = re.compile(r"^(?:0|\d{1,3}(?:\.\d{1,2})?(?:px|rem|em))$")
POSITIONS = ("bottom", "top", "center")
#: where the re-open control sits (banner.css: .cp-re-*); on narrow screens a corner becomes "end"
REOPEN_POSITIONS = ("bottom-left", "bottom-right", "top-left", "top-right", "end", "none")
MIN_CONTRAST = 4.5

#: theme key → CSS custom property
PROPERTIES = {"background": "--cp-bg", "text": "--cp-fg", "accent": "--cp-accent", "accent_text": "--cp-accent-fg",
              "font": "--cp-font", "radius": "--cp-radius"}
#: the defaults of banner.css, for contrast checks of a pair where only one side is configured
DEFAULT_COLOURS = {"background": "#ffffff", "text": "#1a1a1a", "accent": "#1d4ed8", "accent_text": "#ffffff"}
PAIRS = (("text", "background"), ("accent_text", "accent"), ("accent", "background"))


def check_colour(value: str) -> str:
    if not _HEX.match(value):
        raise ValueError(f"expected a colour as #rgb or #rrggbb, got {value!r}")
    return value.lower()


def check_font(value: str) -> str:
    if not _FONT.match(value) or value.count('"') % 2 or value.count("'") % 2:
        raise ValueError(f"expected a font-family list such as \"Inter, Arial, sans-serif\", got {value!r}")
    return value


def check_length(value: str) -> str:
    if not _LENGTH.match(value):
        raise ValueError(f"expected a length such as \"8px\" or \"0.5rem\", got {value!r}")
    return value


def contrast(first: str, second: str) -> float:
    """The WCAG 2.x contrast ratio of two #rgb/#rrggbb colours."""
    brighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (brighter + 0.05) / (darker + 0.05)


def _luminance(colour: str) -> float:
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_problems(theme: ThemeConfig) -> list[tuple[str, str]]:
    """(key, reason) for every colour pair of the theme below 4.5:1."""
    colours = {key: getattr(theme, key) or default for key, default in DEFAULT_COLOURS.items()}
    problems = []
    for fore, back in PAIRS:
        if not (getattr(theme, fore) or getattr(theme, back)):
            continue  # both defaults: checked in banner.css
        ratio = contrast(colours[fore], colours[back])
        if ratio < MIN_CONTRAST:
            problems.append((fore, f"{colours[fore]} on {back} {colours[back]} has a contrast of {ratio:.2f}:1; "
                                   f"WCAG AA needs {MIN_CONTRAST}:1"))
    return problems


def theme_css(theme: ThemeConfig) -> str | None:
    """The stylesheet that sets the theme's properties, or None when the site keeps the defaults."""
    rules = [f"{prop}:{getattr(theme, key)}" for key, prop in PROPERTIES.items() if getattr(theme, key)]
    if not rules:
        return None
    return f"#cp-root,.cp-embed.cp-embed{{{';'.join(rules)}}}\n"


def theme_name(css: str) -> str:
    return f"theme.{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
