"""How to read a page's bytes without mangling text in any charset.

The scanner works on bytes (markup is ASCII in every charset we rewrite);
only the attribute values and script texts we judge are decoded, and what
we change is encoded back the same way. So:
- UTF-8 pages (by header, BOM, or `<meta>` in the first 1024 bytes, as the
  HTML standard's prescan) are read as UTF-8 (invalid bytes survive as
  surrogate escapes);
- other ASCII-compatible pages, and pages that declare nothing in time (a
  late `<meta charset>`), take a byte-transparent path: each byte is read
  as the code point of the same value (latin-1) and written back as it was.
  All injected markup is ASCII (character references), correct in every
  such charset.
- UTF-16/32 and ISO-2022 pages are not ASCII-compatible: left untouched.
"""

from __future__ import annotations

import codecs
import re
from typing import Literal

Mode = Literal["utf-8", "bytes", "skip"]

PRESCAN_BYTES = 1024
_META_RE = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)
_CONTENT_TYPE_RE = re.compile(rb"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_NOT_ASCII_COMPATIBLE = ("utf-16", "utf-32", "iso2022", "hz", "utf-7", "cp037", "cp500", "cp1140")


def charset_of_content_type(value: bytes) -> str | None:
    found = _CONTENT_TYPE_RE.search(value)
    return found.group(1).decode("ascii").lower() if found else None


def mode_of_label(label: str, from_meta: bool = False) -> Mode:
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return "bytes"  # unknown to Python: assume ASCII-compatible and keep every byte
    if name == "utf-8":
        return "utf-8"
    if name.startswith(_NOT_ASCII_COMPATIBLE):
        # The HTML standard reads a <meta> claiming UTF-16 as UTF-8 (the bytes it sits in are ASCII).
        return "utf-8" if from_meta and name.startswith("utf-16") else "skip"
    return "bytes"


def sniff(head: bytes) -> Mode | None:
    """The mode from a BOM or a `<meta>` in the first 1024 bytes; None when they say nothing."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "skip"
    found = _META_RE.search(head, 0, PRESCAN_BYTES)
    if found is None:
        return None
    return mode_of_label(found.group(1).decode("ascii"), from_meta=True)
