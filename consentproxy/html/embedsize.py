"""The box of a blocked iframe, for its click-to-load placeholder: loading the embed then moves nothing.

Read on the server from the iframe's own `width`/`height` attributes and inline `style` (`width`, `height`,
`aspect-ratio`), so the placeholder has the iframe's size with the first paint, before any script runs. What
a page's stylesheets do to the iframe is measured in the browser by banner.js (`fit`). Every value comes
from the page, so only a number with a known unit passes into the placeholder's `style` attribute.
"""

from __future__ import annotations

import re

#: a CSS length or percentage: digits and a unit, nothing that could end the declaration or the attribute
_LENGTH = re.compile(r"(?:\d{1,5}(?:\.\d{1,3})?|\.\d{1,3})(?:px|%|em|rem|vw|vh|vmin|vmax)|0", re.I)
_RATIO = re.compile(r"(\d{1,5}(?:\.\d{1,3})?)(?:\s*/\s*(\d{1,5}(?:\.\d{1,3})?))?")
#: an HTML dimension attribute ("560", "560px", "100%"): its leading number, then `%` or pixels
_DIMENSION = re.compile(r"\s*(\d{1,5}(?:\.\d{1,3})?)\s*(%?)")
#: an iframe's default size (CSS 2's replaced element without an intrinsic size) and border
_DEFAULT = {"width": "300px", "height": "150px"}


def _declarations(style: str) -> dict[str, str]:
    """The iframe's own width, height and aspect-ratio from its `style`, the last of each; unusable ones dropped."""
    found: dict[str, str] = {}
    for declaration in style.split(";"):
        name, colon, value = declaration.partition(":")
        name = name.strip().lower()
        value = value.strip().removesuffix("!important").strip() if colon else ""
        if name in ("width", "height") and _LENGTH.fullmatch(value):
            found[name] = value.lower()
        elif name == "aspect-ratio":
            ratio = _RATIO.fullmatch(value)
            if ratio and float(ratio.group(1)) > 0 and float(ratio.group(2) or 1) > 0:
                found[name] = f"{ratio.group(1)}/{ratio.group(2) or 1}"
    return found


def _dimension(value: str | None) -> str | None:
    match = _DIMENSION.match(value or "")
    if match is None or float(match.group(1)) == 0:
        return None
    return match.group(1) + (match.group(2) or "px")


def embed_box(width: str | None, height: str | None, style: str | None, frameborder: str | None) -> str:
    """CSS declarations giving the placeholder the iframe's box; "" when the iframe names no size at all.

    As in the browser, the style wins over the attributes; a missing side is the iframe's default (300x150)
    unless an aspect ratio derives it. The placeholder is content-box sized with the iframe's border width
    (2px, none with `frameborder="0"`), so that its border box is the iframe's.
    """
    found = _declarations(style or "")
    for name, value in (("width", width), ("height", height)):
        if name not in found and (dimension := _dimension(value)) is not None:
            found[name] = dimension
    if not found:
        return ""
    ratio = found.pop("aspect-ratio", None)
    if ratio is None:
        found = {**_DEFAULT, **found}
    else:
        found.setdefault("width", "auto" if "height" in found else "300px")
        found.setdefault("height", "auto")
    border = "0" if (frameborder or "").strip().lower() in ("0", "no") else "2px"
    out = f"width:{found['width']};height:{found['height']};border-width:{border}"
    return out + (f";aspect-ratio:{ratio}" if ratio else "")
