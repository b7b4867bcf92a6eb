"""Keeping one event loop fair when one client brings thousands of connections.

A slow-loris swarm's connections were opened together, so they time out together: the event loop would then
answer thousands of 408s in one turn, and every other client's I/O waits behind them. `Batches` spreads
such work over turns of the loop, so between two batches the loop polls everyone else's sockets. The same
holds for a busy address's new connections (`server.acceptor`).

(Reading a busy client's connections in turns as well was tried and measured: with 2,000 trickling sockets it
made the normal client's latency worse, not better, on this two-core machine; the pause/resume calls cost
more than the reads they spread.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger("consentproxy.protocol")

T = TypeVar("T")


class Batches(Generic[T]):
    """Calls `work(item)` for queued items, `per_turn` of them per turn of the event loop."""

    def __init__(self, work: Callable[[T], None], per_turn: int) -> None:
        self._work = work
        self._per_turn = per_turn
        self._due: deque[T] = deque()
        #: the loop a batch is scheduled on (a loop that closed with one pending leaves no lasting mark)
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def add(self, loop: asyncio.AbstractEventLoop, item: T) -> None:
        self._due.append(item)
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_soon(self._run, loop)

    def __len__(self) -> int:
        return len(self._due)

    def run_all(self) -> None:
        """Do the work of every queued item now (its owner stops: nothing may be left waiting)."""
        while self._due:
            self._do(self._due.popleft())

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._due
        for _ in range(min(self._per_turn, len(due))):
            self._do(due.popleft())
        if due:
            loop.call_soon(self._run, loop)
        else:
            self._scheduled_on = None

    def _do(self, item: T) -> None:
        try:
            self._work(item)
        except Exception:
            logger.exception("deferred connection work failed")
