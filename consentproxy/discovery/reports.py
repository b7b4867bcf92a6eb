"""Reading what browsers and the banner script send to `/_consent/report`, as they send it.

- `application/csp-report`: one violation per request, from `report-uri`
  (`{"csp-report": {"document-uri": …, "blocked-uri": …, "effective-directive": …}}`).
- `application/reports+json`: the Reporting API's batch, a list of reports;
  those of type "csp-violation" carry `body.documentURL`, `blockedURL`,
  `effectiveDirective`.
- `application/json` from the banner script: `{"cookies": [names], "decided": bool}`.

Only hosts are kept: a blocked URL's path and query, a cookie's value, a
script sample never leave this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

#: at most this many reports of one batch, cookie names of one page view, are read
MAX_ITEMS = 200
_HOST = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                   r"|\[[0-9a-f:.]+\]")
_DIRECTIVE = re.compile(r"[a-z-]{1,40}")
#: a cookie name as RFC 6265 allows it (a token), as the configuration's declarations do
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_SCHEMES = frozenset({"http", "https", "ws", "wss"})


class ReportError(ValueError):
    """The body is not a report of the format its content type names."""


@dataclass(frozen=True, slots=True)
class Violation:
    """A page tried to load from `host` (lower case) under `directive`; `url` is the blocked URL, to classify
    it by (its path may name the service), never stored."""

    document_host: str
    host: str
    url: str
    directive: str


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The banner's report: names of the cookies scripts can see on one page view."""

    names: tuple[str, ...]


def url_host(url: object) -> str | None:
    """The lower-case host of an http(s)/ws(s) URL; None for anything else ("inline", "eval", "data", "blob",
    an extension's URL)."""
    if not isinstance(url, str) or len(url) > 8192:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in _SCHEMES or not host:
        return None
    host = host.rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    return host if _HOST.fullmatch(host) else None


def _directive(*values: object) -> str:
    for value in values:
        if isinstance(value, str) and value:
            word = value.split(None, 1)[0].lower()
            if _DIRECTIVE.fullmatch(word):
                return word
    return "default-src"


def _violation(document: object, blocked: object, effective: object, violated: object) -> Violation | None:
    host = url_host(blocked)
    if host is None:
        return None
    document_host = url_host(document) or ""
    assert isinstance(blocked, str)
    return Violation(document_host, host, blocked, _directive(effective, violated))


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ReportError("the body is not JSON") from None


def csp_report(body: bytes) -> list[Violation]:
    """`application/csp-report` (report-uri)."""
    data = _json(body)
    report = data.get("csp-report") if isinstance(data, dict) else None
    if not isinstance(report, dict):
        raise ReportError('a CSP report is {"csp-report": {...}}')
    found = _violation(report.get("document-uri"), report.get("blocked-uri"), report.get("effective-directive"),
                       report.get("violated-directive"))
    return [found] if found is not None else []


def reporting_api(body: bytes) -> list[Violation]:
    """`application/reports+json` (the Reporting API): the batch's CSP violations; other report types skipped."""
    data = _json(body)
    if not isinstance(data, list):
        raise ReportError("a Reporting API upload is a list of reports")
    out = []
    for report in data[:MAX_ITEMS]:
        if not isinstance(report, dict) or report.get("type") != "csp-violation":
            continue
        inner = report.get("body")
        if not isinstance(inner, dict):
            continue
        found = _violation(inner.get("documentURL") or report.get("url"), inner.get("blockedURL"),
                           inner.get("effectiveDirective"), inner.get("violatedDirective"))
        if found is not None:
            out.append(found)
    return out


def cookie_names(body: bytes) -> CookieNames:
    """The banner script's JSON; names that are no cookie name are left out."""
    data = _json(body)
    names = data.get("cookies") if isinstance(data, dict) else None
    if not isinstance(names, list):
        raise ReportError('the banner\'s report is {"cookies": [names]}')
    valid = [name for name in names[:MAX_ITEMS] if isinstance(name, str) and _COOKIE_NAME.fullmatch(name)]
    return CookieNames(tuple(dict.fromkeys(valid)))
