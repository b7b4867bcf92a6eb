"""Metrics summed over the worker processes: prometheus_client's multi-process mode.

prometheus_client decides where every metric keeps its values when it is first
imported, and the workers are forked from a supervisor that has imported it
(it builds the configuration they share), so the directory is named in the
environment before that: the command line does it as soon as it knows the
configuration asks for several workers; the supervisor removes it at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics() -> Path:
    """A fresh directory for the workers' metric files, named in the environment (before the first import)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_metrics() must run before anything imports prometheus_client: its metrics "
                           "would keep their values in this process only")
    directory = tempfile.mkdtemp(prefix="consentproxy-metrics-")
    os.environ[ENVIRONMENT] = directory
    return Path(directory)


def shared_metrics_dir() -> Path | None:
    """The directory `share_metrics` named, or None when metrics stay per process."""
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value else None


def unshare_metrics() -> None:
    """Remove the directory `share_metrics` made (the proxy does not start, or has stopped)."""
    directory = os.environ.pop(ENVIRONMENT, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
