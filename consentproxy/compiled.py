"""What sites share, compiled once per process and keyed by its inputs.

Ten thousand sites that configure nothing of their own must not build ten thousand
copies of the same tracker matcher, client-side guard table or banner files. A
`Compiled` hands out one object per distinct input (the key says everything the
object is made from), so a site costs only what it configures itself.

Each configuration build gets its own `Compiled`, made from the previous one:
an entry the new configuration asks for again is taken over (a reload rebuilds
nothing that did not change), the rest stays with the old configuration and
goes when it goes, so 20 reloads do not keep 20 generations alive. A build
runs in a thread (see consentproxy/server/application.py), one at a time; the
entries are read-only once made, or (matchers) only ever used on the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar, cast

T = TypeVar("T")


class Compiled:
    def __init__(self, previous: Compiled | None = None) -> None:
        self._entries: dict[Hashable, object] = {}
        self._previous: dict[Hashable, object] = previous._entries if previous is not None else {}
        self._lock = threading.RLock()
        #: how many entries were made and taken over, for the benchmark and the tests
        self.made = 0
        self.reused = 0

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The entry for `key`, made by `make()` the first time this generation or the previous one asked."""
        with self._lock:
            try:
                return cast(T, self._entries[key])
            except KeyError:
                pass
            if key in self._previous:
                value = self._previous[key]
                self.reused += 1
            else:
                value = make()
                self.made += 1
            self._entries[key] = value
            return cast(T, value)

    def done(self) -> None:
        """The build is over: forget the previous generation (what was not taken over goes with it)."""
        self._previous = {}

    def __len__(self) -> int:
        return len(self._entries)
