"""Several worker processes sharing the listening sockets and one built configuration.

The supervisor binds the sockets and builds the application, then forks the
workers from it: the configuration's objects (10,000 sites make a million) are
pages the workers share instead of N copies (a worker copies only the pages it
writes to; frozen objects are never touched by the collector).

A SIGHUP is a reload the nginx way, so the pages stay shared after it too: the
supervisor reads and builds the file again (only sites whose tables changed
are built anew), forks new workers from it, and once they serve, retires the
old ones: each stops accepting and finishes what it has in flight on the
configuration it started with (see `HardenedHttpToolsProtocol.shutdown`). A
file that is refused changes nothing. A worker that dies is replaced from the
current configuration; SIGTERM or SIGINT ask every worker to drain and wait;
a worker whose supervisor is killed drains and exits.

Nothing before a fork may start a thread, open a connection or make an event
loop: the consent log's writer starts its thread at its first use; the HTTP
session and the loop are made in each worker's start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from consentproxy.config.model import Config
from consentproxy.observability.multiprocess import shared_metrics_dir, unshare_metrics

if TYPE_CHECKING:
    from consentproxy.server.application import Application

logger = logging.getLogger("consentproxy.server")

#: how long new workers may take to serve before their reload is abandoned (the old ones keep serving)
READY_TIMEOUT_SECONDS = 60.0
#: how long a retired worker may take to stop accepting connections before the reload is reported done anyway
STOP_ACCEPTING_TIMEOUT_SECONDS = 10.0

#: what a worker writes on its pipe: it serves; it has stopped accepting connections (and drains)
_SERVING = b"s"
_DRAINING = b"d"
#: prctl(2): the signal a process gets when the thread that forked it ends
_PR_SET_PDEATHSIG = 1


def _worker_main(config: Config, sockets: list[socket.socket], log_level: str, application: Application,
                 pipe: int, supervisor: int) -> None:
    from consentproxy.server.runner import run_worker

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's, until run_worker sets its own
    _die_with_supervisor(supervisor)
    # The supervisor's handlers came with the fork: SIGHUP (a reload of this worker alone, sent by hand)
    # waits for the event loop, which takes it over at start-up.
    signal.signal(signal.SIGHUP, lambda signum, frame: application.reload_when_started())
    application.on_ready = lambda: _announce(pipe, _SERVING)
    run_worker(config, sockets, log_level, application, on_draining=lambda: _announce(pipe, _DRAINING))


def _die_with_supervisor(supervisor: int) -> None:
    """A worker whose supervisor is killed (SIGKILL, the OOM killer) must not serve on alone, holding the
    sockets and a configuration no one reloads: Linux sends it SIGTERM then (PR_SET_PDEATHSIG), so it
    drains and exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it was gone before that took effect
        os._exit(0)


def _announce(pipe: int, news: bytes) -> None:
    """Tell the supervisor (one byte on this worker's pipe)."""
    with contextlib.suppress(OSError):  # the supervisor is gone
        os.write(pipe, news)


@dataclass
class _Worker:
    process: BaseProcess
    #: the supervisor's end of the pipe the worker announces itself on; -1 once closed
    pipe: int
    #: what it has announced so far
    heard: bytes = b""


