"""When Python's cyclic garbage collector may run while a configuration is read and built."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while a configuration is read and built: 10,000 sites make a million objects,
    and each full pass the growing heap triggers would scan them all again (half the build time). Building
    makes almost no cyclic garbage; what requests make meanwhile is collected when it is over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
