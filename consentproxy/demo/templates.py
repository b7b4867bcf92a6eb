"""The demo's HTML templates: files in `pages/`, filled with `string.Template`.

Values are HTML-escaped unless passed as `raw`, so text taken from a request
can never add markup by accident; `raw` is for fragments we rendered ourselves.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from pathlib import Path
from string import Template

PAGES_DIR = Path(__file__).with_name("pages")


@functools.cache
def _template(name: str) -> Template:
    return Template((PAGES_DIR / name).read_text("utf-8"))


def render(name: str, text: Mapping[str, str] | None = None, raw: Mapping[str, str] | None = None) -> str:
    """Fill `pages/<name>`: `text` values escaped, `raw` ones as they are; a missing one raises KeyError."""
    values = {key: html.escape(value) for key, value in (text or {}).items()}
    values.update(raw or {})
    return _template(name).substitute(values)
