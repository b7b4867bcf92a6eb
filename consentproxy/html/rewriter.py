"""The streaming page rewriter: one per HTML response, fed chunk by chunk.

Built on lol-html (python-lolhtml), which tokenizes like a browser and copies
everything it is not asked about through unchanged, so the output does not
depend on where the chunks break. Our handlers only touch `<script>`,
`<iframe>`, `<img>`, `<link>`, `<noscript>`, `<html>`, `<body>`, CSP `<meta>`
and elements a site tagged with `data-consent-category`.

An inline script can only be judged by its code, which lol-html hands over
after the start tag has been written. So inline scripts are taken out whole
(`remove_and_keep_content`), their text is held back, and the whole element is
written again from its last text chunk: unchanged, or blocked. A script with
no text at all gets no text callback; it is written back at the next event we
see (an empty inline script does nothing, so only its position can move).
When every category is granted nothing is held back.

A rewriter is built per response (the bindings cannot reuse one), so its set-up
is kept small: the rare elements share one selector list (`_Few`). What repeats
across a site's responses, the tracker matcher's answers and the rewritten
`<noscript>` snippets, is kept per site; a response adds only its own stamp.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import lolhtml

from consentproxy.config.model import CATEGORY_IDS
from consentproxy.html.charset import PRESCAN_BYTES, Mode, sniff
from consentproxy.html.csp import NoncePlan
from consentproxy.html.trackers import Match, TrackerMatcher

HTML = lolhtml.ContentType.HTML
_HTML_NS = "http://www.w3.org/1999/xhtml"
_JS_TYPES = frozenset({
    "", "module", "text/javascript", "application/javascript", "application/x-javascript", "text/ecmascript",
    "application/ecmascript", "text/jscript", "text/livescript", "text/x-javascript", "text/x-ecmascript",
    "text/javascript1.0", "text/javascript1.1", "text/javascript1.2", "text/javascript1.3",
    "text/javascript1.4", "text/javascript1.5",
})
_ALL_CATEGORIES = frozenset(CATEGORY_IDS)
_HINT_RELS = frozenset({"preconnect", "dns-prefetch"})
_FETCH_RELS = frozenset({"preload", "prefetch", "modulepreload"})
#: URL attributes moved aside on an element a site tagged itself
_TAGGED_URL_ATTRIBUTES = ("src", "href", "srcset", "data", "poster")
_OWN_HANDLERS = frozenset({"script", "iframe", "img", "link"})
#: other elements that load something and a site may tag; a bare `[data-consent-category]` selector would make
#: lol-html parse the attributes of every element in the page (measured: +200 µs on a 60 KB page)
_TAGGABLE = "video, audio, source, track, embed, object, input[type=image]"
_TAGGABLE_NAMES = ("video", "audio", "source", "track", "embed", "object", "input")
#: elements that come a few times a page at most, under one selector list and one handler (see _Few)
_FEW = "template script, body, html, meta[http-equiv]"
_FEW_BLOCKING = f"{_FEW}, iframe, link, {_TAGGABLE}"


class Blocked(NamedTuple):
    """One element the rewriter neutralised (for `preview`, metrics and tests).

    A named tuple: made for every blocked element, at half the cost of a frozen dataclass.
    """

    kind: str  # script-src, inline-script, iframe, img, link, noscript, tagged
    service: str
    category: str
    detail: str


class Injection:
    """What the page gets from us; supplied by the banner layer so the rewriter stays generic."""

    def consent_mode(self, nonces: NoncePlan) -> str:
        return ""

    def bundle(self, page_lang: str | None, nonces: NoncePlan, stamp: str) -> str:
        return ""

    def placeholder(self, page_lang: str | None, service: str, embed_id: str) -> str:
        return ""


#: (content, allowed, unblocked) → (content rewritten with `_STAMP_MARK` for the stamp, or None if unchanged;
#: what was blocked)
NoscriptMemo = dict[tuple[str, frozenset[str], frozenset[str]], tuple[str | None, tuple[Blocked, ...]]]
_STAMP_MARK = "cp-stamp-9d1e4b7a"
_PLAIN_STAMP = re.compile(r"[A-Za-z0-9_-]+")  # as secrets.token_urlsafe makes them
_NOSCRIPT_MEMO_ENTRIES = 256
_NOSCRIPT_MEMO_CHARS = 4096


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
    #: comes on every page and would cost a second lol-html rewriter each time
    noscript_memo: NoscriptMemo = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """False when every category is granted: nothing to block."""
        return not self.allowed >= _ALL_CATEGORIES


def is_javascript(type_value: str | None) -> bool:
    return type_value is None or type_value.strip().lower() in _JS_TYPES


def site_tagged(category: str | None, found: Match | None) -> Match | None:
    """A site's own `data-consent-category` decides the category; the catalogue still names the service."""
    if category is None:
        return found
    return Match(found.service if found else "site-tagged", category.strip().lower() or "necessary")


