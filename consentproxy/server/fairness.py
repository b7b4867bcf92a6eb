"""Keeping one event loop fair when one client brings thousands of connections.

A slow-loris swarm's connections were opened together, so they trickle together and time out together: the
event loop would then handle thousands of reads, or thousands of 408s, in one turn, and every other client's
I/O waits behind them. Two tools spread that work over turns of the loop, so between two batches the loop
polls everyone else's sockets and a normal request waits for one small batch at most:

- `Batches` runs a piece of work per item, `per_turn` items per turn (deadlines that came due);
- `ReadTurns` keeps a busy client's connections paused and lets `per_turn` of them read per turn, round robin.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger("consentproxy.protocol")

T = TypeVar("T")


class Batches(Generic[T]):
    """Calls `work(item)` for queued items, `per_turn` of them per turn of the event loop."""

    def __init__(self, work: Callable[[T], None], per_turn: int) -> None:
        self._work = work
        self._per_turn = per_turn
        self._due: deque[T] = deque()
        self._scheduled = False

    def add(self, loop: asyncio.AbstractEventLoop, item: T) -> None:
        self._due.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run, loop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._due
        for _ in range(min(self._per_turn, len(due))):
            item = due.popleft()
            try:
                self._work(item)
            except Exception:
                logger.exception("deferred connection work failed")
        if due:
            loop.call_soon(self._run, loop)
        else:
            self._scheduled = False


class Reader(Protocol):
    """What `ReadTurns` needs of a connection."""

    loop: asyncio.AbstractEventLoop

    def turn_ended(self) -> bool:
        """Pause reading for the next turn (True), or leave the turns: the client is no longer busy, or the
        connection is closing or was handed over (False; reading is then left as it is)."""
        ...

    def turn_begins(self) -> None:
        """Resume reading (unless flow control paused it)."""
        ...


class ReadTurns:
    """A busy client's connections read in turns: at most `per_turn` of them readable at any moment.

    A connection joins after a read, once its client holds more than the busy threshold; it is paused and
    queued. Every `interval` seconds the connections whose turn it was are paused again and queued at the end,
    and the next `per_turn` are resumed, so a swarm costs the loop at most `per_turn` reads per turn however
    many bytes it sends at once, and each of its connections still reads every (connections / per_turn) turns.
    """

    def __init__(self, per_turn: int, interval: float) -> None:
        self._per_turn = per_turn
        self._interval = interval
        self._waiting: deque[Reader] = deque()
        self._reading: list[Reader] = []
        self._members: set[Reader] = set()
        self._timer: asyncio.TimerHandle | None = None

    def join(self, reader: Reader) -> None:
        if reader in self._members:
            return
        if not reader.turn_ended():
            return
        self._members.add(reader)
        self._waiting.append(reader)
        if self._timer is None:
            self._timer = reader.loop.call_later(self._interval, self._turn, reader.loop)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        waiting, members = self._waiting, self._members
        for reader in self._reading:
            if reader.turn_ended():
                waiting.append(reader)
            else:
                members.discard(reader)
        self._reading = []
        for _ in range(min(self._per_turn, len(waiting))):
            reader = waiting.popleft()
            reader.turn_begins()
            self._reading.append(reader)
        if self._reading or waiting:
            self._timer = loop.call_later(self._interval, self._turn, loop)

    def __len__(self) -> int:
        return len(self._members)
