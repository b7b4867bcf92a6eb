"""`consentproxy preview`: what the rewriter does to one page, for site owners checking their pages.

The page comes from a URL (fetched once, decoded if compressed) or a file;
it is rewritten exactly as the proxy would for a visitor in the given
consent state, and a summary says what was blocked and why.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.config.model import CATEGORY_IDS, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.consent.state import ConsentState
from consentproxy.html import codings
from consentproxy.html.charset import Mode, charset_of_content_type, mode_of_label
from consentproxy.html.csp import NoncePlan
from consentproxy.html.rewriter import Blocked, PagePlan, PageRewriter
from consentproxy.html.trackers import TrackerMatcher

_MAX_PAGE = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Preview:
    html: bytes
    blocked: list[Blocked]
    allowed: frozenset[str]
    skipped: str = ""  # why the page would not be rewritten at all


def decision_for(consent: str) -> Decision:
    """`none` (no decision yet), `all`, or a comma-separated list of granted categories."""
    if consent == "none":
        return NO_DECISION
    granted = set(CATEGORY_IDS) if consent == "all" else {c.strip() for c in consent.split(",") if c.strip()}
    unknown = granted - set(CATEGORY_IDS)
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(sorted(unknown))}; use {', '.join(CATEGORY_IDS)}")
    state = ConsentState("preview", frozenset(granted - {"necessary"}), 0, 0, 0, "save_selection")
    return Decision("explicit", frozenset(granted | {"necessary"}), state)


def load_page(source: str) -> tuple[bytes, Mode | None]:
    """The page's bytes (decoded from any content coding) and its charset mode when the server named one."""
    if not source.startswith(("http://", "https://")):
        return Path(source).read_bytes(), None
    request = urllib.request.Request(  # noqa: S310 (only http and https reach this line)
        source, headers={"Accept": "text/html", "Accept-Encoding": "gzip, br, zstd", "User-Agent": "consentproxy"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        body = response.read(_MAX_PAGE)
        coding = (response.headers.get("Content-Encoding") or "").strip().lower().encode()
        content_type = (response.headers.get("Content-Type") or "").encode("latin-1")
    if coding and coding != b"identity":
        decoder = codings.decoder(coding)
        body = decoder.feed(body) + decoder.finish()
    label = charset_of_content_type(content_type)
    return body, mode_of_label(label) if label else None


def preview(site: SiteConfig, page: bytes, mode: Mode | None, decision: Decision,
            accept_language: bytes | None = None) -> Preview:
    if mode == "skip":
        return Preview(page, [], decision.allowed, "its charset is not ASCII-compatible (UTF-16/32, ISO-2022)")
    plan = PagePlan(TrackerMatcher(site.consent.services), decision.allowed,
                    PageInjection(SiteMarkup(site, BannerAssets()), decision, accept_language), NoncePlan())
    rewriter = PageRewriter(plan, mode)
    html = rewriter.feed(page) + rewriter.finish()
    return Preview(html, rewriter.blocked, decision.allowed)


def summary(result: Preview, site: SiteConfig) -> str:
    own = {s.name for s in site.consent.services}
    lines = [f"consent state: {', '.join(c for c in CATEGORY_IDS if c in result.allowed)}"]
    if result.skipped:
        return "\n".join([*lines, f"not rewritten: {result.skipped}"])
    lines.append(f"{len(result.blocked)} element(s) blocked until their category is consented:")
    for item in result.blocked:
        why = ("marked data-consent-category by the site" if item.service == "site-tagged"
               else f"service declared in the site's configuration: {item.service}" if item.service in own
               else f"built-in catalogue: {item.service}")
        detail = " ".join(item.detail.split())
        detail = detail if len(detail) <= 90 else detail[:87] + "..."
        lines.append(f"  {item.kind:<15} {item.category:<12} {why}\n  {'':<15} {detail}")
    return "\n".join(lines)