def _escape(value: str) -> str:
    """For attribute values we set: lol-html escapes the quote, we escape the ampersand."""
    return value.replace("&", "&amp;")


def start_tag(name: str, attributes: list[tuple[str, str]]) -> str:
    """A start tag from lol-html's raw attribute values (character references stay as written)."""
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


def _sink(chunks: list[bytes]) -> Callable[[Any], None]:
    """lol-html's output callback: it hands over `bytes`, which the stub types more widely."""
    return chunks.append


class _Handler:
    """Base of the element handlers: the callbacks a handler lacks are None, not missing.

    The bindings look each one up when the rewriter is built; a missing attribute raises (and formats)
    an AttributeError there, two or three per handler and response.
    """

    comments: Callable[[lolhtml.Comment], None] | None = None
    text: Callable[[lolhtml.TextChunk], None] | None = None


class _State:
    """The per-response state shared by the element handlers."""

    def __init__(self, plan: PagePlan) -> None:
        self.plan = plan
        # the plan's fields the handlers read on every element, as attributes of their own
        self.allowed = plan.allowed
        self.unblocked = plan.unblocked
        self.blocking = plan.blocking
        self.matcher = plan.matcher
        self.rewrites = plan.script_attributes
        self.stamp = plan.stamp
        self.blocked: list[Blocked] = []
        self.page_lang: str | None = None
        self.consent_mode_done = False
        self.bundle_done = False
        self.pending: str | None = None  # start tag of the held-back inline script
        self.pending_attributes: list[tuple[str, str]] = []
        self.pending_category: str | None = None  # its data-consent-category
        self.pending_text: list[str] = []
        self.embeds = 0
        self.in_template = False  # set by the `template script` handler, which runs first

    def flush_empty_script(self, before: Callable[[str, lolhtml.ContentType], None]) -> None:
        if self.pending is not None:
            before(self.pending + "</script>", HTML)
            self.pending = None

    def judge(self, element: lolhtml.Element, found: Match | None) -> Match | None:
        """A site's own `data-consent-category` decides the category; the catalogue still names the service."""
        return site_tagged(element.get_attribute("data-consent-category"), found)

    def blocks(self, match: Match | None) -> bool:
        return match is not None and match.category not in self.allowed and match.service not in self.unblocked

    def mark(self, element: lolhtml.Element, match: Match, kind: str, detail: str) -> None:
        element.set_attribute("data-cp-blocked", _escape(match.category))
        element.set_attribute("data-cp-service", _escape(match.service))
        element.set_attribute("data-cp-stamp", self.stamp)
        self.blocked.append(Blocked(kind, match.service, match.category, detail))


def _move(element: lolhtml.Element, name: str) -> str | None:
    """Move an attribute aside; a repeated one goes too, or it would take the first one's place."""
    value = element.get_attribute(name)
    if value is not None:
        element.remove_attribute(name)  # the first one: it is there
        while element.has_attribute(name):
            element.remove_attribute(name)
        element.set_attribute("data-cp-" + name, value)
    return value


