"""`consentproxy preview`: what the rewriter does to one page, for site owners checking their pages.

The page comes from a URL (fetched once, decoded if compressed) or a file;
it is rewritten exactly as the proxy would for a visitor in the given
consent state, and a summary says what was blocked and why, then lists
every resource the page loads from another host with what it was matched
to (a tracker rule's service and category, the functional list, the site's
declaration, or "unknown") and whether it was held: what a site owner
reads before turning `third_party = "hold"` on, or to find what to declare.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.declaration import SiteDeclaration
from consentproxy.banner.markup import PageInjection, SiteMarkup
from consentproxy.config.model import CATEGORY_IDS, SiteConfig
from consentproxy.consent.decision import NO_DECISION, Decision
from consentproxy.consent.state import ConsentState
from consentproxy.html import codings
from consentproxy.html.charset import Mode, charset_of_content_type, mode_of_label
from consentproxy.html.csp import NoncePlan
from consentproxy.html.functional import UNKNOWN_SERVICE, registrable
from consentproxy.html.rewriter import Blocked, PagePlan, PageRewriter, Resource
from consentproxy.html.step import site_parties
from consentproxy.html.trackers import ListIndex, TrackerMatcher

_MAX_PAGE = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Preview:
    html: bytes
    blocked: list[Blocked]
    allowed: frozenset[str]
    skipped: str = ""  # why the page would not be rewritten at all
    #: every URL of the page on another host, with what it was matched to
    resources: list[Resource] = field(default_factory=list)
    hold: bool = False  # the site holds unknown third parties


def decision_for(consent: str, ids: tuple[str, ...] = CATEGORY_IDS) -> Decision:
    """`none` (no decision yet), `all`, or a comma-separated list of granted categories (of `ids`, the site's)."""
    if consent == "none":
        return NO_DECISION
    granted = set(ids) if consent == "all" else {c.strip() for c in consent.split(",") if c.strip()}
    unknown = granted - set(ids)
    if unknown:
        raise ValueError(f"unknown categories: {', '.join(sorted(unknown))}; use {', '.join(ids)}")
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
            accept_language: bytes | None = None, page_url: str = "", lists: ListIndex | None = None) -> Preview:
    """`page_url`: where the page came from; its host is the page's own too (as the request's host is).
    `lists`: the operator's tracker lists (`[trackers]`), as the proxy's matcher has them."""
    hold = site.third_party == "hold"
    if mode == "skip":
        return Preview(page, [], decision.allowed, "its charset is not ASCII-compatible (UTF-16/32, ISO-2022)",
                       hold=hold)
    parties = site_parties(site)
    host = (urlsplit(page_url).hostname or "") if page_url.startswith(("http://", "https://")) else ""
    resources: list[Resource] = []
    plan = PagePlan(TrackerMatcher(site.consent.services, lists=lists), decision.allowed,
                    PageInjection(SiteMarkup(site, BannerAssets(), declaration=SiteDeclaration(site)), decision,
                                  accept_language), NoncePlan(),
                    parties=parties, own_domain=registrable(host) if host and not parties.own(host) else "",
                    inventory=resources, categories=frozenset(site.consent.category_ids))
    rewriter = PageRewriter(plan, mode)
    html = rewriter.feed(page) + rewriter.finish()
    return Preview(html, rewriter.blocked, decision.allowed, resources=resources, hold=hold)


def summary(result: Preview, site: SiteConfig) -> str:
    own = {s.name for s in site.consent.services}
    lines = [f"consent state: {', '.join(c for c in site.consent.category_ids if c in result.allowed)}"]
    if result.skipped:
        return "\n".join([*lines, f"not rewritten: {result.skipped}"])
    lines.append(f"{len(result.blocked)} element(s) blocked until their category is consented:")
    for item in result.blocked:
        why = ("marked data-consent-category by the site" if item.service == "site-tagged"
               else f"{item.service} (third_party = \"hold\")" if item.service.startswith(UNKNOWN_SERVICE)
               else f"service declared in the site's configuration: {item.service}" if item.service in own
               else f"built-in catalogue: {item.service}")
        detail = " ".join(item.detail.split())
        detail = detail if len(detail) <= 90 else detail[:87] + "..."
        lines.append(f"  {item.kind:<15} {item.category:<12} {why}\n  {'':<15} {detail}")
    lines += third_party_lines(result)
    return "\n".join(lines)


def third_party_lines(result: Preview) -> list[str]:
    """The page's resources on other hosts: held or loaded, element, what they matched, host, URL."""
    unique = list(dict.fromkeys(result.resources))
    unknown = sorted({r.host for r in unique if r.matched == "unknown"})
    policy = "held until Accept all" if result.hold else "loaded (third_party = \"report\"; \"hold\" holds them)"
    lines = [f"{len(unique)} resource(s) from other hosts ({len(unknown)} unknown host(s), {policy}):"]
    for item in unique:
        url = item.url if len(item.url) <= 100 else item.url[:97] + "..."
        lines.append(f"  {'held' if item.held else 'loads':<6} {item.element:<7} {item.matched}\n"
                     f"  {'':<14} {item.host}  {url}")
    if unknown:
        lines.append("unknown hosts (declare the site's own in functional_hosts): " + ", ".join(unknown))
    return lines
