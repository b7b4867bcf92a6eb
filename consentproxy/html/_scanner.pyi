"""Types of the compiled scanner (_scanner.c)."""

ELEMENT: int
SCRIPT: int
NOSCRIPT: int
STYLE: int

#: (kind, raw start tag, name, attributes, in <template>, text, raw end tag, self-closing); a script, style or
#: noscript whose text was longer than hold_limit has raw end tag None (what follows comes as bytes)
Token = tuple[int, bytes, str, list[tuple[str, str]], bool, bytes | None, bytes | None, bool]

class TagSet:
    """Raw start tags the scanner passes through as bytes (a set it can ask without making bytes objects)."""

    def add(self, tag: bytes, /) -> None: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, tag: object, /) -> bool: ...

class Scanner:
    """feed() and finish() raise RuntimeError when called while the scanner is in one of them (a finalizer)."""

    def __init__(self, latin1: bool = ..., noop: TagSet | None = ..., hold_limit: int = ...,
                 styles: bool = ...) -> None: ...
    def feed(self, data: bytes, /) -> list[bytes | Token]: ...
    def finish(self) -> list[bytes | Token]: ...
    @property
    def examined(self) -> int:
        """Bytes its searches stepped over so far: a few times what it was fed, however it came."""
    @property
    def moved(self) -> int:
        """Bytes moved within its buffer so far."""
    @property
    def cut(self) -> int:
        """Elements longer than hold_limit so far."""
    @property
    def hold_limit(self) -> int: ...