class _Scripts(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        s = self.s
        if e.namespace_uri != _HTML_NS:
            return
        if s.pending is not None:
            s.flush_empty_script(e.before)
        if s.in_template:
            s.in_template = False  # inert until cloned: no place for the Consent Mode default
        elif not s.consent_mode_done:
            s.consent_mode_done = True
            code = s.plan.injection.consent_mode(s.plan.nonces)
            if code:
                e.before(code, HTML)
        rewrites = s.rewrites
        if not s.blocking and not rewrites:
            return
        type_value = e.get_attribute("type")
        if not is_javascript(type_value):
            return
        src = e.get_attribute("src")
        if src is not None:
            match = s.judge(e, s.matcher.url("scripts", src))
            if s.blocks(match):
                assert match is not None
                self._neutralise(e, match, type_value, "script-src", src)
            elif match is not None and match.service in rewrites:
                e.set_attribute(*rewrites[match.service])  # its hits go to our endpoint, not the vendor's host
            return
        if not s.blocking:
            return
        # The start tag is written again from all its attributes; the category is among them (lol-html
        # lower-cases names, as get_attribute compares them), one attribute scan fewer.
        attributes = e.attributes
        s.pending_attributes = attributes
        s.pending_category = None
        if attributes:
            for name, value in attributes:
                if name == "data-consent-category":
                    s.pending_category = value
                    break
            s.pending = start_tag("script", attributes)
        else:
            s.pending = "<script>"
        e.remove_and_keep_content()

    def _neutralise(self, e: lolhtml.Element, match: Match, type_value: str | None, kind: str, src: str) -> None:
        e.set_attribute("type", "text/plain")
        if type_value is not None:
            e.set_attribute("data-cp-type", type_value)
        if src:
            _move(e, "src")
        self.s.mark(e, match, kind, src)

    def text(self, t: lolhtml.TextChunk) -> None:
        s = self.s
        if s.pending is None:
            return
        if not t.last_in_text_node:
            s.pending_text.append(t.text)
            t.remove()
            return
        if s.pending_text:
            s.pending_text.append(t.text)
            code = "".join(s.pending_text)
            s.pending_text = []
        else:
            code = t.text
        start = s.pending
        s.pending = None
        match = site_tagged(s.pending_category, s.matcher.inline(code))
        if s.blocks(match):
            assert match is not None
            attributes = [(k, v) for k, v in s.pending_attributes if k.lower() != "type"]
            original_type = next((v for k, v in s.pending_attributes if k.lower() == "type"), None)
            attributes.append(("type", "text/plain"))
            if original_type is not None:
                attributes.append(("data-cp-type", original_type))
            attributes += [("data-cp-blocked", _escape(match.category)), ("data-cp-service", _escape(match.service)),
                           ("data-cp-stamp", s.stamp)]
            start = start_tag("script", [(k, v.replace('"', "&quot;")) for k, v in attributes])
            s.blocked.append(Blocked("inline-script", match.service, match.category, code))
        t.replace(start + code + "</script>", HTML)


class _TemplateScripts(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        self.s.in_template = True


class _Iframes(_Handler):
    def __init__(self, state: _State, placeholder: bool = True) -> None:
        self.s = state
        #: inside `<noscript>` a placeholder would only show with scripts off: there the URL just moves aside
        self.placeholder = placeholder

    def element(self, e: lolhtml.Element) -> None:
        s = self.s
        if s.pending is not None:
            s.flush_empty_script(e.before)
        src = e.get_attribute("src")
        match = s.judge(e, s.matcher.url("iframes", src) if src else None)
        if not s.blocks(match):
            return
        assert match is not None
        if not self.placeholder:
            _move(e, "src")
            s.mark(e, match, "iframe", src or "")
            return
        s.embeds += 1
        embed_id = f"cp-e{s.embeds}"
        _move(e, "src")
        e.set_attribute("data-cp-embed-id", embed_id)
        e.set_attribute("hidden", "")
        s.mark(e, match, "iframe", src or "")
        e.before(s.plan.injection.placeholder(s.page_lang, match.service, embed_id), HTML)


class _Images(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state
        self.answers = state.matcher.answers("pixels")

    def element(self, e: lolhtml.Element) -> None:
        # The most frequent callback (every <img> of the page): most images are no tracker and untagged,
        # so that case returns after three attribute reads and two dictionary lookups.
        s = self.s
        if s.pending is not None:
            s.flush_empty_script(e.before)
        answers = self.answers
        match = None
        src = e.get_attribute("src")
        if src:
            try:
                match = answers[src]
            except KeyError:
                match = s.matcher.url("pixels", src)
        if match is None:
            srcset = e.get_attribute("srcset")
            if srcset:
                try:
                    match = answers[srcset]
                except KeyError:
                    match = s.matcher.url("pixels", srcset)
        category = e.get_attribute("data-consent-category")
        if category is not None:
            match = site_tagged(category, match)
        elif match is None:
            return
        if s.blocks(match):
            assert match is not None
            _move(e, "src")
            _move(e, "srcset")
            s.mark(e, match, "img", src or "")


class _Links(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        s = self.s
        if s.pending is not None:
            s.flush_empty_script(e.before)
        rel = e.get_attribute("rel")
        href = e.get_attribute("href")
        match = None
        if rel and href:
            rels = rel.lower().split()
            if not _FETCH_RELS.isdisjoint(rels):
                # a preload names the service of what it fetches: gtm.js is Tag Manager, not its host's first owner
                match = s.matcher.url("scripts", href) or s.matcher.host(href)
            elif not _HINT_RELS.isdisjoint(rels):
                match = s.matcher.host(href)
        match = s.judge(e, match)
        if s.blocks(match):
            assert match is not None
            _move(e, "href")
            s.mark(e, match, "link", href or "")


class _Tagged(_Handler):
    """Any other element a site tagged with `data-consent-category`."""

    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        s = self.s
        if e.tag_name.lower() in _OWN_HANDLERS:
            return
        match = s.judge(e, None)
        if s.blocks(match):
            assert match is not None
            moved = [value for name in _TAGGED_URL_ATTRIBUTES if (value := _move(e, name)) is not None]
            s.mark(e, match, "tagged", moved[0] if moved else e.tag_name)


class _Noscript(_Handler):
    """`<noscript>` content is raw text to a scripting browser, but markup without scripts: rewrite it too."""

    def __init__(self, state: _State) -> None:
        self.s = state
        self.parts: list[str] = []

    def element(self, e: lolhtml.Element) -> None:
        self.s.flush_empty_script(e.before)

    def text(self, t: lolhtml.TextChunk) -> None:
        self.parts.append(t.text)
        if not t.last_in_text_node:
            t.remove()
            return
        content = "".join(self.parts)
        self.parts = []
        plan = self.s.plan
        if (_STAMP_MARK in content or len(content) > _NOSCRIPT_MEMO_CHARS
                or not _PLAIN_STAMP.fullmatch(plan.stamp)):  # lol-html would escape what replace() would not
            output, blocked = _rewrite_noscript(content, plan, plan.stamp)
        else:
            key = (content, plan.allowed, plan.unblocked)
            memo = plan.noscript_memo
            found = memo.get(key)
            if found is None:
                if len(memo) >= _NOSCRIPT_MEMO_ENTRIES:
                    memo.clear()
                found = memo[key] = _rewrite_noscript(content, plan, _STAMP_MARK)
            output, blocked = found
            if output is not None:
                output = output.replace(_STAMP_MARK, plan.stamp)
        self.s.blocked.extend(blocked)
        t.replace(content if output is None else output, HTML)


def _rewrite_noscript(content: str, plan: PagePlan, stamp: str) -> tuple[str | None, tuple[Blocked, ...]]:
    """`<noscript>` content rewritten as markup, with `stamp` on blocked elements; None when unchanged."""
    inner = _State(plan)
    inner.stamp = stamp
    inner.consent_mode_done = inner.bundle_done = True
    output: list[bytes] = []
    rewriter = lolhtml.HTMLRewriter(_sink(output))
    rewriter.on("img", _Images(inner))
    rewriter.on("iframe", _Iframes(inner, placeholder=False))
    rewriter.on(_TAGGABLE, _Tagged(inner))
    rewriter.write(content.encode("utf-8"))
    rewriter.end()
    blocked = tuple(Blocked("noscript-" + b.kind, b.service, b.category, b.detail) for b in inner.blocked)
    return (b"".join(output).decode("utf-8") if blocked else None), blocked


class _Document:
    #: see _Handler
    doctype: Callable[[lolhtml.Doctype], None] | None = None
    comments: Callable[[lolhtml.Comment], None] | None = None
    text: Callable[[lolhtml.TextChunk], None] | None = None

    def __init__(self, state: _State) -> None:
        self.s = state

    def end(self, end: lolhtml.DocumentEnd) -> None:
        s = self.s
        s.flush_empty_script(end.append)
        if not s.bundle_done:
            s.bundle_done = True  # a document without <body>: the parser puts this in the implied body
            end.append(s.plan.injection.bundle(s.page_lang, s.plan.nonces, s.plan.stamp), HTML)


class _Root(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        lang = e.get_attribute("lang")
        if lang and self.s.page_lang is None:
            self.s.page_lang = lang


class _Body(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        s = self.s
        s.flush_empty_script(e.before)
        if not s.bundle_done:
            s.bundle_done = True
            e.prepend(s.plan.injection.bundle(s.page_lang, s.plan.nonces, s.plan.stamp), HTML)


class _MetaPolicy(_Handler):
    def __init__(self, state: _State) -> None:
        self.s = state

    def element(self, e: lolhtml.Element) -> None:
        equiv = (e.get_attribute("http-equiv") or "").strip().lower()
        if equiv not in ("content-security-policy", "content-security-policy-report-only"):
            return
        content = e.get_attribute("content")
        if content:
            patched = self.s.plan.nonces.apply(content)
            if patched != content:
                e.set_attribute("content", patched)


class _Few(_Handler):
    """The handlers of elements that come a few times a page at most, told apart by tag name.

    Each `on()` costs lol-html a selector parse and a handler set-up per response; one list for these
    saves ~40k instructions a response (measured), far more than reading the tag name of the few
    elements it matches. Text handlers cannot join: they would get the text of every matched element.
    """

    def __init__(self, state: _State, blocking: bool) -> None:
        self.by_tag: dict[str, Callable[[lolhtml.Element], None]] = {
            "script": _TemplateScripts(state).element,  # only `template script` reaches this handler
            "body": _Body(state).element,
            "html": _Root(state).element,
            "meta": _MetaPolicy(state).element,
        }
        if blocking:
            self.by_tag["iframe"] = _Iframes(state).element
            self.by_tag["link"] = _Links(state).element
            tagged = _Tagged(state).element
            for name in _TAGGABLE_NAMES:
                self.by_tag[name] = tagged

    def element(self, e: lolhtml.Element) -> None:
        handler = self.by_tag.get(e.tag_name)
        if handler is not None:
            handler(e)


class PageRewriter:
    """Rewrites one HTML body. `feed` returns whatever output is ready; `finish` the rest."""

    def __init__(self, plan: PagePlan, mode: Mode | None) -> None:
        self.state = _State(plan)
        self._mode = mode
        self._head = b""  # held until the charset is known (at most 1024 bytes)
        self._out: list[bytes] = []
        self._rewriter = lolhtml.HTMLRewriter(_sink(self._out))
        state = self.state
        blocking = state.blocking
        # Registration order is call order for an element several selectors match: `template script`
        # (in _Few) runs before `script`.
        self._rewriter.on(_FEW_BLOCKING if blocking else _FEW, _Few(state, blocking))
        self._rewriter.on("script", _Scripts(state))
        if blocking:
            self._rewriter.on("img", _Images(state))
            self._rewriter.on("noscript", _Noscript(state))
        self._rewriter.on_document(_Document(state))

    @property
    def blocked(self) -> list[Blocked]:
        return self.state.blocked

    def feed(self, data: bytes) -> bytes:
        if self._mode is None:
            self._head += data
            if len(self._head) < PRESCAN_BYTES:
                return b""
            data, self._head = self._head, b""
            self._mode = sniff(data) or "bytes"
        return self._write(data)

    def finish(self) -> bytes:
        if self._mode is None:
            data, self._head = self._head, b""
            self._mode = sniff(data) or "bytes"
            out = self._write(data)
        else:
            out = b""
        self._rewriter.end()
        return out + self._drain()

    def _write(self, data: bytes) -> bytes:
        if self._mode == "bytes":
            # Byte-transparent: each byte as the code point of its value (see charset.py).
            data = data.decode("latin-1").encode("utf-8")
        self._rewriter.write(data)
        return self._drain()

    def _drain(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        if self._mode == "bytes":
            return out.decode("utf-8").encode("latin-1")
        return out