class Supervisor:
    def __init__(self, config: Config, sockets: list[socket.socket], log_level: str,
                 application: Application) -> None:
        self.config = config
        self.sockets = sockets
        self.log_level = log_level
        self.application = application
        self.context = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        #: workers replaced by a reload, draining; each is reaped when it exits
        self.retiring: list[tuple[BaseProcess, float]] = []
        self.stopping = threading.Event()
        self.hup = threading.Event()
        directory = shared_metrics_dir()
        if directory is None:  # without it, each worker's /metrics would count only its own requests
            raise RuntimeError("several workers need share_metrics() before prometheus_client is imported")
        self.metrics_dir = directory

    def _start_worker(self) -> _Worker:
        read, write = os.pipe()
        process = self.context.Process(
            target=_worker_main,
            args=(self.config, self.sockets, self.log_level, self.application, write, os.getpid()),
            name="consentproxy-worker",
        )
        process.start()
        os.close(write)
        return _Worker(process, read)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hup.set()
        else:
            self.stopping.set()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            self.workers = [self._start_worker() for _ in range(self.config.server.workers)]
            logger.info("supervisor %d started workers %s", os.getpid(),
                        [worker.process.pid for worker in self.workers])
            while not self.stopping.wait(0.5):
                if self.hup.is_set():
                    self.hup.clear()
                    try:
                        self._reload()
                    except Exception:  # a bug must not leave the workers without their supervisor
                        logger.exception("configuration reload failed, keeping the running one")
                self._replace_dead()
                self._reap_retired()
            self._stop_all()
        finally:
            for worker in self.workers:
                self._close_pipe(worker)
            unshare_metrics()
        return 0

    def _reload(self) -> None:
        """Build the file again here; if it is in force, replace every worker with one forked from it.

        Reported done once the new workers serve and the old ones accept no more: from then on every new
        connection gets the new configuration."""
        logger.info("SIGHUP: reading the configuration again")
        running = self.application.runtime
        if not self.application.reload():
            return  # refused (logged): the workers keep serving the running configuration
        old = self.workers
        new = [self._start_worker() for _ in old]
        self._wait_for(new, _SERVING, READY_TIMEOUT_SECONDS)
        if not self.stopping.is_set() and not all(_SERVING in worker.heard for worker in new):
            logger.error("configuration reload abandoned: new workers %s did not start serving within %.0f s "
                         "(see their lines above); the running ones keep serving the running configuration",
                         [worker.process.pid for worker in new], READY_TIMEOUT_SECONDS)
            for worker in new:
                worker.process.kill()
                worker.process.join(5)
                self._forget(worker.process)
                self._close_pipe(worker)
            self.application.restore(running)
            return
        self.workers = new
        now = time.monotonic()
        for worker in old:
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)  # drains, see the module's docstring
        self._wait_for(old, _DRAINING, STOP_ACCEPTING_TIMEOUT_SECONDS)
        for worker in old:
            self._close_pipe(worker)
            self.retiring.append((worker.process, now))
        logger.info("configuration reloaded: workers %s replaced by %s, which share it",
                    [worker.process.pid for worker in old], [worker.process.pid for worker in self.workers])

    def _wait_for(self, workers: list[_Worker], news: bytes, timeout: float) -> bool:
        """Until each worker has announced `news` or died; False if time ran out first."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            waiting = [worker for worker in workers if worker.pipe >= 0 and news not in worker.heard]
            if not waiting:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([worker.pipe for worker in waiting], [], [], min(left, 0.5))
            for worker in waiting:
                if worker.pipe in readable:
                    heard = os.read(worker.pipe, 16)
                    worker.heard += heard
                    if not heard:  # the worker is gone
                        self._close_pipe(worker)
        return False

    @staticmethod
    def _close_pipe(worker: _Worker) -> None:
        if worker.pipe >= 0:
            os.close(worker.pipe)
            worker.pipe = -1

    def _replace_dead(self) -> None:
        for index, worker in enumerate(self.workers):
            if not worker.process.is_alive() and not self.stopping.is_set():
                logger.error("worker %s exited with %s; starting a new one", worker.process.pid,
                             worker.process.exitcode)
                self._forget(worker.process)
                self._close_pipe(worker)
                self.workers[index] = self._start_worker()

    def _reap_retired(self) -> None:
        """Workers retired by a reload that have finished draining; one that takes too long is killed."""
        patience = self.config.server.graceful_timeout + 5
        still = []
        for process, since in self.retiring:
            if process.is_alive() and time.monotonic() - since > patience:
                logger.warning("retired worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
            if process.is_alive():
                still.append((process, since))
            else:
                process.join()
                self._forget(process)
        self.retiring = still

    def _forget(self, process: BaseProcess) -> None:
        """A worker is gone: its live gauges leave the metrics (its counters stay in the sums)."""
        from prometheus_client import multiprocess

        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _stop_all(self) -> None:
        logger.info("stopping: workers drain their in-flight requests")
        processes = [worker.process for worker in self.workers] + [process for process, _ in self.retiring]
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = self.config.server.graceful_timeout + 5
        for process in processes:
            process.join(deadline)
            if process.is_alive():
                logger.warning("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
