"""Several worker processes sharing the listening sockets.

The supervisor binds the sockets, starts the workers, restarts one that
dies, forwards SIGHUP (each worker reloads itself) and, on SIGTERM or
SIGINT, asks every worker to drain and waits for them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from multiprocessing.process import BaseProcess
from types import FrameType

from consentproxy.config.model import Config

logger = logging.getLogger("consentproxy.server")


def _worker_main(config: Config, sockets: list[socket.socket], log_level: str) -> None:
    from consentproxy.server.runner import run_worker

    run_worker(config, sockets, log_level)


class Supervisor:
    def __init__(self, config: Config, sockets: list[socket.socket], log_level: str) -> None:
        self.config = config
        self.sockets = sockets
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.stopping = threading.Event()
        self.hup = threading.Event()
        self.metrics_dir = tempfile.mkdtemp(prefix="consentproxy-metrics-")

    def _start_worker(self) -> BaseProcess:
        process = self.context.Process(
            target=_worker_main, args=(self.config, self.sockets, self.log_level), name="consentproxy-worker"
        )
        process.start()
        return process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hup.set()
        else:
            self.stopping.set()

    def run(self) -> int:
        # prometheus_client reads this when each worker imports it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            self.workers = [self._start_worker() for _ in range(self.config.server.workers)]
            logger.info("supervisor %d started workers %s", os.getpid(), [w.pid for w in self.workers])
            while not self.stopping.wait(0.5):
                if self.hup.is_set():
                    self.hup.clear()
                    logger.info("SIGHUP: asking every worker to reload its configuration")
                    for worker in self.workers:
                        if worker.pid is not None and worker.is_alive():
                            os.kill(worker.pid, signal.SIGHUP)
                self._replace_dead()
            self._stop_all()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0

    def _replace_dead(self) -> None:
        from prometheus_client import multiprocess

        for index, worker in enumerate(self.workers):
            if not worker.is_alive() and not self.stopping.is_set():
                logger.error("worker %s exited with %s; starting a new one", worker.pid, worker.exitcode)
                if worker.pid is not None:
                    multiprocess.mark_process_dead(worker.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
                self.workers[index] = self._start_worker()

    def _stop_all(self) -> None:
        logger.info("stopping: workers drain their in-flight requests")
        for worker in self.workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        deadline = self.config.server.graceful_timeout + 5
        for worker in self.workers:
            worker.join(deadline)
            if worker.is_alive():
                logger.warning("worker %s did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join(5)
