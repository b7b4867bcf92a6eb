"""The page rewriter: one per HTML response, fed chunk by chunk, or given the whole body at once.

The page goes through our scanner (`_scanner.c`), which tokenizes like a
browser and copies everything it is not asked about through unchanged, so the
output does not depend on where the chunks break. It hands over only the
elements we act on: `<script>` (with its whole text, so an inline script is
judged by its code before anything of it is written), `<noscript>` (its text,
rewritten as markup), `<iframe>`, `<img>`, `<link>`, `<object>`, `<embed>`,
SVG `<image>`, `<video>`, `<audio>`, `<source>`, `<track>`, `<input
type=image>`, CSP `<meta>`, `<html>`, `<body>`, any element whose `style`
attribute has a `url()`, any element a site tagged with
`data-consent-category`, and any with `data-consent-declaration` (which gets
the site's cookie declaration after its start tag). A `javascript:` URL in an
iframe is judged by its code; inline code is also read percent-decoded when it
holds an encoded tag.

Third parties (`PagePlan.parties`, see functional.py): a URL no tracker rule
knows whose host is not the site's own, declared or functional is recorded
for the site and, when the site holds them (`third_party = "hold"`) and the
visitor has not granted marketing, held like a marketing element, with its
`<style>` texts too (the scanner hands them over only then, so a page of a
site that holds nothing pays nothing for them).

What the scanner holds is bounded (`HOLD_LIMIT`, 1 MiB each): a start tag until
its `>`, a script's or noscript's text until its end tag. Past the bound, on
the safe side and the same whether the page came whole or in pieces: an inline
script is judged by its first `HOLD_LIMIT` bytes, and one they name no tracker
in is blocked all the same, as marketing (kind "oversize-script": counted in
`consentproxy_elements_blocked`), unless the site tagged it with
`data-consent-category`, since a tracker must not run unasked and an inline
script that large is rare (a script with `src`, or not JavaScript, is judged
by its tag as usual); a `<noscript>`'s text is dropped (kind
"oversize-noscript"), since only a browser without scripts shows it and it
could hold pixels; a start tag longer than that passes unrewritten, a
`<script>` one made inert (`type="text/plain"` put first).

A tag we change is written again the way lol-html writes a modified tag: its
name and untouched attributes as they came, changed values in place, new
attributes at the end. What repeats across a site's responses, the tracker
matcher's answers, the rewritten `<noscript>` snippets, the raw tags that
need no change at a consent state and what the blocked ones become, is kept
per site; a response adds only its own stamp.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

from consentproxy.config.model import CATEGORY_IDS
from consentproxy.html._scanner import ELEMENT, NOSCRIPT, SCRIPT, STYLE, Scanner, TagSet
from consentproxy.html.charset import PRESCAN_BYTES, Mode, sniff
from consentproxy.html.csp import NoncePlan
from consentproxy.html.embedsize import embed_box
from consentproxy.html.functional import UNKNOWN_SERVICE, ThirdParties
from consentproxy.html.trackers import Kind, Match, TrackerMatcher, srcset_urls

_JS_TYPES = frozenset({
    "", "module", "text/javascript", "application/javascript", "application/x-javascript", "text/ecmascript",
    "application/ecmascript", "text/jscript", "text/livescript", "text/x-javascript", "text/x-ecmascript",
    "text/javascript1.0", "text/javascript1.1", "text/javascript1.2", "text/javascript1.3",
    "text/javascript1.4", "text/javascript1.5",
})
_ALL_CATEGORIES = frozenset(CATEGORY_IDS)
_HINT_RELS = frozenset({"preconnect", "dns-prefetch"})
_FETCH_RELS = frozenset({"preload", "prefetch", "modulepreload"})
#: a site's look: judged by host (an ad vendor's CSS is its own request to its host)
_STYLE_RELS = frozenset({"stylesheet"})
#: every `<link>` that makes a request (or a connection) without a script: held from unknown hosts
_HELD_RELS = _HINT_RELS | _FETCH_RELS | _STYLE_RELS | frozenset({
    "icon", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon", "manifest", "prerender"})
#: URL attributes moved aside on an element a site tagged itself
_TAGGED_URL_ATTRIBUTES = ("src", "href", "srcset", "data", "poster")
#: where lazy-loading scripts keep an element's URL until they set `src` (a tracker there is blocked like `src`)
_LAZY_URLS = ("data-src", "data-lazy-src", "data-original", "data-lazy")
_LAZY_SRCSETS = ("data-srcset", "data-lazy-srcset")
_IMG_URLS = ("src", *_LAZY_URLS)
_IMG_SRCSETS = ("srcset", *_LAZY_SRCSETS)
#: SVG's <image> (reported in foreign content) loads `href`, or the older `xlink:href`
_SVG_IMAGE_URLS = ("href", "xlink:href", *_IMG_URLS)
_IFRAME_URLS = ("src", "data-src", "data-lazy-src")
#: <video>, <audio>, <source>, <track>, <input type=image>: what they load (a <source> in <picture> a srcset)
_MEDIA_URLS = ("src", "poster", *_LAZY_URLS, "data-poster")
_MEDIA_SRCSETS = ("srcset", *_LAZY_SRCSETS)
#: the attributes `preview` lists the URLs of, on the elements that load them
_URL_NAMES = frozenset({"src", "href", "data", "poster", "xlink:href", *_LAZY_URLS, "data-poster"})
_SRCSET_NAMES = frozenset({"srcset", "imagesrcset", *_LAZY_SRCSETS})
_LOADING = frozenset({"script", "img", "image", "iframe", "link", "object", "embed", "video", "audio", "source",
                      "track", "input"})
#: the markup of a tag, percent-encoded in code that writes it into a document later ("%3Cscript%20src%3D…")
_ENCODED_TAG = re.compile(r"%3c(?:script|iframe|img|link|object|embed)\b", re.IGNORECASE)
#: a `url()` of CSS: its URL quoted either way, or bare
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.IGNORECASE)
#: an `@import` of a style sheet by a string (its `url()` form is a `url()`)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
#: what a browser strips from both ends of a URL (C0 controls and space)
_URL_EDGES = "".join(map(chr, range(33)))
_CSP_EQUIV = frozenset({"content-security-policy", "content-security-policy-report-only"})
#: one attribute of a raw start tag, as the HTML standard reads it (a name may start with "=")
_ATTRIBUTE = re.compile(r"""[\t\n\f\r /]*([^\t\n\f\r />][^\t\n\f\r /=>]*(?:[\t\n\f\r ]*=[\t\n\f\r ]*"""
                        r"""(?:"[^"]*"|'[^']*'|[^\t\n\f\r >]*))?)""")
_TAG_NAME = re.compile(r"<[^\t\n\f\r />]+")


class Blocked(NamedTuple):
    """One element the rewriter neutralised (for `preview`, metrics and tests).

    A named tuple: made for every blocked element, at half the cost of a frozen dataclass.
    """

    #: script-src, inline-script, iframe, img, link, media, object, embed, style, style-sheet, tagged...; with
    #: "third-party-" before it for an unknown host held, "noscript-" for what is inside <noscript>
    kind: str
    service: str
    category: str
    detail: str


class Resource(NamedTuple):
    """One URL of a page's element on another host, and what it was matched to (for `preview`)."""

    url: str
    element: str  # the element's name: script, img, link, iframe, video...
    host: str
    #: "<service> (<category>)" of a tracker rule, "functional: <what>", "site-declared: <host>", or "unknown"
    matched: str
    held: bool


class Injection:
    """What the page gets from us; supplied by the banner layer so the rewriter stays generic.

    `origin`: "" for URLs of our own as root-relative paths, or the request's own origin ("https://shop.nl") to
    put before them, once the page has set a base URL (`<base href>`), which would resolve them elsewhere.
    """

    def consent_mode(self, nonces: NoncePlan, origin: str = "") -> str:
        return ""

    def bundle(self, page_lang: str | None, nonces: NoncePlan, stamp: str, origin: str = "") -> str:
        return ""

    def placeholder(self, page_lang: str | None, service: str, embed_id: str, box: str = "",
                    inline_style: bool = True) -> str:
        """`box`: CSS declarations giving it the blocked iframe's size (see embedsize), "" for none; in its
        `style`, or (`inline_style` False: the page's policy refuses style attributes) for banner.js to apply."""
        return ""

    def declaration(self, page_lang: str | None) -> str:
        """The site's cookie declaration, for an element with `data-consent-declaration`."""
        return ""


#: (content, allowed, unblocked) → (content rewritten with `_STAMP_MARK` for the stamp, or None if unchanged;
#: what was blocked)
NoscriptMemo = dict[tuple[str, frozenset[str], frozenset[str], str], tuple[str | None, tuple[Blocked, ...]]]


@dataclass(slots=True)
class StateMemo:
    """What a site's pages give at one consent state (allowed, unblocked), kept across its responses."""

    #: raw start tags (`<img>`, `<link>`, `<iframe>`, tagged elements) that stay as they are; the scanner
    #: passes them through without a Python call (a page's ~50 product images)
    noop: TagSet = field(default_factory=TagSet)
    #: (raw start tag, text, codec) of a `<script>` → (what it becomes, encoded, with `_STAMP_MARK` for the
    #: stamp, or None when unchanged; what was blocked): the same snippets come on every page
    scripts: dict[tuple[bytes, bytes, str], tuple[bytes | None, tuple[Blocked, ...]]] = field(default_factory=dict)
    #: (raw start tag, codec) of an `<img>`, `<link>`, media or `<object>`/`<embed>` that is blocked → (what it
    #: becomes, with `_STAMP_MARK` for the stamp; what was blocked): a site that holds unknown third parties
    #: holds the same images and stylesheets on every page
    changed: dict[tuple[bytes, str], tuple[bytes, tuple[Blocked, ...]]] = field(default_factory=dict)
    #: (text, codec) of a `<style>` (handed over under hold only) → (the text with what is held neutralised,
    #: or None when unchanged; what was held)
    styles: dict[tuple[bytes, str], tuple[bytes | None, tuple[Blocked, ...]]] = field(default_factory=dict)


#: keyed by (allowed, unblocked), and the request's own domain where the site's hosts do not name it (a `*` site)
StateMemos = dict[tuple[frozenset[str] | str, ...], StateMemo]
_STAMP_MARK = "cp-stamp-9d1e4b7a"
_STAMP_MARK_BYTES = _STAMP_MARK.encode()
_PLAIN_STAMP = re.compile(r"[A-Za-z0-9_-]+")  # as secrets.token_urlsafe makes them
_NOSCRIPT_MEMO_ENTRIES = 256
_NOSCRIPT_MEMO_CHARS = 4096
_NOOP_TAGS = 4096
_CHANGED_TAGS = 2048
#: `<style>` texts kept per site and state: up to this many bytes of text in all (a site's template has a few,
#: some over 100 KB), each up to 1/8 of it
_STYLE_MEMO_BYTES = 1 << 22
_OWN_DOMAIN_STATES = 64
_SCRIPT_MEMO_ENTRIES = 512
_SCRIPT_MEMO_BYTES = 8192
#: the most the scanner holds of a start tag, or of a script's or noscript's text (see the module docstring)
HOLD_LIMIT = 1 << 20
#: what a script too long to judge whole, and naming no tracker in its first HOLD_LIMIT bytes, counts as
_OVERSIZE = Match("unclassified", "marketing")


@dataclass(slots=True)
class PagePlan:
    """Everything one response's rewrite depends on."""

    matcher: TrackerMatcher
    allowed: frozenset[str]
    injection: Injection
    nonces: NoncePlan = field(default_factory=NoncePlan)
    #: a random token per response on every blocked element and on the banner script, which activates only
    #: elements that carry it (markup injected by anyone else is never activated)
    stamp: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    #: services that run whatever the visitor chose, because their hits go through the proxy's anonymiser
    #: (a site that declares statistics exempt)
    unblocked: frozenset[str] = frozenset()
    #: service → (attribute, value) set on its <script src>, pointing it at the proxy's analytics endpoint
    script_attributes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: rewritten `<noscript>` contents, shared by the plans of one site (same matcher): the same pixel snippet
    #: comes on every page
    noscript_memo: NoscriptMemo = field(default_factory=dict)
    #: per consent state, shared by the plans of one site (same matcher and analytics routing)
    state_memos: StateMemos = field(default_factory=dict)
    #: the site's third parties (its own hosts, declared and functional ones, the record of unknown ones);
    #: None: no third-party view (URLs no tracker rule knows are neither recorded nor held)
    parties: ThirdParties | None = None
    #: the registrable domain of the request's host where the site's `hosts` do not name it (a `*` site):
    #: its own too; part of the memos' keys
    own_domain: str = ""
    #: the request's own origin ("https://shop.nl"; "" when not known for sure): what we inject names it once
    #: the page has a `<base href>`
    origin: str = ""
    #: the site's categories, its own included: with all of them granted nothing is blocked
    categories: frozenset[str] = _ALL_CATEGORIES
    #: when a list: every URL on another host of every element, with what it was matched to (`preview`;
    #: the memos are not used, so every element is looked at)
    inventory: list[Resource] | None = None

    @property
    def blocking(self) -> bool:
        """False when every category is granted: nothing to block."""
        return not self.allowed >= self.categories


def is_javascript(type_value: str | None) -> bool:
    return type_value is None or type_value.strip().lower() in _JS_TYPES


def site_tagged(category: str | None, found: Match | None) -> Match | None:
    """A site's own `data-consent-category` decides the category; the catalogue still names the service."""
    if category is None:
        return found
    return Match(found.service if found else "site-tagged", category.strip().lower() or "necessary")


def _escape(value: str) -> str:
    """For attribute values we set from names: the ampersand escaped (`_Tag` escapes the quote)."""
    return value.replace("&", "&amp;")


def start_tag(name: str, attributes: list[tuple[str, str]]) -> str:
    """A start tag from raw attribute values (character references stay as written)."""
    parts = ["<", name]
    for key, value in attributes:
        if not value:
            parts += [" ", key]
        elif '"' not in value:
            parts += [" ", key, '="', value, '"']
        elif "'" not in value:
            parts += [" ", key, "='", value, "'"]
        else:
            parts += [" ", key, '="', value.replace('"', "&quot;"), '"']
    parts.append(">")
    return "".join(parts)


#: a token from the scanner: (kind, raw start tag, name, attributes, in <template>, text, raw end tag,
#: self-closing)
Token = tuple[int, bytes, str, list[tuple[str, str]], bool, bytes | None, bytes | None, bool]


def _pair(text: str) -> tuple[str, str]:
    """An attribute as written → (lower-case name, raw value)."""
    split = text.find("=", 1)  # a name may start with "="
    if split < 0:
        return text.strip(" \t\n\f\r").lower(), ""
    value = text[split + 1:].strip(" \t\n\f\r")
    if value[:1] in ("'", '"'):
        value = value[1:-1]
    return text[:split].strip(" \t\n\f\r").lower(), value


class _Tag:
    """A start tag being changed: attribute reads from the scanner's list, writes the way lol-html makes them."""

    __slots__ = ("_texts", "attributes", "changed", "name", "raw", "self_closing")

    def __init__(self, raw: str, name: str, attributes: list[tuple[str, str]], self_closing: bool) -> None:
        self.raw = raw
        self.name = name
        self.attributes = attributes
        self.self_closing = self_closing
        self.changed = False
        self._texts: list[str] | None = None  # each attribute as written, once something changes

    def get(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def _written(self) -> list[str]:
        texts = self._texts
        if texts is None:
            start = _TAG_NAME.match(self.raw)
            texts = [found.group(1) for found in _ATTRIBUTE.finditer(self.raw, start.end() if start else 1,
                                                                       len(self.raw) - 1)]
            if len(texts) != len(self.attributes):  # the two readings follow one grammar; if not, trust this one
                self.attributes = [_pair(text) for text in texts]
            self._texts = texts
        self.changed = True
        return texts

    def set(self, name: str, value: str) -> None:
        """Replace the first attribute of that name where it stands (its name as written), or add one."""
        texts = self._written()
        quoted = '="' + value.replace('"', "&quot;") + '"'
        for index, (key, _) in enumerate(self.attributes):
            if key == name:
                self.attributes[index] = (name, value)
                written = texts[index][:len(name)]
                texts[index] = (written if written.lower() == name else name) + quoted
                return
        self.attributes.append((name, value))
        texts.append(name + quoted)

    def remove(self, name: str) -> None:
        texts = self._written()
        keep = [index for index, (key, _) in enumerate(self.attributes) if key != name]
        self.attributes = [self.attributes[i] for i in keep]
        self._texts = [texts[i] for i in keep]

    def move(self, name: str) -> str | None:
        """Move an attribute aside (`data-cp-…`); a repeated one goes too, or it would take the first one's place."""
        value = self.get(name)
        if value is not None:
            self.remove(name)
            self.set("data-cp-" + name, value)
        return value

    def text(self) -> str:
        if not self.changed:
            return self.raw
        assert self._texts is not None
        tag = _TAG_NAME.match(self.raw)
        head = tag.group() if tag else "<" + self.name
        return "".join([head, *(" " + text for text in self._texts), " />" if self.self_closing else ">"])


class _Page:
    """What one response's handlers share, and the handlers themselves (one method per element)."""

    def __init__(self, plan: PagePlan, codec: str, nested: bool = False) -> None:
        self.plan = plan
        self.codec = codec
        self.errors = "surrogateescape" if codec == "utf-8" else "strict"
        self.allowed = plan.allowed
        self.unblocked = plan.unblocked
        self.blocking = plan.blocking
        self.matcher = plan.matcher
        self.rewrites = plan.script_attributes
        self.stamp = plan.stamp
        self.blocked: list[Blocked] = []
        self.page_lang: str | None = None
        #: inside `<noscript>` only what loads without scripts is rewritten, and an iframe gets no placeholder
        self.nested = nested
        self.consent_mode_done = self.bundle_done = nested
        #: what our injected URLs start with: "" until the page sets a base URL (see `base`)
        self.origin = ""
        self.embeds = 0
        self.pixel_answers = self.matcher.answers("pixels")
        self.noop: TagSet | None = None
        #: script outcomes kept across responses; not when the stamp could be mistaken for the mark
        self.scripts: dict[tuple[bytes, bytes, str], tuple[bytes | None, tuple[Blocked, ...]]] | None = None
        self.changed: dict[tuple[bytes, str], tuple[bytes, tuple[Blocked, ...]]] | None = None
        self.styles: dict[tuple[bytes, str], tuple[bytes | None, tuple[Blocked, ...]]] | None = None
        self.parties = plan.parties
        self.own_domain = plan.own_domain
        #: unknown third parties are held (a site that holds them, a visitor who has not granted marketing)
        self.hold = plan.parties is not None and plan.parties.hold and "marketing" not in plan.allowed
        self.new_unknown = 0  # hosts this page added to the site's record of unknown ones
        self.inventory = plan.inventory
        if not nested and self.inventory is None:
            key: tuple[frozenset[str] | str, ...] = (plan.allowed, plan.unblocked)
            if plan.own_domain:
                key += (plan.own_domain,)
                if len(plan.state_memos) > _OWN_DOMAIN_STATES:  # a `*` site answers to any number of domains
                    plan.state_memos.clear()
            memo = plan.state_memos.get(key)
            if memo is None:
                memo = plan.state_memos[key] = StateMemo()
            if len(memo.noop) > _NOOP_TAGS:
                memo.noop.clear()
            if len(memo.scripts) > _SCRIPT_MEMO_ENTRIES:
                memo.scripts.clear()
            if len(memo.changed) > _CHANGED_TAGS:
                memo.changed.clear()
            self.styles = memo.styles
            self.noop = memo.noop
            if _PLAIN_STAMP.fullmatch(plan.stamp) and _STAMP_MARK not in plan.stamp:
                self.scripts = memo.scripts
                self.changed = memo.changed
        self.handlers = _NESTED_HANDLERS if nested else _HANDLERS
        #: a srcdoc document's scripts run: judged although nested
        self.judge_scripts = not nested
        self.depth = 0  # of srcdoc documents

    # -- plumbing ------------------------------------------------------------
    def scanner(self) -> Scanner:
        # <style> text is handed over only where unknown hosts are held: elsewhere it costs nothing
        return Scanner(latin1=self.codec != "utf-8", noop=self.noop, hold_limit=HOLD_LIMIT, styles=self.hold)

    def handle(self, items: list[bytes | Token]) -> bytes:
        """The scanner's output with our changes, as bytes again."""
        if len(items) == 1 and isinstance(items[0], bytes):
            return items[0]
        out: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                out.append(item)
                continue
            token = item
            kind = token[0]
            before = len(self.blocked)
            if kind == SCRIPT:
                self.script(token, out)
                if self.inventory is not None:
                    self.list_urls(token, len(self.blocked) > before)
                continue
            if kind == STYLE:
                self.style_element(token, out)
                continue
            texts: list[str] = []
            if kind == NOSCRIPT:
                self.noscript(token, texts)
            elif self.changed is not None and token[2] in _MEMO_ELEMENTS:
                self.memoised(token, out)
                continue
            else:
                self.handlers.get(token[2], _Page.tagged)(self, token, texts)
                if self.inventory is not None:
                    self.list_urls(token, len(self.blocked) > before)
            if texts:
                out.append("".join(texts).encode(self.codec, self.errors))
            else:  # unchanged
                out.append(token[1])
                if kind:
                    out += (token[5] or b"", token[6] or b"")
        return b"".join(out)

    def style_element(self, token: Token, out: list[bytes]) -> None:
        """A `<style>` under hold: its `url()`s and `@import`s that load what is held (an unknown host's, a
        blocked tracker's) are neutralised. Not restored on Accept all (the next page has them): the banner
        re-activates elements, not style sheets."""
        _, raw, _, _, _, content, end, _ = token
        assert content is not None
        if end is None:  # longer than HOLD_LIMIT: the rest follows as it came; left as it is
            out += (raw, content)
            return
        memo = self.styles if len(content) <= _STYLE_MEMO_BYTES // 8 else None
        key = (content, self.codec)
        found = memo.get(key) if memo is not None else None
        if found is None:
            before = len(self.blocked)
            css = content.decode(self.codec, self.errors)
            rewritten = _CSS_IMPORT.sub(lambda m: self._css_url(m, '"data:text/css,"'), css)
            rewritten = _CSS_URL.sub(lambda m: self._css_url(m, "none"), rewritten)
            found = (rewritten.encode(self.codec, self.errors) if rewritten != css else None,
                     tuple(self.blocked[before:]))
            del self.blocked[before:]
            if memo is not None:
                if sum(len(text) for text, _ in memo) + len(content) > _STYLE_MEMO_BYTES:
                    memo.clear()
                memo[key] = found
        self.blocked.extend(found[1])
        out += (raw, content if found[0] is None else found[0], end)

    def _css_url(self, found: re.Match[str], neutral: str) -> str:
        """One `url()` or `@import` string of a style sheet: as it came, or `neutral` in its place when what it
        loads is held."""
        group = next(index for index in range(1, len(found.groups()) + 1) if found.group(index) is not None)
        url = found.group(group)
        match = self.matcher.url("pixels", url)
        if match is None:
            held = self.third_party("style", (url,))
            match = held[0] if held is not None else None
        if not self.blocks(match):
            return found.group()
        assert match is not None
        kind = "third-party-style-sheet" if match.service.startswith(UNKNOWN_SERVICE) else "style-sheet"
        self.blocked.append(Blocked("noscript-" + kind if self.nested else kind, match.service, match.category,
                                    url))
        if found.group().startswith("@"):  # `@import "…"`: the string goes, the at-rule stays
            return found.string[found.start():found.start(group) - 1] + neutral
        return neutral

    def memoised(self, token: Token, out: list[bytes]) -> None:
        """An element whose outcome is a function of its raw tag at a consent state (no per-page numbering, no
        nonce): a blocked one is written once with the memo's mark for the stamp, then reused."""
        assert self.changed is not None
        key = (token[1], self.codec)
        found = self.changed.get(key)
        if found is None:
            texts: list[str] = []
            stamp, self.stamp = self.stamp, _STAMP_MARK
            before = len(self.blocked)
            try:
                self.handlers[token[2]](self, token, texts)
            finally:
                self.stamp = stamp
            if not texts:  # unchanged: the scanner passes it through from now on
                out.append(token[1])
                return
            found = self.changed[key] = ("".join(texts).encode(self.codec, self.errors), tuple(self.blocked[before:]))
        else:
            self.blocked.extend(found[1])
        out.append(found[0].replace(_STAMP_MARK_BYTES, self.stamp.encode("ascii")))

    def first_scripts(self) -> str:
        """What must run before any of the page's scripts (the guard, the Consent Mode default), once: before
        its first `<script>`, else before `<body>` (its event handler attributes are scripts too), else at
        the end."""
        if self.consent_mode_done:
            return ""
        self.consent_mode_done = True
        return self.plan.injection.consent_mode(self.plan.nonces, self.origin)

    def end(self) -> bytes:
        if self.bundle_done:
            return b""
        self.bundle_done = True  # a document without <body>: the parser puts this in the implied body
        code = self.first_scripts() + self.plan.injection.bundle(self.page_lang, self.plan.nonces, self.stamp,
                                                                 self.origin)
        return code.encode(self.codec, self.errors)

    def _tag(self, token: Token) -> _Tag:
        return _Tag(token[1].decode(self.codec, self.errors), token[2], list(token[3]), token[7])

    def _unchanged(self, token: Token, texts: list[str]) -> None:
        """A tag left as it came (unless its style attribute loads what is blocked): the scanner passes it
        through from now on (same consent state)."""
        if token[0] == ELEMENT and self.blocking and _style_url(token[3]) and self.style(token, texts):
            return
        if self.noop is not None:
            self.noop.add(token[1])

    def style(self, token: Token, texts: list[str]) -> bool:
        """A `style` attribute whose `url()`s name what is blocked (a tracker's, or an unknown host's under hold):
        those become `none`, the attribute as it came is kept in `data-cp-style`, the element is marked."""
        tag = self._tag(token)
        found = self._neutralise_style(tag)
        if not found:
            return False
        self.mark(tag, found[0][0], "style", found[0][1])
        texts.append(tag.text())
        return True

    def _neutralise_style(self, tag: _Tag) -> list[tuple[Match, str]]:
        """The blocked `url()`s of the tag's style attribute made `none` (the attribute as it came kept in
        `data-cp-style`); what they were."""
        raw = tag.get("style") or ""
        value = html.unescape(raw) if "&" in raw else raw
        found: list[tuple[Match, str]] = []

        def neutral(css_url: re.Match[str]) -> str:
            url = next(group for group in css_url.groups() if group is not None)
            match = self.matcher.url("pixels", url)
            if match is None:
                held = self.third_party("style", (url,))
                match = held[0] if held is not None else None
            if not self.blocks(match):
                return css_url.group()
            assert match is not None
            found.append((match, url))
            return "none"

        rewritten = _CSS_URL.sub(neutral, value)
        if found:
            tag.set("style", rewritten.replace("&", "&amp;"))
            tag.set("data-cp-style", raw)
        return found

    def _inline(self, code: str) -> Match | None:
        """The service inline code loads: named in it, or in the markup it holds percent-encoded (a tag it
        writes into a document later, `"%3Cscript%20src%3Dhttps%3A%2F%2F…"`)."""
        found = self.matcher.inline(code)
        if found is None and "%" in code and _ENCODED_TAG.search(code):
            found = self.matcher.inline(unquote(code))
        return found

    def _unknown_script(self, url: str) -> Match | None:
        held = self.third_party("script", (url,)) if self.parties is not None else None
        return held[0] if held is not None else None

    def blocks(self, match: Match | None) -> bool:
        return match is not None and match.category not in self.allowed and match.service not in self.unblocked

    # -- third parties no tracker rule knows -----------------------------------
    def third_party(self, kind: str, urls: Iterable[str]) -> tuple[Match, str] | None:
        """For an element no tracker rule matched: its URLs on unknown hosts are recorded for the site, and the
        first one's hold and URL returned when the site holds them (else None)."""
        parties = self.parties
        if parties is None:
            return None
        held = None
        for url in urls:
            party = parties.party(url)
            if party.origin != "unknown" or self.own_extra(party.host):
                continue
            assert party.host is not None
            if parties.record(party.host, url, kind):
                self.new_unknown += 1
            if held is None and self.hold:
                assert party.hold is not None
                held = party.hold, url
        return held

    def own_extra(self, host: str | None) -> bool:
        """The request's own host (or a subdomain of its domain), where the site's `hosts` do not name it."""
        own = self.own_domain
        return bool(own) and host is not None and (host == own or host.endswith("." + own))

    def list_urls(self, token: Token, held: bool) -> None:
        """`preview`'s inventory: every URL of the element on another host, with what it was matched to."""
        assert self.inventory is not None and self.parties is not None
        name = token[2]
        if name not in _LOADING and not _style_url(token[3]):
            return
        attributes = dict(reversed(token[3]))  # the first of duplicate attributes counts
        if name == "link":
            rels = (attributes.get("rel") or "").lower().split()
            if _HELD_RELS.isdisjoint(rels):
                return
        if name == "script" and not is_javascript(attributes.get("type")):
            return
        kind: Kind = ("scripts" if name in ("script", "link") else "iframes"
                      if name in ("iframe", "object", "embed") else "pixels")
        for attribute, value in attributes.items():
            if attribute == "style":
                css = html.unescape(value)
                urls = [next(g for g in found.groups() if g is not None) for found in _CSS_URL.finditer(css)]
            elif name not in _LOADING:
                continue
            elif attribute in _SRCSET_NAMES:
                urls = srcset_urls(html.unescape(value))
            elif attribute in _URL_NAMES:
                urls = [value]
            else:
                continue
            for url in urls:
                party = self.parties.party(url)
                if party.host is None or self.own_extra(party.host):
                    continue
                tracker = self.matcher.url(kind, url) or self.matcher.host(url)
                if tracker is not None:
                    matched = f"{tracker.service} ({tracker.category})"
                elif party.origin == "own":
                    continue
                elif party.origin == "unknown":
                    matched = "unknown"
                else:
                    matched = f"{'site-declared' if party.origin == 'declared' else 'functional'}: {party.label}"
                element = name + " style" if attribute == "style" else name
                self.inventory.append(Resource(html.unescape(url), element, party.host, matched, held))

    def mark(self, tag: _Tag, match: Match, kind: str, detail: str) -> None:
        """Mark a blocked element; a `url()` of its style attribute that is blocked too waits with it."""
        if kind != "style" and "url(" in (tag.get("style") or "").lower() and tag.get("data-cp-style") is None:
            self._neutralise_style(tag)
        tag.set("data-cp-blocked", _escape(match.category))
        tag.set("data-cp-service", _escape(match.service))
        tag.set("data-cp-stamp", self.stamp)
        if match.service.startswith(UNKNOWN_SERVICE):
            kind = "third-party-" + kind
        if self.nested:
            kind = "noscript-" + kind
        self.blocked.append(Blocked(kind, match.service, match.category, detail))

    # -- elements ------------------------------------------------------------
    def script(self, token: Token, out: list[bytes]) -> None:
        """A `<script>` element into `out`: blocked, pointed at our endpoint, or as it came (bytes throughout:
        the same snippets come on every page, and their outcome is kept encoded)."""
        _, raw, _, _, in_template, content, end, _ = token
        assert content is not None
        if not in_template:  # a template's script is inert
            code = self.first_scripts()
            if code:
                out.append(code.encode(self.codec, self.errors))
        memo = self.scripts if not (self.origin and self.rewrites) else None  # endpoints on the page's base
        if not self.judge_scripts:
            written = None
        elif memo is None or end is None or len(content) > _SCRIPT_MEMO_BYTES or _STAMP_MARK_BYTES in content:
            changed = self._judge_script(token)
            written = changed.encode(self.codec, self.errors) if changed is not None else None
        else:
            key = (raw, content, self.codec)
            found = memo.get(key)
            if found is None:
                stamp, self.stamp = self.stamp, _STAMP_MARK
                before = len(self.blocked)
                try:
                    changed = self._judge_script(token)
                finally:
                    self.stamp = stamp
                found = memo[key] = (changed.encode(self.codec, self.errors) if changed is not None else None,
                                     tuple(self.blocked[before:]))
            else:
                self.blocked.extend(found[1])
            written = found[0]
            if written is not None:
                written = written.replace(_STAMP_MARK_BYTES, self.stamp.encode("ascii"))
        if written is None:
            out += (raw, content, end or b"")
        else:
            out.append(written)

    def _judge_script(self, token: Token) -> str | None:
        """The script element as it is to be written, or None when it stays as it is (end tag None: its text
        was cut at HOLD_LIMIT, the rest follows as it came)."""
        _, _, _, attributes, _, content, end, _ = token
        assert content is not None
        cut = end is None
        end = end or b""
        rewrites = self.rewrites
        if (not self.blocking and not rewrites) or (not attributes and not content):
            return None
        tag = self._tag(token)
        type_value = tag.get("type")
        if not is_javascript(type_value):
            return None
        src = tag.get("src")
        lazy = None  # a lazy loader's attribute naming a tracker's script (it sets `src` from it later)
        if src is None and self.blocking:
            for name in _LAZY_URLS:
                value = tag.get(name)
                if value and self.blocks(site_tagged(tag.get("data-consent-category"),
                                                     self.matcher.url("scripts", value)
                                                     or self._unknown_script(value))):
                    src, lazy = value, name
                    break
        if src is not None:
            match = self.matcher.url("scripts", src) or (self._unknown_script(src) if src else None)
            match = site_tagged(tag.get("data-consent-category"), match)
            if self.blocks(match):
                assert match is not None
                tag.set("type", "text/plain")
                if type_value is not None:
                    tag.set("data-cp-type", type_value)
                if lazy is not None:
                    tag.move(lazy)
                elif src:
                    tag.move("src")
                self.mark(tag, match, "script-src", src)
            elif match is not None and match.service in rewrites:
                name, value = rewrites[match.service]  # its hits go to our endpoint, not the vendor's host
                tag.set(name, self.origin + value if value.startswith("/") else value)
            else:
                return None
            return tag.text() + content.decode(self.codec, self.errors) + end.decode(self.codec, self.errors)
        if not self.blocking:
            return None
        code = content.decode(self.codec, self.errors)
        match = site_tagged(tag.get("data-consent-category"), self._inline(code))
        kind = "inline-script"
        if match is None and cut:  # too long to judge whole: on the safe side
            match, kind = _OVERSIZE, "oversize-script"
        if not self.blocks(match):
            return None
        assert match is not None
        attributes = [(k, v) for k, v in tag.attributes if k != "type"]
        attributes.append(("type", "text/plain"))
        if type_value is not None:
            attributes.append(("data-cp-type", type_value))
        attributes += [("data-cp-blocked", _escape(match.category)), ("data-cp-service", _escape(match.service)),
                       ("data-cp-stamp", self.stamp)]
        self.blocked.append(Blocked(kind, match.service, match.category, code))
        return (start_tag("script", [(k, v.replace('"', "&quot;")) for k, v in attributes]) + code
                + end.decode(self.codec, self.errors))

    def iframe(self, token: Token, texts: list[str]) -> None:
        tag = self._tag(token)
        match, src, moved = self._urls("iframes", tag.attributes, _IFRAME_URLS, ())
        srcdoc = tag.get("srcdoc")
        if match is None and srcdoc:
            match = self._srcdoc(srcdoc)
            if match is not None:
                moved.append("srcdoc")
                src = "srcdoc"
        if match is None and moved:
            first = tag.get(moved[0]) or ""
            code = _javascript_url(first)
            if code is not None:  # `src="javascript:…"`: the document it writes is judged as inline code
                match = self._inline(code)
                src = first
            elif self.parties is not None:
                held = self.third_party("iframe", _values(tag.attributes, _IFRAME_URLS, ()))
                if held is not None:
                    match, src = held
        match = site_tagged(tag.get("data-consent-category"), match)
        if not self.blocks(match):
            return self._unchanged(token, texts)
        assert match is not None
        if srcdoc is not None and "srcdoc" not in moved:
            moved.append("srcdoc")  # a site-tagged one, or one with both: srcdoc is what a browser shows
        if "src" not in moved:
            moved.append("src")
        if self.nested:
            for name in moved:
                tag.move(name)
            self.mark(tag, match, "iframe", src or "")
            texts.append(tag.text())
            return None
        self.embeds += 1
        embed_id = f"cp-e{self.embeds}"
        for name in moved:
            tag.move(name)
        tag.set("data-cp-embed-id", embed_id)
        tag.set("hidden", "")
        box = embed_box(tag.get("width"), tag.get("height"), tag.get("style"), tag.get("frameborder"))
        if not box:
            tag.set("data-cp-fit", "")  # no size of its own: it takes the placeholder's, 16:9 of its container
        self.mark(tag, match, "iframe", src or "")
        texts += [self.plan.injection.placeholder(self.page_lang, match.service, embed_id, box,
                                                  self.plan.nonces.inline_style_ok), tag.text()]
        return None

    def _urls(self, kind: Kind, attributes: list[tuple[str, str]], urls: tuple[str, ...],
              srcsets: tuple[str, ...]) -> tuple[Match | None, str, list[str]]:
        """The service of the first of an element's URL attributes (`urls`, then `srcsets`: each candidate)
        that belongs to one (only the first of duplicate attributes counts, as in the parser); the URL; and
        the names of those attributes it has (to move aside)."""
        seen: dict[str, str] = {}
        for key, value in attributes:
            if (key in urls or key in srcsets) and key not in seen:
                seen[key] = value
        matcher = self.matcher
        for name in urls:
            url = seen.get(name)
            if url:
                match = matcher.url(kind, url)
                if match is not None:
                    return match, url, list(seen)
        for name in srcsets:
            srcset = seen.get(name)
            if srcset:
                match = matcher.srcset(kind, srcset)
                if match is not None:
                    return match, srcset, list(seen)
        return None, "", list(seen)

    def img(self, token: Token, texts: list[str]) -> None:
        # The most frequent element (a page's product images): most are no tracker and untagged; those
        # become no-ops the scanner skips from then on.
        attributes = token[3]
        src = category = None
        others = False  # srcset or a lazy attribute: looked at one by one
        for key, value in attributes:
            if key == "src":
                if src is None:
                    src = value
            elif key == "data-consent-category":
                if category is None:
                    category = value
            elif key == "srcset" or key.startswith("data-") or key.endswith("href"):
                others = True
        answers = self.pixel_answers
        match = None
        detail = src or ""
        moved: list[str] = ["src", "srcset"]
        if src:
            match = answers[src] if src in answers else self.matcher.url("pixels", src)
        if match is None and others:
            match, detail, moved = self._urls("pixels", attributes,
                                              _SVG_IMAGE_URLS if token[2] == "image" else _IMG_URLS, _IMG_SRCSETS)
        if match is None and self.parties is not None:
            urls = _SVG_IMAGE_URLS if token[2] == "image" else _IMG_URLS
            held = self.third_party("img", [src] if src and not others else _values(attributes, urls, _IMG_SRCSETS))
            if held is not None:
                match, detail = held
                moved = _present(attributes, (*urls, *_IMG_SRCSETS))
        if category is not None:
            match = site_tagged(category, match)
        if not self.blocks(match):
            return self._unchanged(token, texts)
        assert match is not None
        tag = self._tag(token)
        if category is not None and match.service == "site-tagged":
            moved = [name for name in _TAGGED_URL_ATTRIBUTES if tag.get(name) is not None]
        for name in moved:
            tag.move(name)
        if "src" not in moved:
            tag.move("src")
        self.mark(tag, match, "img", detail or src or "")
        texts.append(tag.text())
        return None

    def embedded(self, token: Token, texts: list[str]) -> None:
        """`<object data>` and `<embed src>`: what they load is a document, like an iframe's."""
        self._loader(token, texts, "iframes", ("data", "src", *_LAZY_URLS), (), token[2])

    def media(self, token: Token, texts: list[str]) -> None:
        """`<video src poster>`, `<audio src>`, `<source src|srcset>`, `<track src>`, `<input type=image src>`:
        what they load is fetched like an image (a video ad's file from the ad server)."""
        self._loader(token, texts, "pixels", _MEDIA_URLS, _MEDIA_SRCSETS, "media")

    def _loader(self, token: Token, texts: list[str], kind: Kind, urls: tuple[str, ...],
                srcsets: tuple[str, ...], label: str) -> None:
        """An element that loads what its URL attributes name: blocked as the tracker it names, or held as an
        unknown third party; its URLs moved aside."""
        attributes = token[3]
        match, detail, moved = self._urls(kind, attributes, urls, srcsets)
        if match is None and self.parties is not None:
            held = self.third_party(token[2], _values(attributes, urls, srcsets))
            if held is not None:
                match, detail = held
        tag = self._tag(token)
        match = site_tagged(tag.get("data-consent-category"), match)
        if not self.blocks(match):
            return self._unchanged(token, texts)
        assert match is not None
        for name in moved or [name for name in _TAGGED_URL_ATTRIBUTES if tag.get(name) is not None]:
            tag.move(name)
        self.mark(tag, match, label, detail)
        texts.append(tag.text())
        return None

    def link(self, token: Token, texts: list[str]) -> None:
        tag = self._tag(token)
        rel = tag.get("rel")
        href = tag.get("href")
        imagesrcset = tag.get("imagesrcset")
        match = None
        if rel and (href or imagesrcset):
            rels = rel.lower().split()
            if not _FETCH_RELS.isdisjoint(rels):
                # a preload names the service of what it fetches: gtm.js is Tag Manager, not its host's first owner
                if href:
                    match = self.matcher.url("scripts", href) or self.matcher.host(href)
                if match is None and imagesrcset:  # <link rel=preload as=image imagesrcset>
                    match = self.matcher.srcset("pixels", imagesrcset)
            elif href and not (_HINT_RELS.isdisjoint(rels) and _STYLE_RELS.isdisjoint(rels)):
                match = self.matcher.host(href)  # a hint, or an ad vendor's CSS (htlbid.css, revcontent)
            if match is None and self.parties is not None and not _HELD_RELS.isdisjoint(rels):
                urls = _values(tag.attributes, ("href",), ("imagesrcset",))
                if not _HINT_RELS.isdisjoint(rels):  # "example.com" in a dns-prefetch is a host name
                    urls = [url if "/" in url or ":" in url else "//" + url for url in urls]
                held = self.third_party("link", urls)
                if held is not None:
                    match = held[0]
        match = site_tagged(tag.get("data-consent-category"), match)
        if not self.blocks(match):
            return self._unchanged(token, texts)
        assert match is not None
        tag.move("href")
        tag.move("imagesrcset")
        self.mark(tag, match, "link", href or "")
        texts.append(tag.text())
        return None

    def tagged(self, token: Token, texts: list[str]) -> None:
        """Any other element a site tagged with `data-consent-category`, or marked for the cookie declaration."""
        if not self.nested and any(key == "data-consent-declaration" for key, _ in token[3]):
            return self.declaration(token, texts)
        tag = self._tag(token)
        match = site_tagged(tag.get("data-consent-category"), None)
        if not self.blocks(match):
            return self._unchanged(token, texts)
        assert match is not None
        moved = [value for name in _TAGGED_URL_ATTRIBUTES if (value := tag.move(name)) is not None]
        self.mark(tag, match, "tagged", moved[0] if moved else tag.name)
        texts.append(tag.text())
        return None

    def declaration(self, token: Token, texts: list[str]) -> None:
        """`<div data-consent-declaration>`: the site's cookie declaration right after its start tag (never a
        no-op tag: the scanner must hand it over on every page)."""
        if not (self.blocking and _style_url(token[3]) and self.style(token, texts)):
            texts.append(token[1].decode(self.codec, self.errors))
        texts.append(self.plan.injection.declaration(self.page_lang))

    def html(self, token: Token, texts: list[str]) -> None:
        if self.page_lang is None:
            for key, value in token[3]:
                if key == "lang":
                    self.page_lang = value or None
                    break

    def body(self, token: Token, texts: list[str]) -> None:
        if not self.bundle_done:
            self.bundle_done = True
            texts += [self.first_scripts(), token[1].decode(self.codec, self.errors),
                      self.plan.injection.bundle(self.page_lang, self.plan.nonces, self.stamp, self.origin)]

    def base(self, token: Token, texts: list[str]) -> None:
        """A base URL would resolve our root-relative URLs against another origin: from here on they name
        the request's own (the first `<base href>` sets the document's base URL, even one we cannot parse;
        one in a `<template>` sets nothing)."""
        if not self.nested and not token[4] and any(key == "href" for key, _ in token[3]):
            self.origin = self.plan.origin

    def meta(self, token: Token, texts: list[str]) -> None:
        tag = self._tag(token)
        if (tag.get("http-equiv") or "").strip().lower() not in _CSP_EQUIV:
            return
        content = tag.get("content")
        if content:
            patched = self.plan.nonces.apply(content)
            if patched != content:
                tag.set("content", patched)
                texts.append(tag.text())

    def noscript(self, token: Token, texts: list[str]) -> None:
        """`<noscript>` content is raw text to a scripting browser, but markup without scripts: rewrite it too."""
        _, raw, _, _, _, body, end, _ = token
        assert body is not None
        if end is None:  # its text was longer than HOLD_LIMIT: the scanner dropped it
            self.blocked.append(Blocked("oversize-noscript", "unclassified", _OVERSIZE.category, ""))
            return None
        if not self.blocking or self.nested:
            return None
        content = body.decode(self.codec, self.errors)
        plan = self.plan
        if (_STAMP_MARK in content or len(content) > _NOSCRIPT_MEMO_CHARS
                or not _PLAIN_STAMP.fullmatch(plan.stamp) or self.inventory is not None):
            output, blocked = self._noscript_content(content, plan.stamp)
        else:
            key = (content, plan.allowed, plan.unblocked, plan.own_domain)
            memo = plan.noscript_memo
            found = memo.get(key)
            if found is None:
                if len(memo) >= _NOSCRIPT_MEMO_ENTRIES:
                    memo.clear()
                found = memo[key] = self._noscript_content(content, _STAMP_MARK)
            output, blocked = found
            if output is not None:
                output = output.replace(_STAMP_MARK, plan.stamp)
        self.blocked.extend(blocked)
        if output is not None:
            texts += [raw.decode(self.codec, self.errors), output, end.decode(self.codec, self.errors)]
        return None

    def _noscript_content(self, content: str, stamp: str) -> tuple[str | None, tuple[Blocked, ...]]:
        """`<noscript>` content rewritten as markup, with `stamp` on blocked elements; None when unchanged."""
        inner = _Page(self.plan, "utf-8", nested=True)
        inner.stamp = stamp
        scanner = inner.scanner()
        data = content.encode("utf-8", "surrogateescape")
        output = inner.handle(scanner.feed(data)) + inner.handle(scanner.finish())
        blocked = tuple(inner.blocked)
        return (output.decode("utf-8", "surrogateescape") if blocked else None), blocked


    def _srcdoc(self, srcdoc: str) -> Match | None:
        """The first blocked service in an iframe's `srcdoc` document (its scripts run: all of them judged,
        and its elements, iframes with their own srcdoc too), or None."""
        if self.depth >= _SRCDOC_DEPTH:  # nested deeper than any page needs: on the safe side
            return _OVERSIZE
        inner = _Page(self.plan, "utf-8", nested=True)
        inner.handlers = _SRCDOC_HANDLERS
        inner.judge_scripts = True
        inner.depth = self.depth + 1
        scanner = inner.scanner()
        data = html.unescape(srcdoc).encode("utf-8", "surrogateescape")
        inner.handle(scanner.feed(data))
        inner.handle(scanner.finish())
        for blocked in inner.blocked:
            return Match(blocked.service, blocked.category)
        return None


def _style_url(attributes: list[tuple[str, str]]) -> bool:
    """Whether the element's (first) style attribute has a `url(`."""
    for key, value in attributes:
        if key == "style":
            return "url(" in value.lower()
    return False


def _javascript_url(raw: str) -> str | None:
    """The code of a `javascript:` URL (a raw attribute value) as a browser runs it (percent-decoded), or None."""
    url = html.unescape(raw) if "&" in raw else raw
    url = url.strip(_URL_EDGES)
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.replace("\t", "").replace("\n", "").replace("\r", "")
    if url[:11].lower() != "javascript:":
        return None
    return unquote(url[11:])


def _values(attributes: list[tuple[str, str]], urls: tuple[str, ...], srcsets: tuple[str, ...]) -> list[str]:
    """The URLs of an element's URL attributes (the first of duplicates) and each candidate of its srcsets."""
    seen: dict[str, str] = {}
    for key, value in attributes:
        if (key in urls or key in srcsets) and key not in seen:
            seen[key] = value
    found = []
    for key, value in seen.items():
        if key in srcsets:
            found += srcset_urls(html.unescape(value) if "&" in value else value)
        elif value:
            found.append(value)
    return found


def _present(attributes: list[tuple[str, str]], names: tuple[str, ...]) -> list[str]:
    """Which of `names` the element has, in their order (the attributes to move aside)."""
    have = {key for key, _ in attributes}
    return [name for name in names if name in have]


#: the handler of each element the scanner reports, by name (any other: a site-tagged element)
_Handler = Callable[[_Page, Token, list[str]], None]
_HANDLERS: dict[str, _Handler] = {"img": _Page.img, "image": _Page.img, "iframe": _Page.iframe, "link": _Page.link,
                                  "meta": _Page.meta, "html": _Page.html, "body": _Page.body,
                                  "base": _Page.base,
                                  "object": _Page.embedded, "embed": _Page.embedded, "video": _Page.media,
                                  "audio": _Page.media, "source": _Page.media, "track": _Page.media,
                                  "input": _Page.media}
#: the elements `_Page.memoised` keeps the outcome of: what they become depends on their tag alone
_MEMO_ELEMENTS = frozenset({"img", "image", "link", "object", "embed", "video", "audio", "source", "track",
                            "input"})
#: inside <noscript> only what loads without scripts
_NESTED_HANDLERS: dict[str, _Handler] = {"img": _Page.img, "image": _Page.img, "iframe": _Page.iframe,
                                         "object": _Page.embedded, "embed": _Page.embedded, "video": _Page.media,
                                         "audio": _Page.media, "source": _Page.media, "track": _Page.media,
                                         "input": _Page.media}
#: in an iframe's srcdoc document: what loads there (its scripts are judged too)
_SRCDOC_HANDLERS: dict[str, _Handler] = {**_NESTED_HANDLERS, "link": _Page.link}
#: srcdoc documents in srcdoc documents: past this depth, blocked unread
_SRCDOC_DEPTH = 4


class PageRewriter:
    """Rewrites one HTML body. `feed` returns whatever output is ready; `finish` the rest."""

    def __init__(self, plan: PagePlan, mode: Mode | None) -> None:
        self._plan = plan
        self._mode = mode
        self._head = b""  # held until the charset is known (at most 1024 bytes)
        self._page: _Page | None = None
        self._scanner: Scanner | None = None
        if mode is not None:
            self._start(mode)

    @property
    def blocked(self) -> list[Blocked]:
        return self._page.blocked if self._page is not None else []

    @property
    def new_unknown_hosts(self) -> int:
        """Hosts no rule knows that this page added to the site's record (`PagePlan.parties`)."""
        return self._page.new_unknown if self._page is not None else 0

    def _start(self, mode: Mode) -> tuple[_Page, Scanner]:
        # "bytes": byte-transparent (see charset.py): each byte read as the code point of its value
        page = self._page = _Page(self._plan, "utf-8" if mode == "utf-8" else "latin-1")
        scanner = self._scanner = page.scanner()
        return page, scanner

    def feed(self, data: bytes) -> bytes:
        scanner = self._scanner
        if scanner is None:
            self._head += data
            if len(self._head) < PRESCAN_BYTES:
                return b""
            data, self._head = self._head, b""
            page, scanner = self._start(sniff(data) or "bytes")
        else:
            assert self._page is not None
            page = self._page
        return page.handle(scanner.feed(data))

    def finish(self) -> bytes:
        return self.whole(b"")

    def whole(self, data: bytes) -> bytes:
        """The rest of the body (all of it, for a body that came at once) and its end, in one join."""
        scanner = self._scanner
        if scanner is None:
            data, self._head = self._head + data, b""
            page, scanner = self._start(sniff(data) or "bytes")
        else:
            assert self._page is not None
            page = self._page
        items = scanner.feed(data) if data else []
        items += scanner.finish()
        out = page.handle(items)
        end = page.end()  # after the items: a <body> among them takes the banner
        return out + end if end else out
