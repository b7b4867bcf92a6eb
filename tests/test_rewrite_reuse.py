"""What the rewriting path keeps from one response to the next must not leak into the next one.

The `<noscript>` memo, the rendered banner and the tracker matcher's answers are shared by a site's
responses; each response still gets its own stamp and visitor state, and its output is the one a
fresh rewriter would give. The body of a rewritten response ends with its last chunk once the
upstream body is complete, and is never held back while the upstream is still sending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from html_support import CORPUS, decision_for, markup

from consentproxy.banner.markup import PageInjection
from consentproxy.consent.decision import NO_DECISION
from consentproxy.html.csp import NoncePlan
from consentproxy.html.rewriter import NoscriptMemo, PagePlan, PageRewriter, StateMemos
from consentproxy.html.trackers import TrackerMatcher
from consentproxy.proxy.handler import _send_filtered
from consentproxy.proxy.pipeline import BodyFilter, FilterFailed

NECESSARY = frozenset({"necessary"})
PAGES = sorted(p for p in CORPUS.glob("*.html") if b"<noscript" in p.read_bytes())
MATCHER = TrackerMatcher(())


def _rewrite(data: bytes, stamp: str, memo: NoscriptMemo, allowed: frozenset[str] = NECESSARY,
             states: StateMemos | None = None) -> bytes:
    decision = decision_for(allowed)
    plan = PagePlan(MATCHER, decision.allowed, PageInjection(markup(), decision, None), NoncePlan(), stamp=stamp,
                    noscript_memo=memo, state_memos={} if states is None else states)
    rewriter = PageRewriter(plan, None)
    return rewriter.feed(data) + rewriter.finish()


def test_the_corpus_has_noscript_pages() -> None:
    assert len(PAGES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_a_shared_noscript_memo_gives_what_a_fresh_rewriter_gives(page) -> None:
    data = page.read_bytes()
    memo: NoscriptMemo = {}
    for allowed in (NECESSARY, frozenset({"necessary", "statistics"})):
        for stamp in ("first-stamp", "second-stamp", "third-stamp"):
            assert _rewrite(data, stamp, memo, allowed) == _rewrite(data, stamp, {}, allowed)


def test_the_memo_is_used_and_each_response_keeps_its_stamp() -> None:
    data = b"<body><noscript><img src='https://www.facebook.com/tr?id=1&amp;ev=PageView'></noscript></body>"
    memo: NoscriptMemo = {}
    first = _rewrite(data, "one", memo).decode()
    assert len(memo) == 1
    second = _rewrite(data, "two", memo).decode()
    assert len(memo) == 1
    assert 'data-cp-stamp="one"' in first and 'data-cp-stamp="two"' in second
    assert first.replace('"one"', '"two"') == second
    odd = 'a"b&c'  # not one secrets.token_urlsafe would make: the memo stays out of it
    assert _rewrite(data, odd, memo) == _rewrite(data, odd, {})


ALL_PAGES = sorted(CORPUS.glob("*.html"))


@pytest.mark.parametrize("page", ALL_PAGES[::4], ids=lambda p: p.stem)
def test_shared_script_and_unchanged_tag_memos_give_what_a_fresh_rewriter_gives(page) -> None:
    data = page.read_bytes()
    states: StateMemos = {}
    for allowed in (NECESSARY, frozenset({"necessary", "statistics"}), NECESSARY):
        for stamp in ("first-stamp", "second-stamp"):
            assert _rewrite(data, stamp, {}, allowed, states) == _rewrite(data, stamp, {}, allowed)
    memo = states[(NECESSARY, frozenset())]
    assert memo.scripts or memo.noop or b"<script" not in data


def test_a_script_holding_the_memo_marker_is_judged_afresh() -> None:
    data = b"<script>fbq('init', '1'); var m = 'cp-stamp-9d1e4b7a';</script>"
    states: StateMemos = {}
    for stamp in ("one", "two"):
        out = _rewrite(data, stamp, {}, NECESSARY, states).decode()
        assert f'data-cp-stamp="{stamp}"' in out and "var m = 'cp-stamp-9d1e4b7a'" in out
    assert not states[(NECESSARY, frozenset())].scripts


def test_noscript_content_that_holds_the_memo_marker_is_left_as_it_is() -> None:
    data = (b"<body><noscript><p>cp-stamp-9d1e4b7a</p>"
            b"<img src='https://www.facebook.com/tr?id=1&amp;ev=PageView'></noscript></body>")
    memo: NoscriptMemo = {}
    for stamp in ("one", "two"):
        out = _rewrite(data, stamp, memo).decode()
        assert "<p>cp-stamp-9d1e4b7a</p>" in out
        assert f'data-cp-stamp="{stamp}"' in out and 'data-cp-blocked="marketing"' in out
    assert not memo


def test_each_response_gets_its_own_stamp_and_principal_in_the_banner() -> None:
    site_markup = markup()
    nonces = NoncePlan()
    first = site_markup.bundle("nl", NO_DECISION, nonces, "stamp-one")
    second = site_markup.bundle("nl", NO_DECISION, nonces, "stamp-two")
    assert first.replace("stamp-one", "stamp-two") == second
    assert 'data-cp-stamp="stamp-one"' in first and '"principal":null' in first
    decided = site_markup.bundle("nl", decision_for(frozenset({"necessary", "statistics"})), nonces, "stamp-one")
    assert '"principal":"corpus-principal"' in decided and 'data-cp-decided="1"' in decided
    assert '"principal":null' in site_markup.bundle("nl", NO_DECISION, nonces, "stamp-one")
    with_nonce = site_markup.bundle("nl", NO_DECISION, NoncePlan(script_nonce="n1", style_nonce="n2"), "stamp-one")
    assert 'nonce="n1"' in with_nonce and 'nonce="n2"' in with_nonce
    assert "nonce=" not in site_markup.bundle("nl", NO_DECISION, nonces, "stamp-one")


def test_the_matchers_cached_answers_are_its_answers() -> None:
    matcher = TrackerMatcher(())
    code = "gtag('config', 'G-1'); fbq('init', '1');"
    for _ in range(2):
        assert matcher.inline(code) == TrackerMatcher(()).inline(code)
        assert matcher.host("//www.google-analytics.com/x") == TrackerMatcher(()).host("//www.google-analytics.com/x")
        assert matcher.url("pixels", "https://www.facebook.com/tr?id=1") is not None
        assert matcher.answers("pixels")["https://www.facebook.com/tr?id=1"] is not None
    for number in range(5000):  # past the cache limit: it starts again, answers stay right
        assert matcher.url("pixels", f"https://cdn.example/{number}.png") is None
    assert matcher.url("pixels", "https://www.facebook.com/tr?id=1") is not None


class _Upstream:
    """aiohttp's StreamReader as `_send_filtered` reads it: readany() returns what is buffered, and the end
    of the body may be fed while bytes are still buffered (reading resumes the transport, which can refill
    the buffer at once). Each chunk comes with whether the end has been fed once it is read."""

    def __init__(self, chunks: list[tuple[bytes, bool]]) -> None:
        self.chunks = list(chunks)
        self.fed = not chunks

    async def readany(self) -> bytes:
        if not self.chunks:  # waits until the end is fed
            self.fed = True
            return b""
        chunk, fed = self.chunks.pop(0)
        self.fed = self.fed or fed
        return chunk

    def is_eof(self) -> bool:
        """The end was fed (bytes may still be buffered)."""
        return self.fed

    def at_eof(self) -> bool:
        """The end was fed and everything was read: the body is complete."""
        return self.fed and not self.chunks

    @property
    def eof(self) -> bool:
        return self.at_eof()


class _Upper(BodyFilter):
    """Upper-cases what it is fed, holds back what `hold` says, and ends with `tail`."""

    def __init__(self, tail: bytes = b"", hold: bytes = b"") -> None:
        self.tail = tail
        self.hold = hold
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        if data == self.hold:
            self.held += data.upper()
            return b""
        return data.upper()

    def finish(self) -> bytes:
        return self.held + self.tail


def _run_filtered(chunks: list[tuple[bytes, bool]], body_filter: BodyFilter) -> list[tuple[bytes, bool, bool]]:
    """Messages sent for upstream `chunks`, each with whether the upstream was complete when it was sent."""
    upstream = _Upstream(chunks)
    sent: list[tuple[bytes, bool, bool]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["body"], message["more_body"], upstream.eof))

    total = asyncio.run(_send_filtered([body_filter], upstream, send))  # type: ignore[list-item,arg-type]
    assert total == sum(len(body) for body, _, _ in sent)
    return sent


def test_a_streaming_upstream_is_never_held_back_and_the_last_chunk_ends_the_body() -> None:
    sent = _run_filtered([(b"head", False), (b"middle", False), (b"tail", True)], _Upper(tail=b"!"))
    assert sent == [(b"HEAD", True, False), (b"MIDDLE", True, False), (b"TAIL!", False, True)]


def test_a_filter_that_holds_output_sends_no_empty_messages() -> None:
    sent = _run_filtered([(b"a", False), (b"<script", False), (b"b", False)], _Upper(hold=b"<script"))
    assert sent == [(b"A", True, False), (b"B", True, False), (b"<SCRIPT", False, True)]


def test_the_body_ends_where_the_upstream_body_ends_not_where_its_end_was_fed() -> None:
    # the end was fed while "middle" and "tail" were still buffered: stopping there cut the page, with a
    # clean last chunk (issue 15)
    sent = _run_filtered([(b"head", True), (b"middle", False), (b"tail", False)], _Upper(tail=b"!"))
    assert sent == [(b"HEAD", True, False), (b"MIDDLE", True, False), (b"TAIL!", False, True)]


class _FailsAtTheEnd(_Upper):
    """A decoder that learns only at the end that its stream was cut."""

    def finish(self) -> bytes:
        raise FilterFailed("the stream ends early")


def test_a_body_found_cut_at_its_end_still_gets_what_was_rewritten_before_the_cut() -> None:
    upstream = _Upstream([(b"head", False), (b"tail", True)])
    sent: list[tuple[bytes, bool]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["body"], message["more_body"]))

    with pytest.raises(FilterFailed):
        asyncio.run(_send_filtered([_FailsAtTheEnd()], upstream, send))  # type: ignore[arg-type]
    assert sent == [(b"HEAD", True), (b"TAIL", True)]  # never a last message: the connection is cut


def test_a_body_that_came_at_once_is_one_message() -> None:
    assert _run_filtered([(b"all of it", True)], _Upper()) == [(b"ALL OF IT", False, True)]
    assert _run_filtered([], _Upper()) == [(b"", False, True)]
    assert _run_filtered([], _Upper(tail=b"end")) == [(b"end", False, True)]
