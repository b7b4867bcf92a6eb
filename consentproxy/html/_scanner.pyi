"""Types of the compiled scanner (_scanner.c)."""

ELEMENT: int
SCRIPT: int
NOSCRIPT: int

#: (kind, raw start tag, name, attributes, in <template>, text, raw end tag, self-closing)
Token = tuple[int, bytes, str, list[tuple[str, str]], bool, bytes | None, bytes | None, bool]

class Scanner:
    def __init__(self, latin1: bool = ..., noop: set[bytes] | None = ...) -> None: ...
    def feed(self, data: bytes, /) -> list[bytes | Token]: ...
    def finish(self) -> list[bytes | Token]: ...
