"""What `make fuzz-scanner` (tests/fuzz/fuzz_scanner.py) found, one test per finding, on the normal build.

A finding that only a sanitizer sees (undefined behaviour, a read past a buffer) passes here whatever the
code does; the test keeps the input and the path it takes, and the fuzzer's sanitized build checks it again
on every run (each of these inputs is among the first the fuzzer tries, or in its seeds).
"""

from __future__ import annotations

from consentproxy.html._scanner import SCRIPT, Scanner

# -- 1. UBSan: "applying zero offset to null pointer" (scanner of f83d144…39c3dee; gone since 09bce12) -------
# A scanner keeps its own buffer only once it must hold bytes across feeds; until then `buf` was NULL, and
# B() (`buf + base`) and finish_held (`B(self) + at`) did pointer arithmetic on NULL, which C leaves
# undefined (UBSan, -fsanitize=pointer-overflow, halted on the fuzzer's very first input, the empty one).

def test_finish_on_a_scanner_that_was_never_fed() -> None:
    assert Scanner().finish() == []


def test_finish_after_a_feed_that_left_nothing_held() -> None:
    scanner = Scanner()
    assert scanner.feed(b"ab") == [b"ab"]
    assert scanner.finish() == []


def test_finish_with_a_script_open_and_no_bytes_held() -> None:
    scanner = Scanner()
    assert scanner.feed(b"<script>") == []
    (token,) = scanner.finish()
    assert token[0] == SCRIPT and token[1] == b"<script>" and token[5] == b""
