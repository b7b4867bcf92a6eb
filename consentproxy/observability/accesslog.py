"""One JSON line per request on the `consentproxy.access` logger (off by default)."""

from __future__ import annotations

import logging
import sys
import time

import orjson

logger = logging.getLogger("consentproxy.access")


def setup_access_log() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def log_request(
    site: str, method: str, path: str, query: bytes, status: int, client: str, started: float, sent: int
) -> None:
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "site": site,
        "client": client,
        "method": method,
        "path": path,
        "query": query.decode("latin-1"),
        "status": status,
        "bytes": sent,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    logger.info(orjson.dumps(record).decode())
