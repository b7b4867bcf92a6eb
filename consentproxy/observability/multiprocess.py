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

#: the directory `share_metrics` made: the only one `unshare_metrics` removes (never one named from outside)
_made: Path | None = None


def share_metrics() -> Path:
    """A fresh directory for the workers' metric files, named in the environment (before the first import)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_metrics() must run before anything imports prometheus_client: its metrics "
                           "would keep their values in this process only")
    global _made
    directory = tempfile.mkdtemp(prefix="consentproxy-metrics-")
    os.environ[ENVIRONMENT] = directory
    _made = Path(directory)
    return _made


def shared_metrics_dir() -> Path | None:
    """The directory `share_metrics` named, or None when metrics stay per process."""
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value else None


def unshare_metrics() -> None:
    """Remove the directory `share_metrics` made, if it made one (the proxy does not start, or has stopped)."""
    global _made
    if _made is None:
        return
    if os.environ.get(ENVIRONMENT) == str(_made):
        del os.environ[ENVIRONMENT]
    shutil.rmtree(_made, ignore_errors=True)
    _made = None
