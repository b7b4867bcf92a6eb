"""Group commit: many concurrent consent decisions, one durable transaction.

A durable commit costs an fsync (SQLite) or a WAL flush round trip
(PostgreSQL); one per decision caps throughput at a few thousand per second,
while a hundred per commit is many times faster (GUIDE §4). So the event loop
never writes: `record()` queues the event and waits; one worker thread owns
the store, takes whatever is queued (up to `max_batch`) and appends it in one
transaction. While it commits, the next batch gathers by itself — no timer,
no added latency when idle.

A caller is answered only after its transaction committed. If the store
fails, every caller of that batch gets StoreUnavailable (nothing is reported
as stored that is not; an event may be stored without being acknowledged, which
is what idempotency keys are for). One refused event (StoreError) does not
fail its batch-mates: the batch is retried one event per transaction.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from consentproxy.records.model import ConsentEvent
from consentproxy.records.store import RecordStore, StoreError, StoreUnavailable
from consentproxy.records.store import open as open_store

logger = logging.getLogger("consentproxy.records")
T = TypeVar("T")
DEFAULT_MAX_BATCH = 256


@dataclass(slots=True)
class _Record:
    event: ConsentEvent
    future: asyncio.Future[ConsentEvent]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _Call:
    function: Callable[[RecordStore], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP = object()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled); the outcome is in the store or not, as it is
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _answer(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any,
            error: BaseException | None = None) -> None:
    with suppress(RuntimeError):  # RuntimeError: that event loop is closed, nobody is waiting any more
        loop.call_soon_threadsafe(_settle, future, result, error)


def _copy(error: StoreError) -> StoreError:
    """One exception object per waiting caller (a raised exception carries its caller's traceback)."""
    if isinstance(error, StoreUnavailable):
        copy: StoreError = StoreUnavailable(str(error), error.retry_after)
    else:
        copy = StoreError(str(error))
    copy.__cause__ = error
    return copy


class RecordWriter:
    """Owns one store on a worker thread; `record()` returns once the event is committed."""

    def __init__(self, opener: Callable[[], RecordStore], *, max_batch: int = DEFAULT_MAX_BATCH,
                 name: str = "consent-records") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._opener = opener
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._state = threading.Lock()
        self._closed = False
        self._store: RecordStore | None = None
        # Counters for metrics and tests: transactions that committed events, and events acknowledged.
        self.transactions = 0
        self.recorded = 0
        self.failed_batches = 0
        # Started at the first event or call, not here: a supervisor builds the writer before it forks the
        # workers, and a thread does not survive a fork (see consentproxy/server/supervisor.py).
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    @classmethod
    def for_url(cls, url: str, *, max_batch: int = DEFAULT_MAX_BATCH) -> RecordWriter:
        return cls(lambda: open_store(url), max_batch=max_batch)

    async def record(self, event: ConsentEvent) -> ConsentEvent:
        """Store one event (batched with whatever else is waiting); the stored event, once committed.

        Raises StoreUnavailable when it could not be stored (turn into 503 +
        Retry-After), StoreError when the store refuses this event.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ConsentEvent] = loop.create_future()
        self._submit(_Record(event, future, loop))
        return await future

    async def call(self, function: Callable[[RecordStore], T]) -> T:
        """Run `function(store)` on the worker thread, between batches (reads, erasure, purge, checkpoints)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submit(_Call(function, future, loop))
        return await future

    def _submit(self, item: _Record | _Call) -> None:
        with self._state:
            if self._closed:
                raise StoreUnavailable("the consent record writer is closed")
            self._queue.put(item)
            if not self._started:
                self._started = True
                self._thread.start()

    async def close(self) -> None:
        """Stop taking events, commit everything already queued, close the store."""
        with self._state:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
            started = self._started
        if started:
            await asyncio.to_thread(self._thread.join)

    # -- worker thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # a bug in the loop itself: never leave a caller waiting for an answer
            logger.exception("consent record writer stopped")
            with self._state:
                self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Record | _Call):
                    _answer(item.loop, item.future, None, StoreUnavailable("the consent record writer failed"))
            if self._store is not None:
                with suppress(Exception):
                    self._store.close()

    def _serve(self) -> None:
        item = self._queue.get()
        while item is not _STOP:
            if isinstance(item, _Call):
                self._run_call(item)
                item = self._queue.get()
                continue
            assert isinstance(item, _Record)
            batch = [item]
            following: object = None
            while len(batch) < self.max_batch:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    following = None
                    break
                if not isinstance(following, _Record):
                    break
                batch.append(following)
                following = None
            self._write(batch)
            item = following if following is not None else self._queue.get()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> RecordStore:
        if self._store is None:
            self._store = self._opener()
        return self._store

    def _run_call(self, call: _Call) -> None:
        try:
            result = call.function(self._open())
        except BaseException as exc:  # handed to the awaiting caller, whatever it is
            _answer(call.loop, call.future, None, exc)
        else:
            _answer(call.loop, call.future, result)

    def _write(self, batch: list[_Record]) -> None:
        try:
            stored = self._open().append([item.event for item in batch])
        except StoreUnavailable as exc:
            self.failed_batches += 1
            logger.warning("consent store unavailable, %d decision(s) not recorded: %s", len(batch), exc)
            for item in batch:
                _answer(item.loop, item.future, None, _copy(exc))
            return
        except StoreError as exc:
            if len(batch) == 1:
                _answer(batch[0].loop, batch[0].future, None, _copy(exc))
                return
            for item in batch:  # find the one it refuses; the others are stored
                self._write([item])
            return
        except Exception as exc:  # a bug: report it to each caller rather than leave them waiting
            logger.exception("storing %d consent event(s) failed", len(batch))
            for item in batch:
                error = StoreError(f"unexpected error storing a consent event: {exc!r}")
                error.__cause__ = exc
                _answer(item.loop, item.future, None, error)
            return
        self.transactions += 1
        self.recorded += len(batch)
        for item, event in zip(batch, stored, strict=True):
            _answer(item.loop, item.future, event)
