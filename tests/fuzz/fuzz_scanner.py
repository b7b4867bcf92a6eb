"""Coverage-guided fuzzing of the HTML scanner (`consentproxy/html/_scanner.c`) and the rewriter on top of it.

Run by `make fuzz-scanner`, which builds the scanner with AddressSanitizer, UndefinedBehaviorSanitizer and
libFuzzer's coverage into .cache/fuzz-scanner/build/ and points CONSENTPROXY_FUZZ_SCANNER at it; without that
variable the in-tree build is used (how a finding is replayed with the normal build: `--replay FILE...`).

One input is a page and, taken from its end (atheris' FuzzedDataProvider reads integers from the end), the
options, the cut points of the streaming runs and the scanner's bound (`hold_limit`: often small, 64 to 1087
bytes, to reach what it does past it). For each input:
- the scanner alone, all at once and in the chosen chunks (bytes, or bytearray/memoryview slices): both give
  the same bytes, the same tokens and the same count of elements past the bound; with none past it every
  byte comes out as it came (the byte items and each token's raw start tag, text and raw end tag, joined,
  are the input); the streamed run's work (`examined`, `moved`) stays linear; again with some of the
  reported start tags in a `noop` TagSet: those pass through as bytes, the rest is reported as before;
- the rewriter (with the same bound) and a plan that blocks and injects nothing: the output is the input,
  all at once and streamed (fed chunk by chunk, then `finish()`, or its last chunk given to `whole()`), when
  nothing is past the bound;
- the rewriter with a real plan (the catalogue's trackers, the banner, CSP nonces): streaming gives the same
  bytes and the same blocked elements as the whole body at once, with the site's memos fresh or warmed, and
  every byte the scanner passed on (all but the reported elements) is in the output, in order.
A crash, a sanitizer report or a failed assertion stops the run and leaves the input in the artifact folder.

`--make-seeds OUT` writes the seed corpus: the pages of tests/data/html-corpus and tests/data/real-pages cut
into windows of at most `--window` bytes, each followed by a trailer of options and cut points.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import random
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _load_scanner() -> None:
    """The sanitized build, when given, as `consentproxy.html._scanner` before anything imports the in-tree one."""
    path = os.environ.get("CONSENTPROXY_FUZZ_SCANNER")
    if not path:
        return
    spec = importlib.util.spec_from_file_location("consentproxy.html._scanner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["consentproxy.html._scanner"] = module
    spec.loader.exec_module(module)


_load_scanner()

import atheris  # noqa: E402  (after the scanner: the sanitized build must come first)

# CONSENTPROXY_FUZZ_PYTHON_COVERAGE=1: the rewriter's Python branches guide the fuzzer too (~6 times slower)
if os.environ.get("CONSENTPROXY_FUZZ_PYTHON_COVERAGE") == "1":
    with atheris.instrument_imports(include=["consentproxy.html.rewriter", "consentproxy.html.charset"]):
        from consentproxy.html import rewriter as rewriter_module
else:
    from consentproxy.html import rewriter as rewriter_module
from html_support import decision_for, markup  # noqa: E402

from consentproxy.banner.markup import PageInjection  # noqa: E402
from consentproxy.config.model import CATEGORY_IDS  # noqa: E402
from consentproxy.html._scanner import Scanner, TagSet  # noqa: E402
from consentproxy.html.csp import NoncePlan  # noqa: E402
from consentproxy.html.rewriter import Injection, PagePlan, PageRewriter  # noqa: E402
from consentproxy.html.trackers import TrackerMatcher  # noqa: E402

assert rewriter_module.Scanner is Scanner
MAX_CUTS = 64
TRICKLE = 256  # at most this many bytes fed one at a time
_MODES: tuple[Any, ...] = (None, None, "utf-8", "bytes")
_CONSENTS = (frozenset({"necessary"}), frozenset({"necessary", "statistics"}), frozenset(CATEGORY_IDS))
_MATCHER = TrackerMatcher(())
_ROUTED = {"Google Analytics": ("data-cp-routed", "/_consent/collect")}


class _Everything(frozenset[str]):
    """Consent to every category, a page's own unknown ones too: a plan that blocks nothing."""

    def __contains__(self, item: object) -> bool:
        return True


class _KeepPolicy(NoncePlan):
    """A nonce plan that never patches a `<meta>` policy."""

    def apply(self, policy: str) -> str:
        return policy


_NOTHING = _Everything(CATEGORY_IDS)
_HOLD_LIMIT = rewriter_module.HOLD_LIMIT
#: examined and moved at most WORK bytes per byte fed, however it came (tests/test_scanner_bounds.py), + SLACK
WORK, SLACK = 4, 64


class Case:
    """What one fuzzer input asks for."""

    def __init__(self, data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        self.options = fdp.ConsumeIntInRange(0, 255)
        cuts = [fdp.ConsumeIntInRange(0, 65535) for _ in range(fdp.ConsumeIntInRange(0, MAX_CUTS))]
        trickle_at = fdp.ConsumeIntInRange(0, 65535)
        bound = fdp.ConsumeIntInRange(0, 65535)
        self.html = fdp.ConsumeBytes(fdp.remaining_bytes())
        n = len(self.html)
        points = {c % (n + 1) for c in cuts}
        if self.options & 0x80 and n:  # a stretch fed a byte at a time
            start = trickle_at % n
            points.update(range(start, min(n, start + TRICKLE)))
        self.points = sorted(points | {0, n})
        self.mode = _MODES[self.options & 3]
        self.allowed = _CONSENTS[(self.options >> 2) % 3]
        self.warm = bool(self.options & 0x10)
        self.latin1 = bool(self.options & 0x20)
        self.views = bool(self.options & 0x40)
        #: what the scanner holds at most: often small, to reach what it does past the bound
        self.hold_limit = 64 + bound % 1024 if bound < 32768 else _HOLD_LIMIT
        #: <style> text handed over too (as for a site that holds unknown third parties)
        self.styles = bool(trickle_at & 0x8000)

    def chunks(self) -> list[bytes]:
        html, points = self.html, self.points
        return [html[a:b] for a, b in pairwise(points)]


def _tokens(items: list[Any]) -> list[tuple[Any, ...]]:
    return [item for item in items if not isinstance(item, bytes)]


def _flat(items: list[Any]) -> bytes:
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
        else:
            out += (item[1], item[5] or b"", item[6] or b"")
    return b"".join(out)


def _scan(case: Case, chunks: list[bytes] | None, noop: Any = None) -> tuple[list[Any], Scanner]:
    scanner = Scanner(latin1=case.latin1, noop=noop, hold_limit=case.hold_limit, styles=case.styles)
    if chunks is None:
        return scanner.feed(case.html) + scanner.finish(), scanner
    items: list[Any] = []
    for index, chunk in enumerate(chunks):
        if case.views and index % 2:
            items += scanner.feed(memoryview(bytearray(chunk)) if index % 4 == 1 else bytearray(chunk))
        else:
            items += scanner.feed(chunk)
    return items + scanner.finish(), scanner


def check_scanner(case: Case, chunks: list[bytes]) -> tuple[list[Any], int]:
    """The scanner's checks; its items for the whole page and the number of elements past the bound."""
    whole, scanner = _scan(case, None)
    cut = scanner.cut
    if not cut:
        assert _flat(whole) == case.html, "scanner (whole) changed bytes"
    streamed, scanner = _scan(case, chunks)
    assert _flat(streamed) == _flat(whole), "scanner output differs between whole and streamed"
    tokens = _tokens(whole)
    assert _tokens(streamed) == tokens, "scanner tokens differ between whole and streamed"
    assert scanner.cut == cut, "a different number of elements past the bound when streamed"
    n = len(case.html)
    assert scanner.examined <= WORK * n + SLACK, f"examined {scanner.examined} for {n} bytes"
    assert scanner.moved <= WORK * n + SLACK, f"moved {scanner.moved} for {n} bytes"
    # some reported start tags as no-ops: they come through as bytes, the rest as before
    elements = [t for t in tokens if t[0] == 0]
    if elements:
        noop = TagSet()
        chosen = {t[1] for i, t in enumerate(elements) if (i + case.options) % 3 != 0}
        for raw in chosen:
            noop.add(raw)
        assert len(noop) == len(chosen) and all(raw in noop for raw in chosen), "TagSet lost a tag"
        assert not any(t[1] in noop for t in elements if t[1] not in chosen), "TagSet holds a tag never added"
        expected = [t for t in tokens if not (t[0] == 0 and t[1] in chosen)]
        skipped, _ = _scan(case, chunks, noop)
        assert _flat(skipped) == _flat(whole), "scanner (noop) output differs"
        assert _tokens(skipped) == expected, "scanner (noop) tokens differ"
    return whole, cut


def _rewrite(plan: PagePlan, mode: Any, chunks: list[bytes] | None, html: bytes,
             tail_whole: bool = False) -> tuple[bytes, PageRewriter]:
    """All at once (chunks None), or fed chunk by chunk and finished; `tail_whole`: the last chunk goes to
    `whole` (as the HTML step hands over a decoder's tail)."""
    rw = PageRewriter(plan, mode)
    if chunks is None:
        return rw.whole(html), rw
    last = chunks[-1] if tail_whole and chunks else b""
    out = [rw.feed(chunk) for chunk in (chunks[:-1] if tail_whole and chunks else chunks)]
    out.append(rw.whole(last))
    return b"".join(out), rw


def check_identity(case: Case, chunks: list[bytes]) -> None:
    """Only for a page with nothing past the bound (that is neutralised or dropped)."""

    def plan() -> PagePlan:
        return PagePlan(_MATCHER, _NOTHING, Injection(), _KeepPolicy(), stamp="fuzz")

    shared = plan()
    whole, _ = _rewrite(shared, case.mode, None, case.html)
    assert whole == case.html, "a plan that does nothing changed the page (whole)"
    streamed, _ = _rewrite(shared if case.warm else plan(), case.mode, chunks, case.html, case.views)
    assert streamed == case.html, "a plan that does nothing changed the page (streamed)"


def _passed_through(output: bytes, items: list[Any]) -> None:
    """Every byte the scanner passed on is in the output, in order: only the elements it reported change."""
    at = 0
    for item in items:
        if isinstance(item, bytes) and item:
            found = output.find(item, at)
            assert found >= 0, f"passed-on bytes missing from the output after offset {at}: {item[:80]!r}"
            at = found + len(item)


def check_real(case: Case, chunks: list[bytes], items: list[Any]) -> None:
    decision = decision_for(case.allowed)
    injection = PageInjection(markup(), decision, None)
    routed = _ROUTED if case.options & 0x40 else {}

    def plan(memos: PagePlan | None = None) -> PagePlan:
        made = PagePlan(_MATCHER, decision.allowed, injection, NoncePlan(_fresh="fuzz-nonce"), stamp="fuzz-stamp",
                        script_attributes=routed)
        if memos is not None:
            made.noscript_memo, made.state_memos = memos.noscript_memo, memos.state_memos
        return made

    first = plan()
    whole, rw_whole = _rewrite(first, case.mode, None, case.html)
    streamed, rw_streamed = _rewrite(plan(first) if case.warm else plan(), case.mode, chunks, case.html,
                                     case.views)
    assert streamed == whole, "streamed output differs from whole"
    _passed_through(whole, items)
    assert rw_streamed.blocked == rw_whole.blocked, "streamed run blocked other elements"
    if case.warm:  # the whole body again, with the memos the streamed run left
        again, _ = _rewrite(plan(first), case.mode, None, case.html)
        assert again == whole, "output differs with warmed memos"


def one_input(data: bytes) -> None:
    case = Case(data)
    chunks = case.chunks()
    items, cut = check_scanner(case, chunks)
    rewriter_module.HOLD_LIMIT = case.hold_limit  # what the rewriter's scanners get
    try:
        if not cut:
            check_identity(case, chunks)
        check_real(case, chunks, items)
    finally:
        rewriter_module.HOLD_LIMIT = _HOLD_LIMIT


# -- seeds ----------------------------------------------------------------------------------------------------


def trailer(rng: random.Random) -> bytes:
    """Options and cut points in the order the FuzzedDataProvider takes them from the end (1 and 2 bytes)."""
    options = rng.randrange(256)
    cuts = rng.randrange(MAX_CUTS + 1)
    taken = [bytes([options]), bytes([cuts])]
    taken += [rng.randbytes(2) for _ in range(cuts)]
    taken.append(rng.randbytes(2))  # where a stretch is fed a byte at a time
    taken.append(rng.randbytes(2))  # the bound
    return b"".join(reversed(taken))


def make_seeds(out: Path, window: int, per_page: int) -> int:
    rng = random.Random(15)
    pages: list[tuple[str, bytes]] = [(p.stem, p.read_bytes()) for p in sorted((ROOT / "tests/data/html-corpus").glob(
        "*.html"))]
    pages += [(p.name.removesuffix(".html.gz"), gzip.decompress(p.read_bytes()))
              for p in sorted((ROOT / "tests/data/real-pages").glob("*.html.gz"))]
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, page in pages:
        starts = list(range(0, max(len(page) - window, 0) + 1, window))
        if len(starts) > per_page:
            starts = [0, *sorted(rng.sample(starts[1:], per_page - 1))]
        for start in starts:
            html = page[start:start + window]
            seed = html + trailer(rng)
            assert Case(seed).html == html, "the trailer does not match what Case reads"
            (out / f"{name}@{start}").write_bytes(seed)
            count += 1
    return count


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--make-seeds", "--replay"):
        parser = argparse.ArgumentParser()
        parser.add_argument("--make-seeds", type=Path)
        parser.add_argument("--window", type=int, default=16384)
        parser.add_argument("--per-page", type=int, default=6)
        parser.add_argument("--replay", nargs="+", type=Path)
        args = parser.parse_args()
        if args.make_seeds:
            print(f"{make_seeds(args.make_seeds, args.window, args.per_page)} seeds in {args.make_seeds}")
        for path in args.replay or ():
            one_input(path.read_bytes())
            print(f"{path}: passes")
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
